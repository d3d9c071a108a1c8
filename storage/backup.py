"""The backup site's format: the backup key, sealed manifests, the encrypted dump, object copies.

Framework-free like the rest of `storage/`: the portal makes the database dump and passes its
bytes in; this module encrypts and authenticates it, copies ciphertexts between two object
stores, and reads everything back, refusing whatever does not authenticate.

Layout under the backup site's root (a bucket and prefix, or a directory)::

    objects/<object key>          ciphertexts of the production store, copied as they are
    backups/<id>/database         the database dump, encrypted (storage.stream format)
    backups/<id>/manifest         the manifest, sealed (AES-256-GCM) under the backup key

Objects are already ciphertext (envelope encryption, their data keys live in the dump): they
are copied unchanged, once each (a production object key is never written twice). The dump is
encrypted with a fresh data key per backup in the same segmented AES-256-GCM format as the
objects (`storage.stream`), bound to its place `backups/<id>/database`. The manifest names
every object with the size and SHA-256 of its ciphertext, and the dump with its sizes, digests
and data key; it is sealed with the backup key (never the master key), bound to its backup id,
and written last: a backup without a manifest is an unfinished one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.base import Chunk, ObjectStore
from storage.errors import IntegrityError, InvalidConfiguration, ObjectCorrupted, StorageError
from storage.keyring import MasterKey
from storage.stream import Encryptor, decrypt

KEY_SIZE = 32
_NONCE_SIZE = 12
MANIFEST_MAGIC = b"FILR/BKM"
MANIFEST_FORMAT = 1
_KEY_ID_SIZE = 16
OBJECTS = "objects/"
BACKUPS = "backups/"
# Backup ids sort as their times: 20261207T013000123456Z.
_BACKUP_ID_RE = re.compile(r"[0-9]{8}T[0-9]{12}Z")
_DUMP_CONTEXT = "filr-backup"  # the "département" slot of the dump's associated data


class BackupTampered(IntegrityError):
    """A backup's manifest, dump or object does not authenticate, or does not match.

    Its message is French: operators read it when `filr backup restore` refuses a backup.
    """


def new_backup_id(now: datetime) -> str:
    """The id of a backup started at *now* (UTC, sortable, microseconds)."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def backup_time(backup_id: str) -> datetime:
    """The start time a backup id spells."""
    if _BACKUP_ID_RE.fullmatch(backup_id) is None:
        raise InvalidConfiguration("malformed backup id")
    return datetime.strptime(backup_id, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)


def is_backup_id(value: str) -> bool:
    """True for what `new_backup_id` could have made."""
    return _BACKUP_ID_RE.fullmatch(value) is not None


