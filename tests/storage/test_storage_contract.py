"""The `ObjectStore` contract, run against MemoryStore, LocalStore and S3Store on SeaweedFS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage import InvalidObjectKey, MemoryStore, ObjectNotFound, ObjectStore
from storage.s3 import READ_CHUNK_SIZE
from tests.storage.helpers import (
    PART,
    chunked,
    new_key,
    open_descriptors,
    random_bytes,
    read_all,
)


def test_every_backend_satisfies_the_protocol(object_store: ObjectStore) -> None:
    assert isinstance(object_store, ObjectStore)


@pytest.mark.parametrize("size", [0, 1, 1000, 1024 * 1024 + 7])
def test_put_then_get_returns_the_same_bytes(object_store: ObjectStore, size: int) -> None:
    key = new_key()
    data = random_bytes(size)

    written = object_store.put(key, chunked(data, 4096) if data else iter([]))

    assert written == size
    assert read_all(object_store, key) == data
    assert object_store.size(key) == size
    assert object_store.exists(key)


def test_put_accepts_chunks_of_any_size(object_store: ObjectStore) -> None:
    data = random_bytes(300_000)
    pieces = [data[:1], data[1:70_000], b"", data[70_000:70_001], data[70_001:]]
    key = new_key()

    object_store.put(key, pieces)

    assert read_all(object_store, key) == data


def test_put_copies_each_chunk_before_taking_the_next(object_store: ObjectStore) -> None:
    # Given a producer that reuses one buffer for every chunk, as the encryptor does
    data = random_bytes(2 * PART + 4321)

    def reused_buffer() -> Iterator[memoryview]:
        buffer = bytearray(65_536)
        for start in range(0, len(data), len(buffer)):
            piece = data[start : start + len(buffer)]
            buffer[: len(piece)] = piece
            yield memoryview(buffer)[: len(piece)]
            buffer[:] = bytes(len(buffer))  # overwritten once the store asked for more

    # When it is stored, Then every chunk was written or copied in time
    key = new_key()
    assert object_store.put(key, reused_buffer()) == len(data)
    assert read_all(object_store, key) == data


def test_object_larger_than_a_part_is_stored_whole(object_store: ObjectStore) -> None:
    # On S3 this is a multipart upload of three parts, the last one short.
    data = random_bytes(2 * PART + 12345)
    key = new_key()

    assert object_store.put(key, chunked(data, 1024 * 1024)) == len(data)

    assert object_store.size(key) == len(data)
    assert read_all(object_store, key) == data


@pytest.mark.parametrize("size", [PART - 1, PART, PART + 1, 2 * PART])
def test_sizes_around_part_boundaries(object_store: ObjectStore, size: int) -> None:
    data = random_bytes(size)
    key = new_key()

    assert object_store.put(key, chunked(data, 999_983)) == size

    assert read_all(object_store, key) == data


def test_get_streams_in_chunks_not_all_at_once(object_store: ObjectStore) -> None:
    data = random_bytes(9 * 1024 * 1024 + 5)
    key = new_key()
    object_store.put(key, [data])

    chunks = list(object_store.get(key))

    assert len(chunks) > 1
    assert max(len(chunk) for chunk in chunks) <= 8 * 1024 * 1024
    assert b"".join(chunks) == data


def test_put_replaces_an_existing_object(object_store: ObjectStore) -> None:
    key = new_key()
    object_store.put(key, [b"first version, longer"])

    object_store.put(key, [b"second"])

    assert read_all(object_store, key) == b"second"
    assert object_store.size(key) == 6


def test_missing_object_raises_object_not_found_before_streaming(
    object_store: ObjectStore,
) -> None:
    key = new_key()

    with pytest.raises(ObjectNotFound):
        object_store.get(key)
    with pytest.raises(ObjectNotFound):
        object_store.size(key)
    assert not object_store.exists(key)


def test_delete_removes_and_is_idempotent(object_store: ObjectStore) -> None:
    key = new_key()
    object_store.put(key, [b"data"])

    object_store.delete(key)
    object_store.delete(key)

    assert not object_store.exists(key)
    with pytest.raises(ObjectNotFound):
        object_store.get(key)


def test_list_yields_keys_under_a_prefix(object_store: ObjectStore) -> None:
    base = new_key("listing")
    keys = [f"{base}/a/1", f"{base}/a/2", f"{base}/b/1", f"{base}x"]
    for key in keys:
        object_store.put(key, [b"x"])

    assert sorted(object_store.list(f"{base}/")) == keys[:3]
    assert sorted(object_store.list(f"{base}/a")) == keys[:2]
    assert sorted(object_store.list(base)) == sorted(keys)
    assert list(object_store.list(f"{base}/nothing")) == []
    assert set(keys) <= set(object_store.list())


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/abs",
        "../escape",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        ".hidden",
        "a/.hidden",
        "a b",
        "a\\b",
        "é",
        "a\x00b",
        "a" * 201,
        "-dash-first",
    ],
)
def test_malformed_keys_are_refused_by_every_operation(object_store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        object_store.put(key, [b"x"])
    with pytest.raises(InvalidObjectKey):
        object_store.get(key)
    with pytest.raises(InvalidObjectKey):
        object_store.delete(key)
    with pytest.raises(InvalidObjectKey):
        object_store.exists(key)
    with pytest.raises(InvalidObjectKey):
        object_store.size(key)


@pytest.mark.parametrize("prefix", ["/", "../", "a/../", "a//", ".x", "a/.b"])
def test_malformed_prefixes_are_refused(object_store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidObjectKey):
        list(object_store.list(prefix))


def test_a_failing_source_stores_nothing(object_store: ObjectStore) -> None:
    key = new_key()
    object_store.put(key, [b"previous"])

    def source() -> Iterator[bytes]:
        yield random_bytes(PART)
        yield random_bytes(PART)
        raise ConnectionResetError("the client hung up")

    with pytest.raises(ConnectionResetError):
        object_store.put(key, source())

    assert read_all(object_store, key) == b"previous"
    assert sorted(object_store.list(key)) == [key]


def test_abandoned_stream_can_be_closed(object_store: ObjectStore) -> None:
    key = new_key()
    # More than one read of the S3 store, so that its HTTP body is left half-read: a body read to
    # its end goes back to the connection pool, open and reusable, which is no leak.
    data = random_bytes(3 * READ_CHUNK_SIZE)
    object_store.put(key, [data])
    # A stream of a file or of an HTTP body holds one descriptor; one of the in-memory twin none.
    held_by_a_stream = 0 if isinstance(object_store, MemoryStore) else 1

    # Given a stream read for one chunk only
    stream = object_store.get(key)
    assert data.startswith(next(stream))
    held = open_descriptors()
    # When its reader closes it
    stream.close()  # type: ignore[attr-defined]

    # Then it yields nothing more, its file or connection is released now, and the object is
    # whole for the next reader
    assert list(stream) == []
    assert open_descriptors() <= held - held_by_a_stream
    assert read_all(object_store, key) == data

    # Given a stream never read, When it is dropped, Then what it held is released at once
    unread = object_store.get(key)
    held = open_descriptors()
    del unread
    assert open_descriptors() <= held - held_by_a_stream
