"""LocalStore specifics: atomic durable writes inside its root, private permissions."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import (
    InvalidConfiguration,
    LocalStore,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from storage.base import ReadableStream
from storage.local import _translate
from tests.storage.helpers import read_all


def test_objects_are_files_under_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")

    store.put("deposits/2026/abc", [b"data"])

    path = tmp_path / "objects" / "deposits" / "2026" / "abc"
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE((tmp_path / "objects").stat().st_mode) & 0o077 == 0


def test_a_relative_root_is_refused() -> None:
    with pytest.raises(InvalidConfiguration):
        LocalStore("relative/objects")


def test_readers_never_see_a_partial_object(tmp_path: Path) -> None:
    # Given an object being replaced by a new version, still being written
    store = LocalStore(tmp_path)
    store.put("obj", [b"old"])
    seen: list[object] = []

    def source() -> Iterator[bytes]:
        yield b"new-part-1"
        seen.append(read_all(store, "obj"))
        seen.append(list(store.list()))
        yield b"new-part-2"

    # When readers look in the middle of the write
    store.put("obj", source())

    # Then they saw the old version only, and no temporary file is listed or left
    assert seen == [b"old", ["obj"]]
    assert read_all(store, "obj") == b"new-part-1new-part-2"
    assert os.listdir(tmp_path) == ["obj"]


def test_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)

    def source() -> Iterator[bytes]:
        yield b"half"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        store.put("dir/obj", source())

    assert os.listdir(tmp_path / "dir") == []
    assert not store.exists("dir/obj")


def test_listing_ignores_temporary_and_foreign_entries(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/b", [b"1"])
    (tmp_path / "a" / ".tmp-123").write_bytes(b"in progress")
    os.mkfifo(tmp_path / "a" / "fifo")

    assert list(store.list()) == ["a/b"]


def test_a_directory_is_not_an_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put("a/b", [b"1"])

    assert not store.exists("a")
    with pytest.raises(ObjectNotFound):
        store.get("a")
    with pytest.raises(ObjectNotFound):
        store.size("a")


def test_a_key_under_an_existing_object_is_an_error(tmp_path: Path) -> None:
    # Keys "a" and "a/b" cannot both be files; generated keys never collide like this.
    store = LocalStore(tmp_path)
    store.put("a", [b"1"])

    with pytest.raises(StorageError):
        store.put("a/b", [b"2"])


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT])
def test_disk_trouble_is_reported_as_unavailable(code: int) -> None:
    assert isinstance(_translate(OSError(code, os.strerror(code))), StorageUnavailable)


def test_other_os_errors_are_storage_errors() -> None:
    error = _translate(PermissionError(errno.EACCES, "denied"))

    assert type(error) is StorageError


@pytest.mark.parametrize("has_sync_file_range", [True, False])
def test_early_writeback_keeps_the_content_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_sync_file_range: bool
) -> None:
    # Given write-back started every 64 KiB (or a system without sync_file_range)
    if not has_sync_file_range:
        monkeypatch.setattr("storage.local._sync_file_range", None)
    store = LocalStore(tmp_path, writeback_every=64 * 1024)
    data = os.urandom(1024 * 1024 + 333)

    # When an object of many such ranges is written in uneven chunks
    size = store.put("obj", (data[i : i + 50_000] for i in range(0, len(data), 50_000)))

    # Then it is stored whole, with no temporary file left
    assert size == len(data)
    assert read_all(store, "obj") == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj"]


def test_early_writeback_starts_each_range_once_and_keeps_it_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the system calls of the write-back recorded
    ranges: list[tuple[int, int, int]] = []
    dropped: list[tuple[int, ...]] = []
    monkeypatch.setattr(
        "storage.local._sync_file_range",
        lambda fd, offset, length, flags: ranges.append((offset, length, flags)) or 0,
    )
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: dropped.append(args), raising=False)
    store = LocalStore(tmp_path, writeback_every=64 * 1024)

    # When 200,000 bytes are written in 50,000-byte chunks
    data = os.urandom(200_000)
    store.put("obj", (data[i : i + 50_000] for i in range(0, len(data), 50_000)))

    # Then the write-back of each range written is started once, without waiting
    # (SYNC_FILE_RANGE_WRITE alone), and nothing asks the kernel to drop the cached pages:
    # the first download after an upload reads memory, not the disk (docs/storage.md)
    assert ranges == [(0, 100_000, 2), (100_000, 100_000, 2)]
    assert dropped == []


def test_a_stream_can_fill_the_readers_buffers_directly(tmp_path: Path) -> None:
    # Given a stored object of 10 KiB + 3 bytes
    store = LocalStore(tmp_path / "objects", chunk_size=4096)
    data = os.urandom(10 * 1024 + 3)
    store.put("k", [data])

    # When it is read into a reused 4 KiB buffer (what the decryptor does with a file)
    stream = store.get("k")
    assert isinstance(stream, ReadableStream)
    buffer = memoryview(bytearray(4096))
    pieces = []
    while count := stream.readinto(buffer):
        pieces.append(bytes(buffer[:count]))

    # Then every piece is full but the last, and together they are the object
    assert [len(piece) for piece in pieces] == [4096, 4096, 2051]
    assert b"".join(pieces) == data
    stream.close()


def test_a_stream_mixes_chunks_and_readinto_and_stops_once_closed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects", chunk_size=4)
    store.put("k", [b"0123456789"])

    stream = store.get("k")
    assert next(stream) == b"0123"
    buffer = memoryview(bytearray(3))
    assert stream.readinto(buffer) == 3 and bytes(buffer) == b"456"
    assert list(stream) == [b"789"]
    # A closed stream ends, as a closed generator does, instead of raising ValueError
    stream.close()
    assert list(stream) == []
    assert stream.readinto(buffer) == 0


def test_a_missing_object_fails_at_get_not_at_first_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")

    with pytest.raises(ObjectNotFound):
        store.get("missing")


def test_a_stale_mount_is_unavailable_not_a_missing_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stored object on a mount whose server went away (NFS answers ESTALE)
    store = LocalStore(tmp_path / "objects")
    store.put("a/b", [b"x"])
    real_stat = os.stat

    def stale(path: object, *args: object, **kwargs: object) -> os.stat_result:
        if str(path).startswith(str(store.root)):
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stale)
    # Then asking for it says "try later", never "no such object" nor a raw OSError
    with pytest.raises(StorageUnavailable):
        store.exists("a/b")
    with pytest.raises(StorageUnavailable):
        store.put("c/d", [b"y"])
