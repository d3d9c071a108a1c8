"""`open_store`: build the object store named by a URL in the settings."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from storage.base import ObjectStore
from storage.errors import InvalidConfiguration
from storage.local import LocalStore
from storage.memory import MemoryStore
from storage.s3 import S3Store

_LOCAL_OPTIONS = frozenset({"create", "chunk_size", "writeback_every"})
_S3_OPTIONS = frozenset(
    {
        "endpoint_url",
        "region",
        "access_key",
        "secret_key",
        "session_token",
        "addressing_style",
        "part_size",
        "max_concurrency",
        "connect_timeout",
        "read_timeout",
        "max_attempts",
    }
)


def _check_options(scheme: str, options: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        # A misspelt option (say "endpoint" for "endpoint_url") must not be silently ignored.
        raise InvalidConfiguration(f"unknown {scheme} store options: {', '.join(unknown)}")


def open_store(url: str, **options: Any) -> ObjectStore:
    """Return the store for `memory://`, `file:///absolute/path` or `s3://bucket/prefix`.

    Credentials never go in the URL (it ends up in logs): pass them as options, or leave them
    out to use boto3's usual sources (environment, instance role).
    """
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise InvalidConfiguration("store URLs take no query or fragment")
    if parts.username is not None or parts.password is not None:
        raise InvalidConfiguration("credentials go in options, not in the store URL")
    if parts.scheme == "memory":
        _check_options("memory", options, frozenset())
        if parts.netloc or parts.path:
            raise InvalidConfiguration("the memory store URL is just memory://")
        return MemoryStore()
    if parts.scheme == "file":
        _check_options("file", options, _LOCAL_OPTIONS)
        if parts.netloc not in ("", "localhost"):
            raise InvalidConfiguration("file store URLs name a local path: file:///path")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidConfiguration("file store URLs need an absolute path: file:///path")
        return LocalStore(path, **options)
    if parts.scheme == "s3":
        _check_options("s3", options, _S3_OPTIONS)
        if not parts.netloc:
            raise InvalidConfiguration("S3 store URLs name a bucket: s3://bucket/prefix")
        return S3Store(parts.netloc, unquote(parts.path).strip("/"), **options)
    raise InvalidConfiguration("store URLs start with memory://, file:// or s3://")