class BackupKey:
    """The 256-bit key that seals manifests (and so the dumps' data keys); not the master key.

    Like the master key it may carry `previous` keys (one a line in its file, current first):
    they open the manifests of backups made before a rotation, until retention deletes them.
    """

    __slots__ = ("_aead", "_key", "key_id", "previous")

    def __init__(self, key: bytes, *, previous: Iterable[BackupKey] = ()) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise InvalidConfiguration("the backup key must be 32 bytes")
        self._key = key
        self._aead = AESGCM(key)
        self.key_id = hmac.new(key, b"filr-backup/key-id", hashlib.sha256).hexdigest()[:16]
        self.previous = tuple(old for old in previous if old.key_id != self.key_id)

    def __repr__(self) -> str:
        return f"BackupKey(key_id={self.key_id!r})"

    def is_master_key(self, master: MasterKey) -> bool:
        """True when this key, or a previous one, is the master key or one of its previous."""
        return any(
            master.for_key_id(MasterKey(k._key).key_id) is not None for k in (self, *self.previous)
        )

    @classmethod
    def from_text(cls, text: str) -> BackupKey:
        """Parse base64 keys (what `openssl rand -base64 32` prints), current first."""
        words = [
            word
            for line in text.splitlines()
            if not line.lstrip().startswith("#")
            for word in line.replace(",", " ").split()
        ]
        if not words:
            raise InvalidConfiguration("the backup key is empty")
        try:
            keys = [base64.b64decode(word, validate=True) for word in words]
        except (binascii.Error, ValueError):
            raise InvalidConfiguration("the backup key is not valid base64") from None
        return cls(keys[0], previous=[cls(key) for key in keys[1:]])

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BackupKey:
        """Read the backup key (and any previous ones) from a secret file."""
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidConfiguration("cannot read the backup key file") from e
        return cls.from_text(text)

    def seal(self, backup_id: str, plaintext: bytes) -> bytes:
        """Encrypt and authenticate a manifest, bound to its backup id."""
        header = (
            MANIFEST_MAGIC + bytes([MANIFEST_FORMAT]) + self.key_id.encode("ascii")
        )  # 8 + 1 + 16 bytes
        nonce = os.urandom(_NONCE_SIZE)
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + backup_id.encode())

    def open(self, backup_id: str, sealed: bytes) -> bytes:
        """The manifest sealed by `seal` for *backup_id*; BackupTampered if anything differs."""
        size = len(MANIFEST_MAGIC) + 1 + _KEY_ID_SIZE
        header, rest = sealed[:size], sealed[size:]
        if len(rest) < _NONCE_SIZE + 16 or not header.startswith(MANIFEST_MAGIC):
            raise BackupTampered("manifeste malformé")
        if header[len(MANIFEST_MAGIC)] != MANIFEST_FORMAT:
            raise BackupTampered("manifeste d'un format inconnu")
        key_id = header[-_KEY_ID_SIZE:].decode("ascii", "replace")
        key = next(
            (k for k in (self, *self.previous) if hmac.compare_digest(k.key_id, key_id)), None
        )
        if key is None:
            raise BackupTampered("manifeste scellé par une autre clé de sauvegarde")
        try:
            return key._aead.decrypt(
                rest[:_NONCE_SIZE], rest[_NONCE_SIZE:], header + backup_id.encode()
            )
        except InvalidTag:
            raise BackupTampered("le manifeste ne s'authentifie pas (altéré)") from None


def generate_backup_key_file(path: str | os.PathLike[str]) -> bool:
    """Create a backup key file (0600) unless it exists; True if created (embedded default)."""
    target = Path(path)
    if target.exists():
        return False
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(secrets.token_bytes(KEY_SIZE)) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return True


@dataclass(frozen=True)
class StoredCopy:
    """Size and SHA-256 of a ciphertext as stored on the backup site."""

    size: int
    sha256: str


@dataclass(frozen=True)
class DumpRecord:
    """The database dump of a backup: where, how big, its digests, its data key."""

    dialect: str
    size: int
    sha256: str
    stored_size: int
    stored_sha256: str
    data_key: bytes = field(repr=False)
    dumped_at: datetime


