"""`LocalStore`: objects as files under one directory, the embedded default."""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from io import FileIO
from pathlib import Path
from typing import ParamSpec, TypeVar, cast

from storage.base import Chunk, validate_key, validate_prefix
from storage.errors import InvalidConfiguration, ObjectNotFound, StorageError, StorageUnavailable

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Reads larger than a 1 MiB segment let the decryptor cut most segments straight out of the
# chunk instead of copying them together (about +15% on reads from the page cache).
CHUNK_SIZE = 4 << 20
_TEMP_PREFIX = ".tmp-"
# Every 8 MiB written, start the write-back of the range just written (sync_file_range with
# SYNC_FILE_RANGE_WRITE, as PostgreSQL's `backend_flush_after` and RocksDB's `bytes_per_sync`
# do), instead of leaving a whole object to the final fsync: the disk works while we still
# compute and the final fsync waits for the last few MiB only. The pages stay in the page cache
# (clean, so the kernel reclaims them first under pressure): the first download after an upload
# reads them from memory. Dropping them (posix_fadvise DONTNEED, the policy before) cost that
# first download a disk read, 5x its CPU and 4-6x its time, for no upload gain (docs/storage.md,
# "Page cache"). Ciphertext in the cache is no secret. Durability still rests on the final fsync.
WRITEBACK_EVERY = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>; the other flags would wait


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range (Linux only; Python's os module does not expose it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", function)


_sync_file_range = _load_sync_file_range()

# Errors that say "the disk or the mount is in trouble, try later" rather than "this is a bug".
_UNAVAILABLE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EROFS,
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.ENOTCONN,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
    }
)


