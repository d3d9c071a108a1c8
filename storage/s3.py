"""`S3Store`: objects in a bucket of any S3-compatible service, through boto3."""

from __future__ import annotations

import contextlib
import io
import re
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
)

from storage.base import Chunk, primed, validate_key, validate_prefix
from storage.errors import (
    InvalidConfiguration,
    InvalidObjectKey,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB  # the S3 minimum for every part but the last
MAX_PARTS = 10_000  # the S3 maximum: 78 GiB objects with 8 MiB parts
READ_CHUNK_SIZE = MIB

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_UNAVAILABLE_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "503",
        "500",
    }
)


def _code(error: Exception) -> str:
    """The S3 error code of a boto3 error ("" for anything but a service's answer)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def _translate(error: Exception) -> StorageError:
    """Map a boto3 error to the storage error family (messages carry codes, never data)."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _NOT_FOUND_CODES:
            return ObjectNotFound("no such object")
        if code in _UNAVAILABLE_CODES or status >= 500:
            return StorageUnavailable(f"S3 unavailable ({code or status})")
        return StorageError(f"S3 error ({code or status})")
    if isinstance(error, ConnectionError | HTTPClientError | IncompleteReadError):
        return StorageUnavailable(f"S3 unreachable ({type(error).__name__})")
    if isinstance(error, BotoCoreError):
        return StorageError(f"S3 client error ({type(error).__name__})")
    return StorageError(f"S3 error ({type(error).__name__})")


# What a boto3 call or a body read may raise besides our own errors. OSError covers sockets
# reset under urllib3 when the server dies in the middle of a body.
_BACKEND_ERRORS = (BotoCoreError, ClientError, OSError)


