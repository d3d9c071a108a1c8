"""Persistence of wrapped keys: the `KeyStore` protocol, its records and the in-memory twin."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from storage.errors import KekVersionExists, KeyringError, ObjectExists


@dataclass(frozen=True, slots=True)
class KekRecord:
    """A département's key-encryption key, wrapped by the master key."""

    departement: str
    version: int
    wrapped_key: bytes
    master_key_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DataKeyRecord:
    """An object's data key wrapped by its département's key, with the plaintext's digest.

    A shredded record keeps its key, département, size and dates but has lost `wrapped_key` and
    `sha256`, so the object can never be decrypted again and keys are never reused.
    """

    object_key: str
    departement: str
    kek_version: int
    wrapped_key: bytes | None
    sha256: str | None
    size: int
    created_at: datetime
    shredded_at: datetime | None = None

    @property
    def is_shredded(self) -> bool:
        """Whether the data key has been destroyed."""
        return self.shredded_at is not None


@dataclass(frozen=True, slots=True)
class Rewrapped:
    """A data key re-wrapped under a newer département key version, to be saved if unchanged."""

    object_key: str
    old_version: int
    new_version: int
    wrapped_key: bytes


@dataclass(frozen=True, slots=True)
class RewrappedKek:
    """A département key re-wrapped under a new master key, to be saved if still unchanged."""

    departement: str
    version: int
    old_master_key_id: str
    master_key_id: str
    wrapped_key: bytes


@runtime_checkable
class KeyStore(Protocol):
    """Where wrapped département keys and wrapped data keys live (never the object store)."""

    def add_kek(self, record: KekRecord) -> None:
        """Save a new département key; raise KekVersionExists if that version exists."""
        ...

    def get_kek(self, departement: str, version: int) -> KekRecord | None:
        """Return one version of a département's key, or None."""
        ...

    def kek_versions(self, departement: str) -> Sequence[int]:
        """Return the versions of a département's key, oldest first."""
        ...

    def departements(self) -> Sequence[str]:
        """Return the départements that have a key, sorted."""
        ...

    def add_data_key(self, record: DataKeyRecord) -> None:
        """Save an object's data key; raise ObjectExists if the object key was ever used."""
        ...

    def get_data_key(self, object_key: str) -> DataKeyRecord | None:
        """Return the data key record of an object (possibly shredded), or None."""
        ...

    def shred_data_key(self, object_key: str, shredded_at: datetime) -> bool:
        """Destroy an object's wrapped data key; return False if none was left to destroy."""
        ...

    def data_keys_to_rewrap(
        self, departement: str, below_version: int, after: str, limit: int
    ) -> Sequence[DataKeyRecord]:
        """Return live data keys of `departement` wrapped below `below_version`, by object key."""
        ...

    def save_rewrapped(self, rewrapped: Sequence[Rewrapped]) -> int:
        """Save re-wrapped keys whose version is still `old_version`; return how many were."""
        ...

    def keks(self) -> Sequence[KekRecord]:
        """Return every département key version, by département then version."""
        ...

    def keks_to_rewrap(
        self, master_key_id: str, after: tuple[str, int] | None, limit: int
    ) -> Sequence[KekRecord]:
        """Return département keys not wrapped by `master_key_id`, after `after`, in order."""
        ...

    def save_rewrapped_keks(self, rewrapped: Sequence[RewrappedKek]) -> int:
        """Save re-wrapped département keys still under their old master key; return how many."""
        ...

    def data_key_counts(self) -> Mapping[tuple[str, int], int]:
        """Return how many live data keys each (département, version) key wraps."""
        ...


