"""The helper threads: background hashing and read-ahead."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import pytest

from storage import StorageUnavailable
from storage.pipeline import BackgroundDigest, Prefetcher, SegmentHasher, Worker


def test_background_digest_equals_hashlib() -> None:
    pieces = [os.urandom(size) for size in (0, 1, 100, 70_000, 1 << 20) * 5]
    digest = BackgroundDigest()

    for piece in pieces:
        digest.update(piece)

    assert digest.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_background_digest_close_stops_its_thread() -> None:
    before = threading.active_count()
    digest = BackgroundDigest()
    for _ in range(10):
        digest.update(b"x" * 5000)

    digest.close()

    assert threading.active_count() == before


@pytest.mark.parametrize("segments", [0, 3, 40])
def test_segment_hasher_equals_hashlib_inline_and_threaded(segments: int) -> None:
    # 3 segments stay in the caller's thread, 40 go through the helper thread
    hasher = SegmentHasher(1000, buffers=3, inline=4)
    expected = hashlib.sha256()
    for index in range(segments):
        buffer = hasher.take()
        piece = os.urandom(1000 if index % 5 else 10)
        buffer[: len(piece)] = piece
        expected.update(piece)
        hasher.submit(buffer, len(piece))

    assert hasher.hexdigest() == expected.hexdigest()


def test_segment_hasher_reuses_a_bounded_number_of_buffers() -> None:
    hasher = SegmentHasher(100, buffers=3, inline=0)
    seen: set[int] = set()
    for _ in range(50):
        buffer = hasher.take()
        seen.add(id(buffer))
        hasher.submit(buffer, 100)
    hasher.hexdigest()

    assert len(seen) <= 3


def test_segment_hasher_close_stops_its_thread() -> None:
    before = threading.active_count()
    hasher = SegmentHasher(100, buffers=2, inline=0)
    for _ in range(10):
        hasher.submit(hasher.take(), 100)

    hasher.close()

    assert threading.active_count() == before


def test_prefetcher_yields_everything_in_order() -> None:
    chunks = [os.urandom(1000) for _ in range(50)]

    assert list(Prefetcher(iter(chunks), depth=3)) == chunks


def test_prefetcher_reraises_the_source_error_after_its_chunks() -> None:
    def source() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise StorageUnavailable("gone")

    stream = Prefetcher(source(), depth=1)

    assert next(stream) == b"a"
    assert next(stream) == b"b"
    with pytest.raises(StorageUnavailable):
        next(stream)
    with pytest.raises(StopIteration):
        next(stream)


def test_prefetcher_close_releases_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"x" * 100
        finally:
            closed.set()

    stream = Prefetcher(endless(), depth=2)
    next(stream)
    stream.close()

    assert closed.is_set()
    with pytest.raises(StopIteration):
        next(stream)


def test_worker_raises_the_function_error_in_the_caller() -> None:
    handled: list[bytes] = []

    def handle(item: bytes) -> None:
        if item == b"bad":
            raise OSError("disk full")
        handled.append(item)

    worker = Worker(handle, name="test", inline=1, depth=1)
    worker.submit(b"inline")
    worker.submit(b"bad")

    with pytest.raises(OSError, match="disk full"):
        worker.finish()
    assert handled == [b"inline"]


def test_prefetcher_closed_from_its_own_thread_stops_without_waiting_for_itself() -> None:
    # A finalizer run by the collector on the helper thread (an abandoned stream caught in a
    # reference cycle) may close the Prefetcher from that very thread: it must not wait for
    # itself, and the thread must still stop and release its source.
    closed = threading.Event()
    returned = threading.Event()
    holder: list[Prefetcher] = []
    ready = threading.Event()

    def source() -> Iterator[bytes]:
        try:
            yield b"a"
            assert ready.wait(5)
            holder[0].close()  # on the helper thread, as such a finalizer would
            returned.set()
            while True:
                yield b"x"
        finally:
            closed.set()

    stream = Prefetcher(source(), depth=1)
    holder.append(stream)
    ready.set()

    assert returned.wait(5), "close() called on the helper thread waited for itself"
    assert closed.wait(5), "the helper thread did not release its source"
    stream._thread.join(5)
    assert not stream._thread.is_alive()