class S3Store:
    """An `ObjectStore` in an S3 bucket, below an optional key prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        addressing_style: Literal["auto", "path", "virtual"] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 2,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        client: S3Client | None = None,
    ) -> None:
        if _BUCKET_RE.fullmatch(bucket) is None:
            raise InvalidConfiguration("malformed S3 bucket name")
        prefix = prefix.strip("/")
        try:
            validate_prefix(prefix)
        except InvalidObjectKey:
            raise InvalidConfiguration("malformed S3 key prefix") from None
        if not MIN_PART_SIZE <= part_size <= 5 * 1024 * MIB:
            raise InvalidConfiguration("part_size must be between 5 MiB and 5 GiB")
        if max_concurrency < 1 or max_attempts < 1:
            raise InvalidConfiguration("max_concurrency and max_attempts must be positive")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        if client is None:
            config = Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                # Custom endpoints (SeaweedFS, MinIO, Ceph) rarely serve virtual-host buckets.
                s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
                # Newer botocore sends CRC checksums that several S3-compatible services reject;
                # integrity is already guaranteed by SigV4 payload signing or TLS, and by our AEAD.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=max(10, 2 * max_concurrency),
                tcp_keepalive=True,
            )
            # A private session: boto3's default one is not safe to share between threads.
            session = boto3.session.Session(
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                aws_session_token=session_token,
                region_name=region,
            )
            client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.client = client

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put(self, key: str, chunks: Iterable[Chunk]) -> int:
        """Upload `chunks` in one request if small, else as a multipart upload in parts."""
        name = self._name(key)
        source = _Filler(chunks)
        # Grown to the object's size, not allocated at the part size: most objects are far
        # smaller than a part, and zeroing 8 MiB for each slowed the copy of many small ones.
        first = source.take(self.part_size)
        size = len(first)
        if size == self.part_size:
            second = bytearray(self.part_size)
            more = source.fill(second)
            if more:
                return self._put_multipart(name, source, [(first, size), (second, more)])
        try:
            # As bytes, not as a file: botocore sends any file-like body with "Expect:
            # 100-continue", one more round trip per object, which costs small objects more than
            # this copy of at most one part does.
            self.client.put_object(Bucket=self.bucket, Key=name, Body=bytes(first))
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e
        return size

    def _put_multipart(
        self, name: str, source: _Filler, filled: list[tuple[bytearray, int]]
    ) -> int:
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)[
                "UploadId"
            ]
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e
        # Parts are sent by worker threads while the caller's stream (and its encryption) fills
        # the next one. Their buffers are reused: memory is (max_concurrency + 1) parts, and
        # no 8 MiB block is allocated and freed per part (glibc would keep the freed ones).
        in_flight: deque[tuple[Future[CompletedPartTypeDef], bytearray]] = deque()
        free: list[bytearray] = []
        parts: list[CompletedPartTypeDef] = []
        size = 0
        # Threads of this upload only: a slow client uploading elsewhere cannot hold them.
        uploader = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="s3-upload")
        try:
            while True:
                while len(in_flight) >= self.max_concurrency:
                    future, buffer = in_flight.popleft()
                    parts.append(future.result())
                    free.append(buffer)
                if filled:
                    buffer, length = filled.pop(0)
                else:
                    buffer = free.pop() if free else bytearray(self.part_size)
                    length = source.fill(buffer)
                if not length:
                    break
                number = len(parts) + len(in_flight) + 1
                if number > MAX_PARTS:
                    raise StorageError("object too large for the configured part size")
                view = memoryview(buffer)[:length]
                future = uploader.submit(self._upload_part, name, upload_id, number, view)
                in_flight.append((future, buffer))
                size += length
                if length < self.part_size:
                    break
            while in_flight:
                parts.append(in_flight.popleft()[0].result())
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
            except _BACKEND_ERRORS as e:
                raise _translate(e) from e
        except BaseException:
            # Errors of the source (a client that hung up, a failing encryption) propagate as
            # they are; ours were translated where they happened. No incomplete upload may be
            # left behind: wait for the parts still being sent (an abort does not stop them),
            # then abort. If the service is unreachable the abort fails too, and
            # abort_incomplete_uploads() cleans up later.
            for future, _ in in_flight:
                future.cancel()
            for future, _ in in_flight:
                with contextlib.suppress(BaseException):
                    future.result()
            with contextlib.suppress(*_BACKEND_ERRORS):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
            raise
        finally:
            uploader.shutdown(wait=True, cancel_futures=True)
        return size

    def _upload_part(
        self, name: str, upload_id: str, number: int, part: memoryview
    ) -> CompletedPartTypeDef:
        try:
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=_body(part),
            )
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e
        return {"PartNumber": number, "ETag": response["ETag"]}

    # Multipart uploads driven by the caller, one part per request (storage.resumable).

    def begin_parts(self, key: str) -> str:
        """Start a multipart upload of `key`; return its upload id."""
        try:
            response = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._name(key))
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e
        return response["UploadId"]

    def put_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> str:
        """Upload part `number` (every part but the last at least 5 MiB); return its ETag."""
        if not 1 <= number <= MAX_PARTS:
            raise StorageError("too many parts")
        return self._upload_part(self._name(key), upload_id, number, memoryview(data))["ETag"]

    def complete_parts(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Join the parts into the object."""
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._name(key),
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e

    def abort_parts(self, key: str, upload_id: str) -> None:
        """Abort the multipart upload; an upload already gone is not an error."""
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._name(key), UploadId=upload_id
            )
        except _BACKEND_ERRORS as e:
            if _code(e) != "NoSuchUpload":
                raise _translate(e) from e

    def get(self, key: str) -> Iterator[bytes]:
        """Return the object as a stream of chunks; raise ObjectNotFound before streaming."""
        return primed(self._stream(self._name(key)))

    def _stream(self, name: str) -> Generator[bytes, None, None]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e
        try:
            yield b""
            while True:
                try:
                    data = body.read(READ_CHUNK_SIZE)
                except _BACKEND_ERRORS as e:
                    raise _translate(e) from e
                if not data:
                    return
                yield data
        finally:
            body.close()

    def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except _BACKEND_ERRORS as e:
            error = _translate(e)
            if not isinstance(error, ObjectNotFound):
                raise error from e

    def exists(self, key: str) -> bool:
        """Tell whether an object is stored under `key`."""
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        """Return the stored size of the object in bytes."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._name(key))["ContentLength"]
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys starting with `prefix`, in lexicographic order (for jobs only)."""
        validate_prefix(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    name = item.get("Key", "")
                    if name.startswith(self.prefix):
                        yield name[len(self.prefix) :]
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e

    def incomplete_uploads(self) -> Iterator[tuple[str, str, datetime]]:
        """Yield (object key, upload id, start time) of multipart uploads not completed."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    name = upload.get("Key", "")
                    yield (
                        name[len(self.prefix) :],
                        upload.get("UploadId", ""),
                        upload.get("Initiated", datetime.min.replace(tzinfo=UTC)),
                    )
        except _BACKEND_ERRORS as e:
            raise _translate(e) from e

    def abort_incomplete_uploads(
        self,
        older_than: timedelta = timedelta(days=1),
        *,
        in_progress: Callable[[Sequence[str]], AbstractSet[str]] | None = None,
        keep: AbstractSet[str] = frozenset(),
        dry_run: bool = False,
    ) -> int:
        """Abort multipart uploads that can no longer complete; return how many (or would).

        Uploads whose id is in `keep` (resumable uploads that the application still tracks,
        `storage.resumable`) are never aborted here, whatever their age.

        A job for uploads whose abort could not reach the service (it was down, or the process
        died mid-way): their parts take space until aborted. Uploads started more than
        `older_than` ago are aborted. Younger ones may still be in progress on another server
        and are left alone, unless `in_progress` is given: it receives their object keys and
        returns those still being written, and the others are aborted too.
        """
        limit = datetime.now(UTC) - older_than
        uploads = list(self.incomplete_uploads())
        young = [key for key, _, started in uploads if started > limit]
        alive = in_progress(young) if in_progress is not None and young else set(young)
        stale = [
            (key, upload_id)
            for key, upload_id, started in uploads
            if (started <= limit or key not in alive) and upload_id not in keep
        ]
        if dry_run:
            return len(stale)
        aborted = 0
        for key, upload_id in stale:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.prefix + key, UploadId=upload_id
                )
            except _BACKEND_ERRORS as e:
                if _code(e) == "NoSuchUpload":
                    continue  # aborted meanwhile, by another server's job
                error = _translate(e)
                if not isinstance(error, ObjectNotFound):
                    raise error from e
            aborted += 1
        return aborted


class _Filler:
    """Copy a stream of chunks into fixed-size buffers, one buffer at a time."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def take(self, limit: int) -> bytearray:
        """Up to *limit* bytes of the stream, in a new buffer of their size (fewer at the end)."""
        buffer = bytearray()
        while len(buffer) < limit:
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk).cast("B")
                continue
            take = min(limit - len(buffer), len(self._pending))
            buffer += self._pending[:take]
            self._pending = self._pending[take:]
        return buffer

    def fill(self, buffer: bytearray) -> int:
        """Fill `buffer` from the stream; return the bytes written, fewer only at the end."""
        filled = 0
        size = len(buffer)
        while filled < size:
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk).cast("B")
                continue
            take = min(size - filled, len(self._pending))
            buffer[filled : filled + take] = self._pending[:take]
            filled += take
            self._pending = self._pending[take:]
        return filled


class _BufferReader(io.RawIOBase):
    """A seekable read-only file over a buffer, so boto3 sends (and re-sends) it uncopied."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        piece = self._view[self._position : self._position + len(target)]
        target[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, origin[whence] + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def __len__(self) -> int:
        return len(self._view)


def _body(view: memoryview) -> IO[bytes]:
    """Wrap a buffer for boto3, whose stubs want IO (it only reads, seeks and tells)."""
    return cast("IO[bytes]", _BufferReader(view))
