"""Helper threads that overlap hashing and reading with encryption (both release the GIL)."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast


class BackgroundDigest:
    """SHA-256 of a stream, computed by a helper thread once the stream proves long.

    SHA-256 is the slowest step here (about 1.6 GB/s against 10 GB/s for AES-GCM with AES-NI)
    and hashlib releases the GIL on large updates, so a second thread overlaps it with the
    network or disk and with the encryption; short streams are hashed inline, with no thread.
    """

    INLINE_UPDATES = 4
    QUEUE_SIZE = 4  # pieces waiting to be hashed: a few segments of memory at most

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._updates = 0
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None

    def update(self, data: bytes) -> None:
        """Add `data`, which must not change afterwards (bytes, not a reused buffer)."""
        if self._queue is None:
            self._updates += 1
            if self._updates <= self.INLINE_UPDATES:
                self._sha256.update(data)
                return
            self._queue = queue.Queue(self.QUEUE_SIZE)
            self._thread = threading.Thread(
                target=self._run, args=(self._queue,), name="sha256", daemon=True
            )
            self._thread.start()
        self._queue.put(data)

    def _run(self, pieces: queue.Queue[bytes | None]) -> None:
        while (piece := pieces.get()) is not None:
            self._sha256.update(piece)

    def hexdigest(self) -> str:
        """Wait for every update to be hashed and return the hex digest."""
        self.close()
        return self._sha256.hexdigest()

    def close(self) -> None:
        """Stop the helper thread, if any, once it has hashed what it was given."""
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


_END = object()


class Prefetcher(Iterator[bytes]):
    """Pull chunks from a backend stream in a helper thread, up to `depth` chunks ahead.

    Without it a reader alternates between waiting for the network and decrypting, and the
    server stalls whenever the socket buffer is full; with it both proceed at once.
    """

    def __init__(self, source: Iterator[bytes], depth: int = 4) -> None:
        self._queue: queue.Queue[object] = queue.Queue(depth)
        self._stop = threading.Event()
        self._is_done = False
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="prefetch", daemon=True
        )
        self._thread.start()

    def _run(self, source: Iterator[bytes]) -> None:
        try:
            for chunk in source:
                if not self._put(chunk):
                    return
            self._put(_END)
        except BaseException as e:  # handed over to the reading thread, which re-raises it
            self._put(_Failure(e))
        finally:
            # The source is used by this thread only, so it is closed here too.
            close = getattr(source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            return True
        return False

    def __next__(self) -> bytes:
        if self._is_done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._is_done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._is_done = True
            raise item.error
        return cast(bytes, item)

    def close(self) -> None:
        """Stop reading ahead and release the source."""
        self._is_done = True
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.01)
        self._thread.join()
