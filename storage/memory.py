"""In-memory twin of the object stores, for unit tests."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from storage.base import Chunk, validate_key, validate_prefix
from storage.errors import ObjectNotFound

CHUNK_SIZE = 1 << 20


class MemoryStore:
    """An `ObjectStore` kept in a dict; each instance is its own empty store."""

    def __init__(self, *, chunk_size: int = CHUNK_SIZE) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._chunk_size = chunk_size

    def put(self, key: str, chunks: Iterable[Chunk]) -> int:
        """Store the concatenation of `chunks` under `key`, replacing it; return the size."""
        validate_key(key)
        # Nothing is visible until the source is exhausted, as with the real backends. Each
        # chunk is copied as it comes: its producer may reuse the buffer for the next one.
        buffer = bytearray()
        for chunk in chunks:
            buffer += chunk
        data = bytes(buffer)
        with self._lock:
            self._objects[key] = data
        return len(data)

    def get(self, key: str) -> Iterator[bytes]:
        """Return the object as a stream of chunks; raise ObjectNotFound before streaming."""
        validate_key(key)
        with self._lock:
            data = self._objects.get(key)
        if data is None:
            raise ObjectNotFound("no such object")
        return self._stream(data)

    def _stream(self, data: bytes) -> Iterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(data), self._chunk_size):
            yield bytes(view[start : start + self._chunk_size])

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def exists(self, key: str) -> bool:
        """Tell whether an object is stored under `key`."""
        validate_key(key)
        with self._lock:
            return key in self._objects

    def size(self, key: str) -> int:
        """Return the stored size of the object in bytes."""
        validate_key(key)
        with self._lock:
            data = self._objects.get(key)
        if data is None:
            raise ObjectNotFound("no such object")
        return len(data)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys starting with `prefix`, in sorted order."""
        validate_prefix(prefix)
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        yield from keys
