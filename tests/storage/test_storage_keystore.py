"""The `KeyStore` contract on memory, SQLite and PostgreSQL, and the SQL tables themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from storage import (
    EncryptedStore,
    KekVersionExists,
    Keyring,
    KeyringError,
    KeyStore,
    MasterKey,
    MemoryStore,
    ObjectExists,
    ObjectShredded,
    SqlKeyStore,
)
from storage.keystore import DataKeyRecord, KekRecord, Rewrapped
from storage.sql import metadata, storage_data_key, storage_kek
from tests.storage.helpers import SEGMENT, chunked, random_bytes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def kek(departement: str = "62", version: int = 1) -> KekRecord:
    return KekRecord(departement, version, b"\x01" + bytes(60), "0123456789abcdef", NOW)


def data_key(object_key: str, version: int = 1, departement: str = "62") -> DataKeyRecord:
    return DataKeyRecord(
        object_key=object_key,
        departement=departement,
        kek_version=version,
        wrapped_key=b"\x01" + bytes(range(60)),
        sha256="ab" * 32,
        size=2**40,
        created_at=NOW,
    )


def test_kek_records_round_trip(keystore: KeyStore) -> None:
    keystore.add_kek(kek("62", 1))
    keystore.add_kek(kek("62", 2))
    keystore.add_kek(kek("2A", 1))

    assert keystore.get_kek("62", 2) == kek("62", 2)
    assert keystore.get_kek("62", 3) is None
    assert list(keystore.kek_versions("62")) == [1, 2]
    assert list(keystore.kek_versions("59")) == []
    assert list(keystore.departements()) == ["2A", "62"]


def test_kek_versions_are_unique(keystore: KeyStore) -> None:
    keystore.add_kek(kek("62", 1))

    with pytest.raises(KekVersionExists):
        keystore.add_kek(kek("62", 1))


def test_data_key_records_round_trip(keystore: KeyStore) -> None:
    keystore.add_kek(kek())
    record = data_key("deposits/a")

    keystore.add_data_key(record)

    assert keystore.get_data_key("deposits/a") == record
    assert keystore.get_data_key("deposits/b") is None


def test_data_keys_are_never_reused(keystore: KeyStore) -> None:
    keystore.add_kek(kek())
    keystore.add_data_key(data_key("deposits/a"))

    with pytest.raises(ObjectExists):
        keystore.add_data_key(data_key("deposits/a"))


def test_data_key_needs_an_existing_kek_version(keystore: KeyStore) -> None:
    keystore.add_kek(kek())

    with pytest.raises(KeyringError):
        keystore.add_data_key(data_key("deposits/a", version=2))


def test_shredding_keeps_a_tombstone_without_key_or_digest(keystore: KeyStore) -> None:
    keystore.add_kek(kek())
    keystore.add_data_key(data_key("deposits/a"))
    later = NOW + timedelta(days=90)

    assert keystore.shred_data_key("deposits/a", later) is True
    assert keystore.shred_data_key("deposits/a", later) is False
    assert keystore.shred_data_key("deposits/unknown", later) is False

    record = keystore.get_data_key("deposits/a")
    assert record is not None
    assert record.is_shredded
    assert (record.wrapped_key, record.sha256, record.shredded_at) == (None, None, later)
    assert record.size == 2**40


def test_rewrap_batches_page_through_old_live_keys(keystore: KeyStore) -> None:
    keystore.add_kek(kek("62", 1))
    keystore.add_kek(kek("62", 2))
    keystore.add_kek(kek("59", 1))
    for name in ("d", "b", "a", "c"):
        keystore.add_data_key(data_key(f"k/{name}"))
    keystore.add_data_key(data_key("k/new", version=2))
    keystore.add_data_key(data_key("k/other", departement="59"))
    keystore.shred_data_key("k/c", NOW)

    first = keystore.data_keys_to_rewrap("62", 2, "", 2)
    second = keystore.data_keys_to_rewrap("62", 2, first[-1].object_key, 2)

    assert [r.object_key for r in first] == ["k/a", "k/b"]
    assert [r.object_key for r in second] == ["k/d"]


def test_save_rewrapped_is_a_compare_and_set(keystore: KeyStore) -> None:
    keystore.add_kek(kek("62", 1))
    keystore.add_kek(kek("62", 2))
    keystore.add_data_key(data_key("k/a"))
    keystore.add_data_key(data_key("k/b"))
    keystore.shred_data_key("k/b", NOW)
    new = b"\x01" + bytes(60)

    saved = keystore.save_rewrapped(
        [Rewrapped("k/a", 1, 2, new), Rewrapped("k/b", 1, 2, new), Rewrapped("k/zz", 1, 2, new)]
    )
    again = keystore.save_rewrapped([Rewrapped("k/a", 1, 2, b"\x01" + bytes(60))])

    assert (saved, again) == (1, 0)
    record = keystore.get_data_key("k/a")
    assert record is not None
    assert (record.kek_version, record.wrapped_key) == (2, new)


def test_encrypted_store_works_on_every_key_store(keystore: KeyStore) -> None:
    # Given an encrypted store whose keys live in this key store
    keyring = Keyring(MasterKey.generate(), keystore)
    keyring.ensure("62")
    store = EncryptedStore(MemoryStore(), keyring, segment_size=SEGMENT)
    data = random_bytes(3 * SEGMENT + 5)

    # When an object is written, the key rotated and re-wrapped
    stored = store.put("deposits/x", chunked(data, 50_000), departement="62")
    keyring.rotate("62")
    report = keyring.rewrap("62", batch_size=1)

    # Then it still reads back, until shredded
    assert report.rewrapped == 1
    assert store.stat("deposits/x").kek_version == 2
    assert store.stat("deposits/x").created_at == stored.created_at
    assert b"".join(store.open("deposits/x")) == data
    store.delete("deposits/x")
    with pytest.raises(ObjectShredded):
        store.open("deposits/x")


def test_sql_key_store_accepts_a_session_factory(sqlite_engine: sa.Engine) -> None:
    keystore = SqlKeyStore(sessionmaker(sqlite_engine))

    keystore.add_kek(kek())

    assert keystore.kek_versions("62") == [1]


@pytest.mark.parametrize(
    "engine_name", ["sqlite_engine", pytest.param("postgres_engine", marks=pytest.mark.postgres)]
)
def test_database_refuses_a_half_shredded_row(
    engine_name: str, request: pytest.FixtureRequest
) -> None:
    engine: sa.Engine = request.getfixturevalue(engine_name)
    SqlKeyStore(engine).add_kek(kek())
    row = {
        "object_key": "k/a",
        "departement": "62",
        "kek_version": 1,
        "wrapped_key": None,
        "sha256": "ab" * 32,
        "size": 1,
        "created_at": NOW,
        "shredded_at": None,
    }

    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(storage_data_key.insert().values(**row))


@pytest.mark.parametrize(
    "engine_name", ["sqlite_engine", pytest.param("postgres_engine", marks=pytest.mark.postgres)]
)
def test_a_kek_still_wrapping_data_keys_cannot_be_deleted(
    engine_name: str, request: pytest.FixtureRequest
) -> None:
    engine: sa.Engine = request.getfixturevalue(engine_name)
    keystore = SqlKeyStore(engine)
    keystore.add_kek(kek())
    keystore.add_data_key(data_key("k/a"))

    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(storage_kek.delete())


def test_tables_have_the_documented_shape() -> None:
    # The application's Alembic migration copies these tables: a change here needs one there.
    assert sorted(metadata.tables) == ["storage_data_key", "storage_kek"]
    assert [c.name for c in storage_kek.columns] == [
        "departement",
        "version",
        "wrapped_key",
        "master_key_id",
        "created_at",
    ]
    assert [c.name for c in storage_data_key.columns] == [
        "object_key",
        "departement",
        "kek_version",
        "wrapped_key",
        "sha256",
        "size",
        "created_at",
        "shredded_at",
    ]
    names = {c.name for t in metadata.tables.values() for c in t.constraints if c.name}
    assert names >= {
        "pk_storage_kek",
        "pk_storage_data_key",
        "fk_storage_data_key_departement_storage_kek",
        "ck_storage_kek_version_positive",
        "ck_storage_data_key_size_not_negative",
        "ck_storage_data_key_live_or_shredded",
    }
