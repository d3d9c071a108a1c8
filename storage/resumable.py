"""Resumable encrypted uploads: an object written in pieces across requests and restarts.

The object format is the one of `storage.stream`, unchanged: a reader cannot tell a resumed
upload from a streamed one. What makes it resumable:

- every piece but the last holds a whole number of segments, so each piece is encrypted on its
  own, segment by segment, with the nonce derived from the segment's index (the counter of the
  STREAM construction); no encryption state crosses requests except the data key (kept wrapped)
  and the header;
- the SHA-256 of the whole plaintext (needed in the last segment's associated data) is carried
  across pieces as the hash function's *midstate*: `ResumableSha256` drives OpenSSL's
  `SHA256_Init/Update/Final` through ctypes on a context whose 112 bytes are saved with the
  upload's state. Nothing is re-read to compute the digest, and the digest is the standard
  SHA-256 of the file (not a tree hash);
- each piece's ciphertext is stored at once: as one part of the S3 multipart upload of the
  object on S3 (`S3Store.begin_parts` and friends), or as a part object of its own on other
  stores, joined into the object when the upload completes. Only ciphertext is ever stored.

The state (`ResumableState`) is a plain value the caller keeps in its database between pieces.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.base import ObjectStore, validate_key
from storage.encrypted import EncryptedStore, StoredObject
from storage.errors import ObjectExists, StorageError
from storage.keyring import validate_departement
from storage.keystore import DataKeyRecord
from storage.stream import (
    NONCE_PREFIX_SIZE,
    TAG_SIZE,
    Header,
    _nonce,
    associated_data,
)

_SHA256_CTX_SIZE = 112  # struct SHA256state_st: h[8], Nl, Nh, data[16], num, md_len (u32 each)
PARTS_PREFIX = "upload-parts"


class ResumeUnavailable(StorageError):
    """The resumable digest needs OpenSSL's libcrypto, which could not be loaded."""


def _libcrypto() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    try:
        lib = ctypes.CDLL(name)
        for function in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
            getattr(lib, function).restype = ctypes.c_int
    except (OSError, AttributeError) as e:
        raise ResumeUnavailable("libcrypto (OpenSSL) with SHA256_Init is required") from e
    lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return lib


_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        _LIB = _libcrypto()
    return _LIB


class ResumableSha256:
    """SHA-256 whose state can be saved as bytes and restored in another process."""

    def __init__(self, state: bytes | None = None) -> None:
        self._ctx = ctypes.create_string_buffer(_SHA256_CTX_SIZE)
        if state is None:
            if _lib().SHA256_Init(self._ctx) != 1:
                raise StorageError("SHA256_Init failed")
        else:
            if len(state) != _SHA256_CTX_SIZE:
                raise StorageError("malformed saved digest state")
            ctypes.memmove(self._ctx, state, _SHA256_CTX_SIZE)

    def update(self, data: bytes) -> None:
        """Hash more bytes."""
        if data and _lib().SHA256_Update(self._ctx, data, len(data)) != 1:
            raise StorageError("SHA256_Update failed")

    def state(self) -> bytes:
        """Return the midstate, to be restored with `ResumableSha256(state)`."""
        return self._ctx.raw

    def hexdigest(self) -> str:
        """Finish (on a copy: the state stays usable) and return the hex digest."""
        ctx = ctypes.create_string_buffer(self._ctx.raw, _SHA256_CTX_SIZE)
        out = ctypes.create_string_buffer(32)
        if _lib().SHA256_Final(out, ctx) != 1:
            raise StorageError("SHA256_Final failed")
        return out.raw.hex()


