"""`SqlKeyStore`: wrapped keys in two SQL tables, on SQLite or PostgreSQL (SQLAlchemy 2 Core).

The tables live on their own `metadata` so that the application's Alembic environment can
include them (`target_metadata=[app_metadata, storage.sql.metadata]`) without importing models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from storage.errors import (
    KekVersionExists,
    KeyringError,
    ObjectExists,
    StorageError,
    StorageUnavailable,
)
from storage.keystore import DataKeyRecord, KekRecord, Rewrapped, RewrappedKek

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

storage_kek = Table(
    "storage_kek",
    metadata,
    Column("departement", String(3), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    # b"\x01" | 12-byte nonce | AES-256-GCM(master key, KEK) with its tag: 61 bytes.
    Column("wrapped_key", LargeBinary, nullable=False),
    Column("master_key_id", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("version >= 1", name="version_positive"),
)

storage_data_key = Table(
    "storage_data_key",
    metadata,
    Column("object_key", String(200), primary_key=True),
    Column("departement", String(3), nullable=False),
    Column("kek_version", Integer, nullable=False),
    # b"\x01" | 12-byte nonce | AES-256-GCM(KEK, data key) with its tag; NULL once shredded.
    Column("wrapped_key", LargeBinary, nullable=True),
    # Hex SHA-256 of the plaintext; NULL once shredded (it could confirm a guessed content).
    Column("sha256", String(64), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("shredded_at", DateTime(timezone=True), nullable=True),
    # A département key still wrapping data keys cannot be deleted.
    ForeignKeyConstraint(
        ["departement", "kek_version"], ["storage_kek.departement", "storage_kek.version"]
    ),
    CheckConstraint("size >= 0", name="size_not_negative"),
    CheckConstraint(
        "(shredded_at IS NULL AND wrapped_key IS NOT NULL AND sha256 IS NOT NULL)"
        " OR (shredded_at IS NOT NULL AND wrapped_key IS NULL AND sha256 IS NULL)",
        name="live_or_shredded",
    ),
    # Serves the re-wrap job (and the foreign key) after a rotation.
    Index("ix_storage_data_key_departement_kek_version", "departement", "kek_version"),
)


def _utc(value: datetime) -> datetime:
    # SQLite gives naive datetimes back; everything we store is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _kek(row: Row[Any]) -> KekRecord:
    return KekRecord(
        departement=row.departement,
        version=row.version,
        wrapped_key=bytes(row.wrapped_key),
        master_key_id=row.master_key_id,
        created_at=_utc(row.created_at),
    )


def _data_key(row: Row[Any]) -> DataKeyRecord:
    return DataKeyRecord(
        object_key=row.object_key,
        departement=row.departement,
        kek_version=row.kek_version,
        wrapped_key=None if row.wrapped_key is None else bytes(row.wrapped_key),
        sha256=row.sha256,
        size=row.size,
        created_at=_utc(row.created_at),
        shredded_at=None if row.shredded_at is None else _utc(row.shredded_at),
    )


class _Conflict(StorageError):
    """A unique or foreign key constraint refused a write."""


def _translate(error: sa_exc.SQLAlchemyError) -> StorageError:
    if isinstance(error, sa_exc.IntegrityError):
        return _Conflict("constraint violated")
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return StorageUnavailable(f"key database unavailable ({type(error).__name__})")
    return StorageError(f"key database error ({type(error).__name__})")


class SqlKeyStore:
    """A `KeyStore` in the `storage_kek` and `storage_data_key` tables; one transaction a call."""

    def __init__(self, bind: Engine | Callable[[], Session]) -> None:
        self._bind = bind

    def __repr__(self) -> str:
        return "SqlKeyStore()"

    @contextmanager
    def _begin(self) -> Iterator[Any]:
        """Yield a Connection or Session inside a transaction committed on success."""
        try:
            if isinstance(self._bind, Engine):
                with self._bind.begin() as connection:
                    yield connection
            else:
                with self._bind() as session, session.begin():
                    yield session
        except sa_exc.SQLAlchemyError as e:
            raise _translate(e) from e

    def add_kek(self, record: KekRecord) -> None:
        """Save a new département key; raise KekVersionExists if that version exists."""
        try:
            with self._begin() as db:
                db.execute(
                    insert(storage_kek).values(
                        departement=record.departement,
                        version=record.version,
                        wrapped_key=record.wrapped_key,
                        master_key_id=record.master_key_id,
                        created_at=record.created_at,
                    )
                )
        except _Conflict as e:
            raise KekVersionExists("this département key version already exists") from e

    def get_kek(self, departement: str, version: int) -> KekRecord | None:
        """Return one version of a département's key, or None."""
        with self._begin() as db:
            row = db.execute(
                select(storage_kek).where(
                    storage_kek.c.departement == departement, storage_kek.c.version == version
                )
            ).one_or_none()
        return None if row is None else _kek(row)

    def kek_versions(self, departement: str) -> Sequence[int]:
        """Return the versions of a département's key, oldest first."""
        with self._begin() as db:
            return list(
                db.execute(
                    select(storage_kek.c.version)
                    .where(storage_kek.c.departement == departement)
                    .order_by(storage_kek.c.version)
                ).scalars()
            )

    def departements(self) -> Sequence[str]:
        """Return the départements that have a key, sorted."""
        with self._begin() as db:
            return list(
                db.execute(
                    select(storage_kek.c.departement).distinct().order_by(storage_kek.c.departement)
                ).scalars()
            )

    def add_data_key(self, record: DataKeyRecord) -> None:
        """Save an object's data key; raise ObjectExists if the object key was ever used."""
        try:
            with self._begin() as db:
                db.execute(
                    insert(storage_data_key).values(
                        object_key=record.object_key,
                        departement=record.departement,
                        kek_version=record.kek_version,
                        wrapped_key=record.wrapped_key,
                        sha256=record.sha256,
                        size=record.size,
                        created_at=record.created_at,
                        shredded_at=record.shredded_at,
                    )
                )
        except _Conflict as e:
            if self.get_data_key(record.object_key) is not None:
                raise ObjectExists("an object was already stored under this key") from e
            raise KeyringError("no such département key version") from e

    def get_data_key(self, object_key: str) -> DataKeyRecord | None:
        """Return the data key record of an object (possibly shredded), or None."""
        with self._begin() as db:
            row = db.execute(
                select(storage_data_key).where(storage_data_key.c.object_key == object_key)
            ).one_or_none()
        return None if row is None else _data_key(row)

    def shred_data_key(self, object_key: str, shredded_at: datetime) -> bool:
        """Destroy an object's wrapped data key; return False if none was left to destroy."""
        with self._begin() as db:
            result = db.execute(
                update(storage_data_key)
                .where(
                    storage_data_key.c.object_key == object_key,
                    storage_data_key.c.shredded_at.is_(None),
                )
                .values(wrapped_key=None, sha256=None, shredded_at=shredded_at)
            )
            return bool(result.rowcount == 1)

    def data_keys_to_rewrap(
        self, departement: str, below_version: int, after: str, limit: int
    ) -> Sequence[DataKeyRecord]:
        """Return live data keys of `departement` wrapped below `below_version`, by object key."""
        with self._begin() as db:
            rows = db.execute(
                select(storage_data_key)
                .where(
                    storage_data_key.c.departement == departement,
                    storage_data_key.c.kek_version < below_version,
                    storage_data_key.c.shredded_at.is_(None),
                    storage_data_key.c.object_key > after,
                )
                .order_by(storage_data_key.c.object_key)
                .limit(limit)
            ).all()
        return [_data_key(row) for row in rows]

    def save_rewrapped(self, rewrapped: Sequence[Rewrapped]) -> int:
        """Save re-wrapped keys whose version is still `old_version`; return how many were."""
        saved = 0
        with self._begin() as db:
            for item in rewrapped:
                # Compare-and-set on the version: a row shredded or re-wrapped by a concurrent
                # job meanwhile is left as it is.
                result = db.execute(
                    update(storage_data_key)
                    .where(
                        and_(
                            storage_data_key.c.object_key == item.object_key,
                            storage_data_key.c.kek_version == item.old_version,
                            storage_data_key.c.shredded_at.is_(None),
                        )
                    )
                    .values(kek_version=item.new_version, wrapped_key=item.wrapped_key)
                )
                saved += result.rowcount
        return saved

    def keks(self) -> Sequence[KekRecord]:
        """Return every département key version, by département then version."""
        with self._begin() as db:
            rows = db.execute(
                select(storage_kek).order_by(storage_kek.c.departement, storage_kek.c.version)
            ).all()
        return [_kek(row) for row in rows]

    def keks_to_rewrap(
        self, master_key_id: str, after: tuple[str, int] | None, limit: int
    ) -> Sequence[KekRecord]:
        """Return département keys not wrapped by `master_key_id`, after `after`, in order."""
        query = select(storage_kek).where(storage_kek.c.master_key_id != master_key_id)
        if after is not None:
            departement, version = after
            query = query.where(
                or_(
                    storage_kek.c.departement > departement,
                    and_(
                        storage_kek.c.departement == departement,
                        storage_kek.c.version > version,
                    ),
                )
            )
        with self._begin() as db:
            rows = db.execute(
                query.order_by(storage_kek.c.departement, storage_kek.c.version).limit(limit)
            ).all()
        return [_kek(row) for row in rows]

    def save_rewrapped_keks(self, rewrapped: Sequence[RewrappedKek]) -> int:
        """Save re-wrapped département keys still under their old master key; return how many."""
        saved = 0
        with self._begin() as db:
            for item in rewrapped:
                # Compare-and-set on the master key: a row re-wrapped by a concurrent job
                # meanwhile is left as it is.
                result = db.execute(
                    update(storage_kek)
                    .where(
                        storage_kek.c.departement == item.departement,
                        storage_kek.c.version == item.version,
                        storage_kek.c.master_key_id == item.old_master_key_id,
                    )
                    .values(wrapped_key=item.wrapped_key, master_key_id=item.master_key_id)
                )
                saved += result.rowcount
        return saved

    def data_key_counts(self) -> Mapping[tuple[str, int], int]:
        """Return how many live data keys each (département, version) key wraps."""
        with self._begin() as db:
            rows = db.execute(
                select(
                    storage_data_key.c.departement,
                    storage_data_key.c.kek_version,
                    func.count(),
                )
                .where(storage_data_key.c.shredded_at.is_(None))
                .group_by(storage_data_key.c.departement, storage_data_key.c.kek_version)
            ).all()
        return {(row[0], row[1]): int(row[2]) for row in rows}