def _translate(error: OSError) -> StorageError:
    """Map an OSError of the filesystem to the storage error family."""
    if isinstance(error, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return ObjectNotFound("no such object")
    if error.errno in _UNAVAILABLE_ERRNOS:
        return StorageUnavailable(f"local store unavailable: {os.strerror(error.errno or 0)}")
    return StorageError(f"local store error: {type(error).__name__}")


class LocalStore:
    """An `ObjectStore` keeping each object as a file under `root`, written atomically."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        create: bool = True,
        chunk_size: int = CHUNK_SIZE,
        writeback_every: int = WRITEBACK_EVERY,
    ) -> None:
        path = Path(root)
        if not path.is_absolute():
            raise InvalidConfiguration("LocalStore root must be an absolute path")
        if create:
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as e:
                raise _translate(e) from e
        if not path.is_dir():
            raise InvalidConfiguration("LocalStore root is not a directory")
        self.root = path.resolve()
        self._chunk_size = chunk_size
        self._writeback_every = writeback_every

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        # validate_key forbids "..", leading "/" and dot-names, so the path stays under root.
        return self.root.joinpath(*validate_key(key).split("/"))

    def put(self, key: str, chunks: Iterable[Chunk]) -> int:
        """Write `chunks` to a temporary file, fsync it, rename it over `key`, fsync the dir."""
        path = self._path(key)
        directory = path.parent
        self._make_dirs(directory)
        temp = directory / f"{_TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise _translate(e) from e
        size = 0
        flushed = 0
        try:
            try:
                # Errors of the source itself (a client that hung up, a failing encryption)
                # propagate as they are; only our own system calls are translated.
                for chunk in chunks:
                    # Written at once: a chunk may be a buffer its producer reuses afterwards.
                    _write_all(fd, chunk)
                    size += len(chunk)
                    if size - flushed >= self._writeback_every > 0:
                        _start_writeback(fd, flushed, size - flushed)
                        flushed = size
                _call(os.fsync, fd)
            finally:
                os.close(fd)
            _call(os.replace, temp, path)
        except BaseException:
            try:
                temp.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                pass  # the original error matters more than a leftover temporary file
            raise
        self._fsync_dir(directory)
        return size

    def get(self, key: str) -> _FileStream:
        """Return the object as a stream of chunks; raise ObjectNotFound before streaming."""
        path = self._path(key)
        try:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 - the stream closes it
        except OSError as e:
            raise _translate(e) from e
        return _FileStream(file, self._chunk_size)

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as e:
            raise _translate(e) from e
        # Empty directories are left in place: removing them would race with a concurrent put.
        self._fsync_dir(path.parent)

    def exists(self, key: str) -> bool:
        """Tell whether an object is stored under `key`."""
        return _is(self._path(key), stat.S_ISREG)

    def size(self, key: str) -> int:
        """Return the stored size of the object in bytes."""
        path = self._path(key)
        try:
            status = path.stat()
        except OSError as e:
            raise _translate(e) from e
        if not stat.S_ISREG(status.st_mode):
            raise ObjectNotFound("no such object")
        return status.st_size

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys starting with `prefix`, in sorted order (temporary files excluded)."""
        validate_prefix(prefix)
        directory, _, _ = prefix.rpartition("/")
        base = self.root.joinpath(*directory.split("/")) if directory else self.root
        for key in self._walk(base, directory):
            if key.startswith(prefix):
                yield key

    def _walk(self, directory: Path, key_prefix: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise _translate(e) from e
        for entry in entries:
            if entry.name.startswith("."):
                continue  # temporary files of puts in progress, never valid keys
            key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                is_file = not is_dir and entry.is_file(follow_symlinks=False)
            except OSError as e:
                raise _translate(e) from e
            if is_dir:
                yield from self._walk(Path(entry.path), key)
            elif is_file:
                yield key

    def _make_dirs(self, directory: Path) -> None:
        """Create missing directories up to `directory` and make their entries durable."""
        missing = []
        current = directory
        while current != self.root and not _is(current, stat.S_ISDIR):
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                pass  # created meanwhile by a concurrent put
            except OSError as e:
                raise _translate(e) from e
            self._fsync_dir(path.parent)

    def _fsync_dir(self, directory: Path) -> None:
        """Flush a directory so that a rename or unlink in it survives a crash."""
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise _translate(e) from e
        try:
            _call(os.fsync, fd)
        finally:
            os.close(fd)


class _FileStream(Iterator[bytes]):
    """An open object file: chunks of `chunk_size` bytes, or `readinto` (a `ReadableStream`)."""

    def __init__(self, file: FileIO, chunk_size: int) -> None:
        self._file = file
        self._chunk_size = chunk_size

    def __next__(self) -> bytes:
        if self._file.closed:
            raise StopIteration  # as a closed generator does
        try:
            data = self._file.read(self._chunk_size)
        except OSError as e:
            raise _translate(e) from e
        if not data:
            self.close()
            raise StopIteration
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Fill `buffer` from the file, looping over short reads; fewer bytes only at the end."""
        filled = 0
        while filled < len(buffer) and not self._file.closed:
            try:
                count = self._file.readinto(buffer[filled:])
            except OSError as e:
                raise _translate(e) from e
            if not count:
                break
            filled += count
        return filled

    def close(self) -> None:
        """Close the file; closing twice is not an error."""
        self._file.close()

    def __del__(self) -> None:
        self._file.close()


def _is(path: Path, kind: Callable[[int], bool]) -> bool:
    """Whether *path* exists and is of *kind* (stat.S_ISREG...), not following symlinks at the end.

    Unlike Path.is_file, an error other than "not there" (a stale NFS handle, EIO, EACCES) is
    raised, translated, instead of being taken for "no such object".
    """
    try:
        status = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:
        raise _translate(e) from e
    return kind(status.st_mode)


def _write_all(fd: int, data: Chunk) -> None:
    """Write all of `data`, looping over short writes."""
    view = memoryview(data)
    while view:
        written = _call(os.write, fd, view)
        view = view[written:]


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing `length` bytes at `offset` back to disk, without waiting.

    A hint only, that keeps the pages cached: where sync_file_range is missing (not Linux), or
    fails, the final fsync does all the work, as it would anyway.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _call(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Call an os function, translating its OSError."""
    try:
        return function(*args, **kwargs)
    except OSError as e:
        raise _translate(e) from e
