"""`EncryptedStore`: envelope encryption over any `ObjectStore`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from storage.base import ObjectStore, ReadableStream, primed, validate_key
from storage.errors import ObjectExists, ObjectNotFound, ObjectShredded, StorageError
from storage.keyring import Keyring, validate_departement
from storage.keystore import DataKeyRecord
from storage.pipeline import Prefetcher
from storage.stream import DECRYPT_AHEAD, DEFAULT_SEGMENT_SIZE, Encryptor, decrypt

# Below this size a read-ahead thread costs more than it saves.
_PREFETCH_ABOVE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What is known of a stored object without reading it."""

    object_key: str
    departement: str
    size: int
    sha256: str
    kek_version: int
    created_at: datetime

    @classmethod
    def from_record(cls, record: DataKeyRecord) -> StoredObject:
        """Describe a live data key record."""
        if record.sha256 is None:
            raise ObjectShredded("the object was shredded")
        return cls(
            object_key=record.object_key,
            departement=record.departement,
            size=record.size,
            sha256=record.sha256,
            kek_version=record.kek_version,
            created_at=record.created_at,
        )


class EncryptedStore:
    """Encrypt objects with a fresh data key each, wrapped by their département's key.

    The ciphertext goes to `inner`; the wrapped data key and the plaintext's SHA-256 go to the
    keyring's key store, so neither a bucket nor a database dump alone can be read.
    """

    def __init__(
        self,
        inner: ObjectStore,
        keyring: Keyring,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        verify_sha256: bool = False,
    ) -> None:
        self.inner = inner
        self.keyring = keyring
        self._segment_size = segment_size
        # The recorded digest is always checked through the last segment's tag (see
        # storage.stream); this hashes the plaintext again on top, at a CPU cost.
        self.verify_sha256 = verify_sha256

    def __repr__(self) -> str:
        return f"EncryptedStore({self.inner!r}, {self.keyring!r})"

    def put(self, object_key: str, chunks: Iterable[bytes], *, departement: str) -> StoredObject:
        """Encrypt `chunks` as they come and store them under a never-used `object_key`."""
        validate_key(object_key)
        validate_departement(departement)
        keystore = self.keyring.keystore
        if keystore.get_data_key(object_key) is not None:
            raise ObjectExists("an object was already stored under this key")
        data_key = self.keyring.new_data_key(object_key, departement)
        encryptor = Encryptor(
            data_key.key,
            object_key=object_key,
            departement=departement,
            kek_version=data_key.kek_version,
            segment_size=self._segment_size,
        )
        ciphertext = encryptor.encrypt(chunks)
        try:
            self.inner.put(object_key, ciphertext)
        finally:
            ciphertext.close()
        if not encryptor.is_finished:
            # Storing a prefix of the stream would look like a truncation attack later on.
            self._discard(object_key)
            raise StorageError("the object store stopped reading before the end of the stream")
        record = DataKeyRecord(
            object_key=object_key,
            departement=departement,
            kek_version=data_key.kek_version,
            wrapped_key=data_key.wrapped_key,
            sha256=encryptor.sha256,
            size=encryptor.size,
            created_at=datetime.now(UTC),
        )
        # The ciphertext is written first: if saving the key fails, what is left is unreadable
        # garbage that we remove now, or that a job finds with orphans() after a crash.
        try:
            keystore.add_data_key(record)
        except ObjectExists:
            raise  # a concurrent put of the same key won: its ciphertext must stay
        except BaseException:
            self._discard(object_key)
            raise
        return StoredObject.from_record(record)

    def _discard(self, object_key: str) -> None:
        with contextlib.suppress(StorageError):
            self.inner.delete(object_key)

    def open(self, object_key: str, *, reuse_buffers: bool = False) -> Iterator[bytes]:
        """Return the plaintext as a stream, having authenticated the first segment already.

        Raises ObjectNotFound (or ObjectShredded) at once; IntegrityError at once or while
        streaming (ObjectCorrupted, naming the object and the segment, when the content is
        damaged), and never after yielding bytes that failed authentication.

        `reuse_buffers=True` is for a reader that writes or copies each chunk before asking for
        the next (a server sending it): chunks are then `memoryview`s of a few reused buffers,
        each valid until the next is asked for, nothing is allocated per segment, and the
        segments of a file are decrypted in the reader's thread (those of a network stream
        still by a read-ahead thread).
        """
        record = self._record(object_key)
        data_key = self.keyring.unwrap_data_key(record)
        if record.sha256 is None:
            raise ObjectShredded("the object was shredded")
        chunks = self.inner.get(object_key)
        if record.size > _PREFETCH_ABOVE and not isinstance(chunks, ReadableStream):
            # A network stream waits for the network: read it ahead in a helper thread. A file
            # is read straight into the decryptor's buffer by its own read-ahead thread.
            chunks = Prefetcher(chunks)
        return primed(
            decrypt(
                chunks,
                data_key,
                object_key=object_key,
                departement=record.departement,
                max_kek_version=record.kek_version,
                sha256=record.sha256,
                verify_sha256=self.verify_sha256,
                reuse_buffers=reuse_buffers,
                # A server sending a file decrypts in its own thread: handing segments over from
                # a read-ahead thread cost a gunicorn worker more CPU (0.82 against 0.55 ms per
                # MiB, 2 vCPUs under load) than the overlap saved; the socket's buffer and the
                # kernel's read-ahead decouple reading and sending. A network stream keeps it, as
                # before: it overlaps the wait for the network (over HTTP the two did not differ
                # beyond the noise of a loaded machine, docs/storage.md "Through S3").
                ahead=(
                    0 if reuse_buffers and isinstance(chunks, ReadableStream) else DECRYPT_AHEAD
                ),
            )
        )

    get = open

    def stat(self, object_key: str) -> StoredObject:
        """Describe a stored object from its key record, without touching the object store."""
        return StoredObject.from_record(self._record(object_key))

    def exists(self, object_key: str) -> bool:
        """Tell whether a readable (stored and not shredded) object exists under the key."""
        record = self.keyring.keystore.get_data_key(validate_key(object_key))
        return record is not None and not record.is_shredded

    def shred(self, object_key: str) -> bool:
        """Destroy the object's data key so no copy of it can be read; True if it did now."""
        validate_key(object_key)
        return self.keyring.keystore.shred_data_key(object_key, datetime.now(UTC))

    def delete(self, object_key: str) -> None:
        """Shred the object, then remove its ciphertext; deleting twice is not an error."""
        # Shredding first: if removing the ciphertext fails, the content is already gone.
        self.shred(object_key)
        self.inner.delete(object_key)

    def orphans(self, prefix: str = "") -> Iterator[str]:
        """Yield keys of stored ciphertexts that no live data key can read (for a cleanup job).

        A put in progress also has its ciphertext stored before its key: a job should delete
        only keys it found orphaned on two runs some time apart.
        """
        keystore = self.keyring.keystore
        for object_key in self.inner.list(prefix):
            record = keystore.get_data_key(object_key)
            if record is None or record.is_shredded:
                yield object_key

    def _record(self, object_key: str) -> DataKeyRecord:
        record = self.keyring.keystore.get_data_key(validate_key(object_key))
        if record is None:
            raise ObjectNotFound("no such object")
        if record.is_shredded:
            raise ObjectShredded("the object was shredded")
        return record