@dataclass(frozen=True)
class Manifest:
    """Everything a restore needs to check a backup before using it."""

    backup_id: str
    created_at: datetime
    dump: DumpRecord
    objects: Mapping[str, StoredCopy]
    source: str = ""  # the production store's description (no credentials)

    def to_json(self) -> bytes:
        """The manifest's plaintext."""
        return json.dumps(
            {
                "format": MANIFEST_FORMAT,
                "backup_id": self.backup_id,
                "created_at": self.created_at.isoformat(),
                "source": self.source,
                "database": {
                    "dialect": self.dump.dialect,
                    "size": self.dump.size,
                    "sha256": self.dump.sha256,
                    "stored_size": self.dump.stored_size,
                    "stored_sha256": self.dump.stored_sha256,
                    "data_key": base64.b64encode(self.dump.data_key).decode(),
                    "dumped_at": self.dump.dumped_at.isoformat(),
                },
                "objects": {k: [v.size, v.sha256] for k, v in sorted(self.objects.items())},
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, backup_id: str, data: bytes) -> Manifest:
        """Parse an authenticated manifest's plaintext."""
        try:
            raw: dict[str, Any] = json.loads(data)
            if raw["format"] != MANIFEST_FORMAT or raw["backup_id"] != backup_id:
                raise BackupTampered("manifeste d'une autre sauvegarde")
            db = raw["database"]
            return cls(
                backup_id=backup_id,
                created_at=datetime.fromisoformat(raw["created_at"]),
                source=str(raw.get("source", "")),
                dump=DumpRecord(
                    dialect=str(db["dialect"]),
                    size=int(db["size"]),
                    sha256=str(db["sha256"]),
                    stored_size=int(db["stored_size"]),
                    stored_sha256=str(db["stored_sha256"]),
                    data_key=base64.b64decode(db["data_key"]),
                    dumped_at=datetime.fromisoformat(db["dumped_at"]),
                ),
                objects={
                    str(k): StoredCopy(int(v[0]), str(v[1])) for k, v in raw["objects"].items()
                },
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise BackupTampered("manifeste illisible") from e

    @property
    def total_bytes(self) -> int:
        """Bytes of objects the backup names."""
        return sum(copy.size for copy in self.objects.values())


def manifest_key(backup_id: str) -> str:
    """Where a backup's manifest lives on the site."""
    return f"{BACKUPS}{backup_id}/manifest"


def dump_key(backup_id: str) -> str:
    """Where a backup's encrypted dump lives on the site."""
    return f"{BACKUPS}{backup_id}/database"


def _read_all(chunks: Iterator[bytes]) -> bytes:
    try:
        return b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def write_manifest(site: ObjectStore, key: BackupKey, manifest: Manifest) -> None:
    """Seal and store *manifest*: the step that makes a backup complete."""
    site.put(manifest_key(manifest.backup_id), [key.seal(manifest.backup_id, manifest.to_json())])


def read_manifest(site: ObjectStore, key: BackupKey, backup_id: str) -> Manifest:
    """The authenticated manifest of *backup_id*; BackupTampered if it does not authenticate."""
    sealed = _read_all(site.get(manifest_key(backup_id)))
    return Manifest.from_json(backup_id, key.open(backup_id, sealed))


def list_backups(site: ObjectStore) -> list[str]:
    """Ids of the complete backups (those with a manifest), oldest first."""
    ids = set()
    for name in site.list(BACKUPS):
        backup_id, _, rest = name[len(BACKUPS) :].partition("/")
        if rest == "manifest" and is_backup_id(backup_id):
            ids.add(backup_id)
    return sorted(ids)


def list_backup_dirs(site: ObjectStore) -> dict[str, list[str]]:
    """Every key under `backups/`, by backup id (complete or not)."""
    found: dict[str, list[str]] = {}
    for name in site.list(BACKUPS):
        backup_id, _, _ = name[len(BACKUPS) :].partition("/")
        found.setdefault(backup_id, []).append(name)
    return found


class _Hashing:
    """Pass chunks through, counting and hashing them."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._chunks = chunks
        self._hash = hashlib.sha256()
        self.size = 0
        self.is_finished = False

    def __iter__(self) -> Iterator[Chunk]:
        for chunk in self._chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk
        self.is_finished = True

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def write_dump(
    site: ObjectStore, backup_id: str, dialect: str, chunks: Iterable[bytes], dumped_at: datetime
) -> DumpRecord:
    """Encrypt the dump's plaintext *chunks* with a fresh data key and store it on the site."""
    data_key = AESGCM.generate_key(bit_length=256)
    encryptor = Encryptor(
        data_key, object_key=dump_key(backup_id), departement=_DUMP_CONTEXT, kek_version=0
    )
    ciphertext = encryptor.encrypt(chunks)
    stored = _Hashing(ciphertext)
    try:
        site.put(dump_key(backup_id), stored)
    finally:
        ciphertext.close()
    if not encryptor.is_finished or not stored.is_finished:
        site.delete(dump_key(backup_id))
        raise StorageError("the backup site stopped reading the dump before its end")
    return DumpRecord(
        dialect=dialect,
        size=encryptor.size,
        sha256=encryptor.sha256,
        stored_size=stored.size,
        stored_sha256=stored.sha256,
        data_key=data_key,
        dumped_at=dumped_at,
    )


def fetch_dump(site: ObjectStore, manifest: Manifest, into: Path) -> None:
    """Copy the encrypted dump to the file *into* (0600), checking it against the manifest.

    The whole ciphertext is checked before any of it is decrypted: a restore never starts on
    a dump that would fail half-way.
    """
    fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    digest = hashlib.sha256()
    size = 0
    chunks = site.get(dump_key(manifest.backup_id))
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                f.write(chunk)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if size != manifest.dump.stored_size or not hmac.compare_digest(
        digest.hexdigest(), manifest.dump.stored_sha256
    ):
        raise BackupTampered("la sauvegarde de la base ne correspond pas au manifeste (altérée)")


def _file_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def decrypt_dump(manifest: Manifest, encrypted: Path) -> Iterator[bytes]:
    """The dump's plaintext from its checked ciphertext file, one authenticated segment a time."""
    stream = decrypt(
        _file_chunks(encrypted),
        manifest.dump.data_key,
        object_key=dump_key(manifest.backup_id),
        departement=_DUMP_CONTEXT,
        max_kek_version=0,
        sha256=manifest.dump.sha256,
        ahead=0,
    )
    try:
        for chunk in stream:
            if chunk:
                yield chunk
    except ObjectCorrupted as e:
        raise BackupTampered("la sauvegarde de la base ne s'authentifie pas (altérée)") from e
    finally:
        stream.close()


@dataclass
class CopyReport:
    """What one `copy_objects` run did."""

    copied: dict[str, StoredCopy] = field(default_factory=dict)
    bytes_copied: int = 0


def copy_objects(
    source: ObjectStore,
    target: ObjectStore,
    pairs: Iterable[tuple[str, str]],
    *,
    workers: int = 8,
    expected: Mapping[str, StoredCopy] | None = None,
    on_copied: Callable[[str, StoredCopy], None] | None = None,
    stop: threading.Event | None = None,
) -> CopyReport:
    """Copy each (source key, target key) as it is, hashing it on the way; in *workers* threads.

    With *expected* (by source key), a copy whose size or digest differs is deleted from the
    target and the run fails with BackupTampered. The first error stops the run.
    """
    report = CopyReport()
    lock = threading.Lock()
    stop = stop or threading.Event()

    def copy_one(source_key: str, target_key: str) -> None:
        if stop.is_set():
            return
        chunks = source.get(source_key)
        hashing = _Hashing(chunks)
        try:
            target.put(target_key, hashing)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        copy = StoredCopy(hashing.size, hashing.sha256)
        if expected is not None:
            want = expected[source_key]
            if want.size != copy.size or not hmac.compare_digest(want.sha256, copy.sha256):
                target.delete(target_key)
                raise BackupTampered("un objet sauvegardé ne correspond pas au manifeste (altéré)")
        with lock:
            report.copied[source_key] = copy
            report.bytes_copied += copy.size
        if on_copied is not None:
            on_copied(source_key, copy)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="backup-copy") as pool:
        pending: set[Future[None]] = set()
        try:
            for source_key, target_key in pairs:
                if len(pending) >= 4 * workers:
                    # FIRST_COMPLETED, not FIRST_EXCEPTION: the latter waits for every pending
                    # copy when none fails, and the pool would drain between batches.
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                pending.add(pool.submit(copy_one, source_key, target_key))
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()
        except BaseException:
            stop.set()
            for future in pending:
                future.cancel()
            raise
    return report
