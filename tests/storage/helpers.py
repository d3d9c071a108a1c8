"""Helpers shared by the storage tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

from storage import MIN_SEGMENT_SIZE, ObjectStore, S3Store
from tests.support.seaweedfs import S3Endpoint

SEGMENT = MIN_SEGMENT_SIZE  # small segments: multi-segment objects stay small and fast
PART = 5 * 1024 * 1024  # the smallest S3 part, so multipart uploads start at 5 MiB


def make_s3_store(endpoint: S3Endpoint, prefix: str | None = None, **options: object) -> S3Store:
    """Return an S3Store on `endpoint` under a fresh prefix, with test-friendly timeouts."""
    settings: dict[str, object] = {
        "endpoint_url": endpoint.endpoint_url,
        "region": endpoint.region,
        "access_key": endpoint.access_key,
        "secret_key": endpoint.secret_key,
        "part_size": PART,
        "connect_timeout": 2,
        "read_timeout": 20,
        "max_attempts": 2,
    }
    settings.update(options)
    return S3Store(
        endpoint.bucket,
        prefix if prefix is not None else f"test-{uuid.uuid4().hex[:12]}",
        **settings,  # type: ignore[arg-type]
    )


def read_all(store: ObjectStore, key: str) -> bytes:
    """Read a whole object from any store."""
    return b"".join(store.get(key))


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    """Yield `data` in pieces of `size` bytes, as an upload would arrive."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def new_key(prefix: str = "obj") -> str:
    """Return a fresh generated object key."""
    return f"{prefix}/{uuid.uuid4().hex}"


def random_bytes(size: int) -> bytes:
    """Return incompressible test data."""
    return os.urandom(size)


def open_descriptors() -> int:
    """How many file descriptors (files, sockets) this process holds open now (Linux)."""
    return len(os.listdir("/proc/self/fd"))
