"""The keyring: a master key wraps one versioned key per département, which wraps data keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.base import validate_key
from storage.errors import (
    IntegrityError,
    InvalidConfiguration,
    KekVersionExists,
    KeyringError,
    ObjectShredded,
    UnknownDepartement,
    WrongMasterKey,
)
from storage.keystore import DataKeyRecord, KekRecord, KeyStore, Rewrapped, RewrappedKek

KEY_SIZE = 32
_NONCE_SIZE = 12
# First byte of every wrapped key, so that a later scheme can coexist with this one.
_WRAP_SCHEME = b"\x01"
_KEK_CONTEXT = b"filr-storage/kek/v1"
_DEK_CONTEXT = b"filr-storage/dek/v1"

# Département codes: "01".."95", "2A", "2B", overseas "971".."976", and room for collectivities
# with département powers such as "69M" (Métropole de Lyon). The portal owns the real list.
_DEPARTEMENT_RE = re.compile(r"[0-9][0-9AB][0-9A-Z]?")


def validate_departement(departement: str) -> str:
    """Return `departement` if it looks like a département code, else raise KeyringError."""
    if not isinstance(departement, str) or _DEPARTEMENT_RE.fullmatch(departement) is None:
        raise KeyringError("malformed département code")
    return departement


def _now() -> datetime:
    return datetime.now(UTC)


def _wrap(key: AESGCM, secret: bytes, context: bytes) -> bytes:
    """Encrypt a key with AES-256-GCM under a fresh random nonce, bound to `context`."""
    nonce = os.urandom(_NONCE_SIZE)
    return _WRAP_SCHEME + nonce + key.encrypt(nonce, secret, context)


def _unwrap(key: AESGCM, wrapped: bytes, context: bytes) -> bytes:
    """Decrypt a key wrapped by `_wrap`; raise IntegrityError if anything was altered."""
    if len(wrapped) != 1 + _NONCE_SIZE + KEY_SIZE + 16 or wrapped[:1] != _WRAP_SCHEME:
        raise IntegrityError("malformed wrapped key")
    nonce = wrapped[1 : 1 + _NONCE_SIZE]
    try:
        return key.decrypt(nonce, wrapped[1 + _NONCE_SIZE :], context)
    except InvalidTag:
        raise IntegrityError("wrapped key failed authentication") from None


def _kek_context(departement: str, version: int) -> bytes:
    dep = departement.encode("ascii")
    return _KEK_CONTEXT + struct.pack(">B", len(dep)) + dep + struct.pack(">I", version)


def _dek_context(object_key: str, departement: str, kek_version: int) -> bytes:
    # Binding the object key and département means a wrapped data key copied onto another
    # object's row, or moved to another département, no longer unwraps.
    key = object_key.encode("ascii")
    dep = departement.encode("ascii")
    return (
        _DEK_CONTEXT
        + struct.pack(">H", len(key))
        + key
        + struct.pack(">B", len(dep))
        + dep
        + struct.pack(">I", kek_version)
    )


class MasterKey:
    """The 256-bit key that wraps département keys; it never enters a database or a bucket.

    During a master key rotation it also carries the `previous` keys: they only unwrap the
    département keys that the rotation job has not re-wrapped yet; new ones use this key.
    """

    __slots__ = ("_aead", "key_id", "previous")

    def __init__(self, key: bytes, *, previous: Iterable[MasterKey] = ()) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise InvalidConfiguration("the master key must be 32 bytes")
        self._aead = AESGCM(key)
        # A public fingerprint stored beside each wrapped département key, so that starting with
        # the wrong master key fails with a clear error instead of "integrity error" everywhere.
        # It is also the master key's version: rows name the key that wrapped them.
        self.key_id = hmac.new(key, b"filr-storage/master-key-id", hashlib.sha256).hexdigest()[:16]
        self.previous: tuple[MasterKey, ...] = tuple(
            old for old in previous if old.key_id != self.key_id
        )

    def __repr__(self) -> str:
        previous = [old.key_id for old in self.previous]
        return f"MasterKey(key_id={self.key_id!r}, previous={previous!r})"

    @classmethod
    def generate(cls) -> MasterKey:
        """Return a new random master key."""
        return cls(secrets.token_bytes(KEY_SIZE))

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        """Parse master keys written as base64 (what `openssl rand -base64 32` prints).

        The first key is the current one; any others (one a line, or separated by commas or
        spaces; lines starting with # are comments) are previous keys, accepted for reading
        until the master key rotation has re-wrapped every département key.
        """
        words = [
            word
            for line in text.splitlines()
            if not line.lstrip().startswith("#")
            for word in line.replace(",", " ").split()
        ]
        if not words:
            raise InvalidConfiguration("the master key is empty")
        keys = []
        for word in words:
            try:
                keys.append(base64.b64decode(word, validate=True))
            except (binascii.Error, ValueError):
                raise InvalidConfiguration("the master key is not valid base64") from None
        return cls(keys[0], previous=[cls(key) for key in keys[1:]])

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MasterKey:
        """Read the master key (and any previous ones) from a secret file, in base64."""
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidConfiguration("cannot read the master key file") from e
        return cls.from_text(text)

    @classmethod
    def from_env(cls, variable: str = "FILR_MASTER_KEY") -> MasterKey:
        """Read the master key (and any previous ones) from an environment variable."""
        text = os.environ.get(variable)
        if not text:
            raise InvalidConfiguration(f"environment variable {variable} is not set")
        return cls.from_text(text)

    def for_key_id(self, key_id: str) -> MasterKey | None:
        """Return this key or the previous one whose fingerprint is `key_id`, or None."""
        for key in (self, *self.previous):
            if hmac.compare_digest(key.key_id, key_id):
                return key
        return None

    def wrap(self, departement: str, version: int, kek: bytes) -> bytes:
        """Wrap a département key."""
        return _wrap(self._aead, kek, _kek_context(departement, version))

    def unwrap(self, departement: str, version: int, wrapped: bytes) -> bytes:
        """Unwrap a département key; raise IntegrityError if it was altered or moved."""
        return _unwrap(self._aead, wrapped, _kek_context(departement, version))


def generate_master_key_file(path: str | os.PathLike[str]) -> bool:
    """Create a master key file readable by its owner only, unless it exists; True if created."""
    target = Path(path)
    if target.exists():
        return False
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = base64.b64encode(secrets.token_bytes(KEY_SIZE)) + b"\n"
    temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        # link() fails if the name exists, so two servers starting together agree on one key,
        # and nobody ever reads a half-written file.
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
    finally:
        temp.unlink()
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True


@dataclass(frozen=True, slots=True)
class NewDataKey:
    """A fresh data key, and the same key wrapped for its keystore row."""

    key: bytes
    departement: str
    kek_version: int
    wrapped_key: bytes


@dataclass(frozen=True, slots=True)
class RewrapReport:
    """What one `Keyring.rewrap` run did."""

    departement: str
    version: int
    rewrapped: int
    failed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MasterRewrapReport:
    """What one `Keyring.rewrap_master` run did."""

    master_key_id: str
    rewrapped: int
    # (département, version) of keys that no configured master key could unwrap.
    failed: tuple[tuple[str, int], ...]


class Keyring:
    """Département keys (versioned, wrapped by the master key) and the data keys they wrap."""

    def __init__(self, master_key: MasterKey, keystore: KeyStore) -> None:
        self.keystore = keystore
        self._master_key = master_key
        # Unwrapped département keys, by (département, version): immutable once created.
        self._keks: dict[tuple[str, int], AESGCM] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Keyring({self._master_key!r}, {self.keystore!r})"

    def ensure(self, departement: str) -> int:
        """Create the département's first key if it has none; return its current version."""
        validate_departement(departement)
        versions = self.keystore.kek_versions(departement)
        if versions:
            return versions[-1]
        return self._add_version(departement, 1)

    def rotate(self, departement: str) -> int:
        """Add a new key version for the département, used by new objects; return it."""
        return self._add_version(departement, self.current_version(departement) + 1)

    def _add_version(self, departement: str, version: int) -> int:
        kek = secrets.token_bytes(KEY_SIZE)
        record = KekRecord(
            departement=departement,
            version=version,
            wrapped_key=self._master_key.wrap(departement, version, kek),
            master_key_id=self._master_key.key_id,
            created_at=_now(),
        )
        try:
            self.keystore.add_kek(record)
        except KekVersionExists:
            # Another server created or rotated at the same moment: its version serves as well.
            return self.current_version(departement)
        return version

    @property
    def master_key_id(self) -> str:
        """The fingerprint of the current master key, which wraps new département keys."""
        return self._master_key.key_id

    @property
    def previous_master_key_ids(self) -> tuple[str, ...]:
        """Fingerprints of the previous master keys, still accepted to unwrap département keys."""
        return tuple(key.key_id for key in self._master_key.previous)

    def current_version(self, departement: str) -> int:
        """Return the newest key version of the département."""
        validate_departement(departement)
        versions = self.keystore.kek_versions(departement)
        if not versions:
            raise UnknownDepartement("no key for this département yet")
        return versions[-1]

    def versions(self, departement: str) -> list[int]:
        """Return the key versions of the département, oldest first."""
        validate_departement(departement)
        return [*self.keystore.kek_versions(departement)]

    def departements(self) -> list[str]:
        """Return the départements that have a key."""
        return [*self.keystore.departements()]

    def _kek(self, departement: str, version: int) -> AESGCM:
        with self._lock:
            cached = self._keks.get((departement, version))
        if cached is not None:
            return cached
        record = self.keystore.get_kek(departement, version)
        if record is None:
            raise UnknownDepartement("no such département key version")
        master_key = self._master_key.for_key_id(record.master_key_id)
        if master_key is None:
            raise WrongMasterKey("the département keys were wrapped by another master key")
        aead = AESGCM(master_key.unwrap(departement, version, record.wrapped_key))
        with self._lock:
            self._keks[departement, version] = aead
        return aead

    def new_data_key(self, object_key: str, departement: str) -> NewDataKey:
        """Return a fresh 256-bit data key for an object, wrapped by the current département key."""
        validate_key(object_key)
        version = self.current_version(departement)
        key = AESGCM.generate_key(bit_length=256)
        wrapped = _wrap(
            self._kek(departement, version), key, _dek_context(object_key, departement, version)
        )
        return NewDataKey(
            key=key, departement=departement, kek_version=version, wrapped_key=wrapped
        )

    def unwrap_data_key(self, record: DataKeyRecord) -> bytes:
        """Return the data key of a record; raise ObjectShredded or IntegrityError."""
        if record.wrapped_key is None:
            raise ObjectShredded("the object was shredded")
        return _unwrap(
            self._kek(record.departement, record.kek_version),
            record.wrapped_key,
            _dek_context(record.object_key, record.departement, record.kek_version),
        )

    def rewrap(self, departement: str, *, batch_size: int = 500) -> RewrapReport:
        """Re-wrap every data key of older versions under the current one; safe to rerun."""
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        version = self.current_version(departement)
        target = self._kek(departement, version)
        rewrapped = 0
        failed: list[str] = []
        after = ""
        while True:
            # Keyset pagination: every batch is its own transaction, so an interrupted run
            # keeps what it did and the next run starts with what is left.
            batch = self.keystore.data_keys_to_rewrap(departement, version, after, batch_size)
            if not batch:
                break
            updates = []
            for record in batch:
                try:
                    key = self.unwrap_data_key(record)
                except (IntegrityError, ObjectShredded):
                    failed.append(record.object_key)
                    continue
                context = _dek_context(record.object_key, departement, version)
                updates.append(
                    Rewrapped(
                        object_key=record.object_key,
                        old_version=record.kek_version,
                        new_version=version,
                        wrapped_key=_wrap(target, key, context),
                    )
                )
            rewrapped += self.keystore.save_rewrapped(updates) if updates else 0
            after = batch[-1].object_key
        return RewrapReport(
            departement=departement, version=version, rewrapped=rewrapped, failed=tuple(failed)
        )

    def rewrap_master(self, *, batch_size: int = 100) -> MasterRewrapReport:
        """Re-wrap every département key still under a previous master key; safe to rerun.

        Each batch is its own transaction and each update a compare-and-set on the master key
        id, so the job can be interrupted, rerun or run on two servers at once. The département
        keys themselves do not change, so data keys and content are not touched.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        current = self._master_key
        rewrapped = 0
        failed: list[tuple[str, int]] = []
        after: tuple[str, int] | None = None
        while True:
            batch = self.keystore.keks_to_rewrap(current.key_id, after, batch_size)
            if not batch:
                break
            updates = []
            for record in batch:
                position = (record.departement, record.version)
                old = current.for_key_id(record.master_key_id)
                if old is None:
                    failed.append(position)  # its master key is not configured: left as it is
                    continue
                try:
                    kek = old.unwrap(record.departement, record.version, record.wrapped_key)
                except IntegrityError:
                    failed.append(position)  # altered row: investigate
                    continue
                updates.append(
                    RewrappedKek(
                        departement=record.departement,
                        version=record.version,
                        old_master_key_id=record.master_key_id,
                        master_key_id=current.key_id,
                        wrapped_key=current.wrap(record.departement, record.version, kek),
                    )
                )
            rewrapped += self.keystore.save_rewrapped_keks(updates) if updates else 0
            after = (batch[-1].departement, batch[-1].version)
        return MasterRewrapReport(
            master_key_id=current.key_id, rewrapped=rewrapped, failed=tuple(failed)
        )