@runtime_checkable
class PartStore(Protocol):
    """An object store with native multipart uploads (S3)."""

    def begin_parts(self, key: str) -> str: ...

    def put_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> str: ...

    def complete_parts(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None: ...

    def abort_parts(self, key: str, upload_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ResumableState:
    """Everything needed to go on with an upload, kept by the caller between pieces."""

    object_key: str
    departement: str
    kek_version: int
    wrapped_key: bytes
    header: bytes
    upload_id: str
    received: int = 0
    digest_state: bytes = b""
    parts: tuple[tuple[int, str], ...] = field(default_factory=tuple)


def _part_key(state: ResumableState, number: int) -> str:
    return f"{PARTS_PREFIX}/{state.upload_id}/{number:05d}"


class ResumableUploads:
    """Begin, continue, complete and abort resumable uploads into an `EncryptedStore`."""

    def __init__(self, store: EncryptedStore) -> None:
        self.store = store
        _lib()  # fail now, not in the middle of an upload

    @property
    def segment_size(self) -> int:
        """Every piece but the last must hold a multiple of this many plaintext bytes."""
        return self.store._segment_size

    @property
    def _inner(self) -> ObjectStore:
        return self.store.inner

    def begin(self, object_key: str, *, departement: str) -> ResumableState:
        """Create the data key and the header, and start the multipart upload (on S3)."""
        validate_key(object_key)
        validate_departement(departement)
        if self.store.keyring.keystore.get_data_key(object_key) is not None:
            raise ObjectExists("an object was already stored under this key")
        self.store.keyring.ensure(departement)
        data_key = self.store.keyring.new_data_key(object_key, departement)
        header = Header(
            self.segment_size, data_key.kek_version, os.urandom(NONCE_PREFIX_SIZE)
        ).pack()
        inner = self._inner
        if isinstance(inner, PartStore):
            upload_id = inner.begin_parts(object_key)
        else:
            upload_id = secrets.token_hex(16)
        return ResumableState(
            object_key=object_key,
            departement=departement,
            kek_version=data_key.kek_version,
            wrapped_key=data_key.wrapped_key,
            header=header,
            upload_id=upload_id,
            digest_state=ResumableSha256().state(),
        )

    def _data_key(self, state: ResumableState) -> bytes:
        record = DataKeyRecord(
            object_key=state.object_key,
            departement=state.departement,
            kek_version=state.kek_version,
            wrapped_key=state.wrapped_key,
            sha256=None,
            size=0,
            created_at=datetime.now(UTC),
        )
        return self.store.keyring.unwrap_data_key(record)

    def append(self, state: ResumableState, data: bytes, *, last: bool) -> ResumableState:
        """Encrypt and store one piece; return the new state (the caller saves it).

        A piece that is not the `last` must hold a positive multiple of the segment size.
        Storing the same piece twice (a retry after a lost answer) is the caller's business:
        it passes the state it saved, so a piece is never counted twice.
        """
        size = self.segment_size
        if not last and (not data or len(data) % size):
            raise ValueError("a piece that is not the last must hold whole segments")
        aead = AESGCM(self._data_key(state))
        aad = associated_data(state.header, state.object_key, state.departement)
        prefix = state.header[-NONCE_PREFIX_SIZE:]
        digest = ResumableSha256(state.digest_state)
        counter = state.received // size
        out = bytearray(state.header) if not state.parts else bytearray()
        view = memoryview(data)
        whole = len(view) - len(view) % size
        digest.update(data)
        for start in range(0, whole, size):
            segment = view[start : start + size]
            out += aead.encrypt(_nonce(prefix, counter, False), segment, aad)
            counter += 1
        if last:
            # Only the final segment is short (possibly empty): see storage.stream.
            tail = bytes(view[whole:])
            sha256 = digest.hexdigest()
            out += aead.encrypt(_nonce(prefix, counter, True), tail, aad + bytes.fromhex(sha256))
        number = len(state.parts) + 1
        inner = self._inner
        if isinstance(inner, PartStore):
            etag = inner.put_part(state.object_key, state.upload_id, number, out)
        else:
            inner.put(_part_key(state, number), [out])
            etag = ""
        return replace(
            state,
            received=state.received + len(data),
            digest_state=digest.state(),
            parts=(*state.parts, (number, etag)),
        )

    def complete(self, state: ResumableState) -> StoredObject:
        """Join the parts into the object and record its data key; after the `last` piece."""
        inner = self._inner
        if isinstance(inner, PartStore):
            inner.complete_parts(state.object_key, state.upload_id, list(state.parts))
        else:
            inner.put(state.object_key, self._joined(state))
            self._delete_parts(state)
        record = DataKeyRecord(
            object_key=state.object_key,
            departement=state.departement,
            kek_version=state.kek_version,
            wrapped_key=state.wrapped_key,
            sha256=ResumableSha256(state.digest_state).hexdigest(),
            size=state.received,
            created_at=datetime.now(UTC),
        )
        try:
            self.store.keyring.keystore.add_data_key(record)
        except ObjectExists:
            raise
        except BaseException:
            self.store._discard(state.object_key)
            raise
        return StoredObject.from_record(record)

    def _joined(self, state: ResumableState) -> Iterator[bytes]:
        for number, _ in state.parts:
            stream = self._inner.get(_part_key(state, number))
            try:
                yield from stream
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

    def _delete_parts(self, state: ResumableState) -> None:
        for number, _ in state.parts:
            self._inner.delete(_part_key(state, number))

    def abort(self, state: ResumableState) -> None:
        """Drop what was stored of an unfinished upload; aborting twice is not an error."""
        inner = self._inner
        if isinstance(inner, PartStore):
            inner.abort_parts(state.object_key, state.upload_id)
        else:
            self._delete_parts(state)


__all__ = [
    "PARTS_PREFIX",
    "TAG_SIZE",
    "PartStore",
    "ResumableSha256",
    "ResumableState",
    "ResumableUploads",
    "ResumeUnavailable",
]
