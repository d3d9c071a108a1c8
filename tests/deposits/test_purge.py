"""The expiry job: objects and keys destroyed, one destruction entry each, idempotent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import storage
from audit import NO_CONTEXT, SYSTEM, AuditAction
from portal.container import services
from portal.db import db, utcnow
from portal.deposits.models import Deposit, DepositFile
from portal.deposits.purge import (
    cleanup_orphans,
    destroy_content,
    finish_destructions,
    purge_expired_deposits,
)
from tests.conftest import audit_rows
from tests.deposits.conftest import PDF, create_deposit, file_ids, sent_deposit, upload
from tests.factories import Account, World

Clients = Callable[[Account], FlaskClient]


def _expire(app: Flask, deposit_id: str) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(Deposit)
            .where(Deposit.id == deposit_id)
            .values(
                created_at=utcnow() - timedelta(days=91), expires_at=utcnow() - timedelta(seconds=1)
            )
        )
        db.session.commit()


def test_purge_leaves_neither_object_nor_key_and_records_each_destruction(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender = client_for(world.agent62)
    expired = sent_deposit(sender, [world.ft62], files={"a.pdf": PDF, "b.pdf": PDF + b"x"})
    alive = sent_deposit(sender, [world.ft62])
    _expire(app, expired)
    with app.app_context():
        store = services().store
        keys = [db.session.get(DepositFile, f).object_key for f in file_ids(app, expired)]  # type: ignore[union-attr]
        db.session.commit()  # no transaction held while the key store is asked (SQLite)
        dry = purge_expired_deposits(db.session, store, dry_run=True)
        assert dry.expired == 1 and all(store.exists(k) for k in keys)
        report = purge_expired_deposits(db.session, store)
        assert report.expired == 1 and report.files_destroyed == 2
        db.session.commit()
        for key in keys:
            assert not store.exists(key)
            assert key not in set(store.inner.list("deposits/"))
            record = store.keyring.keystore.get_data_key(key)
            assert record is None or record.wrapped_key is None
        assert db.session.get(Deposit, expired).status == "destroyed"  # type: ignore[union-attr]
        assert db.session.get(Deposit, alive).status == "available"  # type: ignore[union-attr]
        # Running it again changes nothing and records nothing more
        again = purge_expired_deposits(db.session, store)
        assert again.expired == 0 and again.files_destroyed == 0
    destroyed = audit_rows(app, AuditAction.DEPOSIT_DESTROYED)
    assert [r.target_id for r in destroyed] == [expired]
    assert '"files":2' in destroyed[0].details


def test_abandoned_drafts_and_orphan_objects_are_cleaned(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender = client_for(world.agent62)
    draft = create_deposit(sender, [world.ft62])
    assert upload(sender, draft, "a.pdf", PDF).status_code == 201
    with app.app_context():
        db.session.execute(
            sa.update(Deposit)
            .where(Deposit.id == draft)
            .values(created_at=utcnow() - timedelta(days=2))
        )
        db.session.commit()
        store = services().store
        # An object that no file references (a crash between storage and database)
        store.put("deposits/orphan/0001", iter([PDF]), departement="62")
        assert cleanup_orphans(db.session, store, older_than=timedelta(seconds=0)) == 1
        assert not store.exists("deposits/orphan/0001")
        report = purge_expired_deposits(db.session, store)
        assert report.abandoned_drafts == 1 and report.files_destroyed == 1


def test_purge_command_runs_twice_safely(
    app: Flask, world: World, client_for: Clients, monkeypatch, settings
) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from portal.cli import main

    for key, value in {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_STORAGE_URL": settings.storage_url,
        "FILR_MASTER_KEY_FILE": str(settings.master_key_file),
        "FILR_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "FILR_S3_REGION": settings.s3_region or "",
        "FILR_S3_ACCESS_KEY": settings.s3_access_key or "",
        "FILR_S3_SECRET_KEY": settings.s3_secret_key or "",
    }.items():
        monkeypatch.setenv(key, value)
    sender = client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.ft62])
    _expire(app, deposit_id)
    first = CliRunner().invoke(main, ["jobs", "purge"], catch_exceptions=False)
    second = CliRunner().invoke(main, ["jobs", "purge"], catch_exceptions=False)
    assert first.exit_code == second.exit_code == 0
    assert "1 dépôts expirés" in first.output and "0 dépôts expirés" in second.output
    assert len(audit_rows(app, AuditAction.DEPOSIT_DESTROYED)) == 1


def test_destruction_does_not_happen_when_its_audit_row_cannot_be_written(
    app: Flask, world: World, client_for: Clients
) -> None:
    from tests.audit.test_fail_closed import audit_inserts_fail

    # Given an expired deposit whose DEPOSIT_EXPIRED row is already written
    sender = client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.ft62])
    _expire(app, deposit_id)
    with app.app_context():
        store = services().store
        keys = [db.session.get(DepositFile, f).object_key for f in file_ids(app, deposit_id)]  # type: ignore[union-attr]
        db.session.commit()
        # When its destruction cannot be recorded
        with audit_inserts_fail(app), pytest.raises(sa.exc.DBAPIError):
            destroy_content(
                db.session, store, deposit_id, reason="expired", actor=SYSTEM, ctx=NO_CONTEXT
            )
        db.session.rollback()
        # Then nothing was destroyed: every key is live, the deposit is as it was
        assert all(store.exists(k) for k in keys)
        assert db.session.get(Deposit, deposit_id).status == "available"  # type: ignore[union-attr]
        db.session.commit()
        # And once the trail works again, the purge destroys it and records it once
        assert purge_expired_deposits(db.session, store).files_destroyed == 1
        assert not any(store.exists(k) for k in keys)
    assert len(audit_rows(app, AuditAction.DEPOSIT_DESTROYED)) == 1


def test_a_destruction_the_store_could_not_finish_is_finished_by_the_next_purge(
    app: Flask, world: World, client_for: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deposit with two files, and an object store that fails on the second removal
    sender = client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.ft62], files={"a.pdf": PDF, "b.pdf": PDF + b"x"})
    _expire(app, deposit_id)
    with app.app_context():
        store = services().store
        keys = [db.session.get(DepositFile, f).object_key for f in file_ids(app, deposit_id)]  # type: ignore[union-attr]
        db.session.commit()
        real_delete = store.inner.delete
        calls: list[str] = []

        def failing_delete(key: str) -> None:
            calls.append(key)
            if len(calls) == 2:
                raise storage.StorageUnavailable("store down (test)")
            real_delete(key)

        monkeypatch.setattr(store.inner, "delete", failing_delete)
        # When the purge destroys it
        report = purge_expired_deposits(db.session, store)
        # Then the destruction is recorded, every key shredded, one ciphertext left and counted
        assert report.expired == 1 and report.files_destroyed == 2
        assert report.removal_pending == 1
        assert db.session.get(Deposit, deposit_id).status == "destroyed"  # type: ignore[union-attr]
        db.session.commit()
        assert not any(store.exists(k) for k in keys)
        assert len(set(store.inner.list("deposits/")) & set(keys)) == 1
        # And the next run, with the store back, removes what is left without a second record
        monkeypatch.setattr(store.inner, "delete", real_delete)
        assert finish_destructions(db.session, store, dry_run=True).removed == 1
        assert finish_destructions(db.session, store).removed == 1
        assert not set(store.inner.list("deposits/")) & set(keys)
        assert finish_destructions(db.session, store).removed == 0
    assert len(audit_rows(app, AuditAction.DEPOSIT_DESTROYED)) == 1