class MemoryKeyStore:
    """A `KeyStore` kept in dicts, for tests and throwaway setups."""

    def __init__(self) -> None:
        self._keks: dict[tuple[str, int], KekRecord] = {}
        self._data_keys: dict[str, DataKeyRecord] = {}
        self._lock = threading.Lock()

    def add_kek(self, record: KekRecord) -> None:
        """Save a new département key; raise KekVersionExists if that version exists."""
        with self._lock:
            if (record.departement, record.version) in self._keks:
                raise KekVersionExists("this département key version already exists")
            self._keks[record.departement, record.version] = record

    def get_kek(self, departement: str, version: int) -> KekRecord | None:
        """Return one version of a département's key, or None."""
        with self._lock:
            return self._keks.get((departement, version))

    def kek_versions(self, departement: str) -> Sequence[int]:
        """Return the versions of a département's key, oldest first."""
        with self._lock:
            return sorted(version for dep, version in self._keks if dep == departement)

    def departements(self) -> Sequence[str]:
        """Return the départements that have a key, sorted."""
        with self._lock:
            return sorted({dep for dep, _ in self._keks})

    def add_data_key(self, record: DataKeyRecord) -> None:
        """Save an object's data key; raise ObjectExists if the object key was ever used."""
        with self._lock:
            if record.object_key in self._data_keys:
                raise ObjectExists("an object was already stored under this key")
            if (record.departement, record.kek_version) not in self._keks:
                # The SQL store refuses this through its foreign key; the twin must agree.
                raise KeyringError("no such département key version")
            self._data_keys[record.object_key] = record

    def get_data_key(self, object_key: str) -> DataKeyRecord | None:
        """Return the data key record of an object (possibly shredded), or None."""
        with self._lock:
            return self._data_keys.get(object_key)

    def shred_data_key(self, object_key: str, shredded_at: datetime) -> bool:
        """Destroy an object's wrapped data key; return False if none was left to destroy."""
        with self._lock:
            record = self._data_keys.get(object_key)
            if record is None or record.is_shredded:
                return False
            self._data_keys[object_key] = dataclasses.replace(
                record, wrapped_key=None, sha256=None, shredded_at=shredded_at
            )
            return True

    def data_keys_to_rewrap(
        self, departement: str, below_version: int, after: str, limit: int
    ) -> Sequence[DataKeyRecord]:
        """Return live data keys of `departement` wrapped below `below_version`, by object key."""
        with self._lock:
            found = sorted(
                (
                    record
                    for record in self._data_keys.values()
                    if record.departement == departement
                    and record.kek_version < below_version
                    and not record.is_shredded
                    and record.object_key > after
                ),
                key=lambda record: record.object_key,
            )
        return found[:limit]

    def save_rewrapped(self, rewrapped: Sequence[Rewrapped]) -> int:
        """Save re-wrapped keys whose version is still `old_version`; return how many were."""
        saved = 0
        with self._lock:
            for item in rewrapped:
                record = self._data_keys.get(item.object_key)
                if record is None or record.is_shredded or record.kek_version != item.old_version:
                    continue  # shredded or re-wrapped by a concurrent job meanwhile
                self._data_keys[item.object_key] = dataclasses.replace(
                    record, kek_version=item.new_version, wrapped_key=item.wrapped_key
                )
                saved += 1
        return saved

    def keks(self) -> Sequence[KekRecord]:
        """Return every département key version, by département then version."""
        with self._lock:
            return [self._keks[key] for key in sorted(self._keks)]

    def keks_to_rewrap(
        self, master_key_id: str, after: tuple[str, int] | None, limit: int
    ) -> Sequence[KekRecord]:
        """Return département keys not wrapped by `master_key_id`, after `after`, in order."""
        with self._lock:
            found = [
                self._keks[key]
                for key in sorted(self._keks)
                if (after is None or key > after) and self._keks[key].master_key_id != master_key_id
            ]
        return found[:limit]

    def save_rewrapped_keks(self, rewrapped: Sequence[RewrappedKek]) -> int:
        """Save re-wrapped département keys still under their old master key; return how many."""
        saved = 0
        with self._lock:
            for item in rewrapped:
                record = self._keks.get((item.departement, item.version))
                if record is None or record.master_key_id != item.old_master_key_id:
                    continue  # re-wrapped by a concurrent job meanwhile
                self._keks[item.departement, item.version] = dataclasses.replace(
                    record, wrapped_key=item.wrapped_key, master_key_id=item.master_key_id
                )
                saved += 1
        return saved

    def data_key_counts(self) -> Mapping[tuple[str, int], int]:
        """Return how many live data keys each (département, version) key wraps."""
        counts: dict[tuple[str, int], int] = {}
        with self._lock:
            for record in self._data_keys.values():
                if not record.is_shredded:
                    key = (record.departement, record.kek_version)
                    counts[key] = counts.get(key, 0) + 1
        return counts
