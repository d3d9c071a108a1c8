"""Backup → production destroyed → restore: same deposits, chain intact, the 90-day rule holds;
a tampered backup is refused; a backup site that is down fails loudly. On SQLite with a local
backup site, and on PostgreSQL with two real SeaweedFS (production, backup site)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
import storage
from audit import AuditAction
from portal import create_app
from portal.accounts.models import Role
from portal.db import db, utcnow
from portal.deposits.models import Deposit, DepositStatus
from portal.securite.models import AlertKind, SecurityAlert
from tests.backup.conftest import Stack
from tests.cli.conftest import filr
from tests.conftest import audit_rows, csrf_of, https, login, reset_totp_step
from tests.deposits.conftest import download, file_ids, sent_deposit
from tests.factories import Account, Factory, World
from tests.support.pdf import make_pdf
from tests.support.services import SmtpSink, postgres_database

PDF_A = make_pdf(padding=3000)
PDF_B = make_pdf(padding=500)


@pytest.fixture
def world(factory: Factory) -> World:
    return World.build(factory)


def _client(app: Flask, account: Account) -> FlaskClient:
    client = https(app.test_client())
    reset_totp_step(app, account)
    assert login(client, account).status_code == 302
    return client


@contextmanager
def _empty_database(stack: Stack, tmp_path: Path) -> Iterator[str]:
    if stack.backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    with postgres_database("filr_restore") as url:
        yield url


def _destroy_production(app: Flask, stack: Stack) -> None:
    """Every object of the production store and every row of its database, gone."""
    with app.app_context():
        from portal.container import services

        inner = services().store.inner
        for key in list(inner.list()):
            inner.delete(key)
    if stack.backend == "sqlite":
        Path(sa.engine.make_url(stack.settings.database_url).database or "").unlink()
    else:
        from tests.conftest import _truncate_postgres

        _truncate_postgres(stack.settings.database_url)


def _site_files(stack: Stack) -> storage.ObjectStore:
    from portal.backup.site import open_backup_site

    return open_backup_site(stack.settings)


def test_restore_after_losing_production_serves_the_same_files_and_not_the_expired_one(
    backup_env: Stack, app: Flask, world: World, tmp_path: Path
) -> None:
    stack = backup_env
    # Given two deposits, one of which expires a few seconds after the nightly backup
    sender = _client(app, world.agent62)
    kept = sent_deposit(sender, [world.ft62], files={"a.pdf": PDF_A})
    doomed = sent_deposit(sender, [world.ft62], files={"b.pdf": PDF_B})
    expiry = utcnow() + timedelta(seconds=6)
    with app.app_context():
        db.session.execute(sa.update(Deposit).where(Deposit.id == doomed).values(expires_at=expiry))
        db.session.commit()
    result = filr(["backup", "run"])
    assert "Sauvegarde " in result.output and "2 nouveaux" in result.output
    backups = [r for r in audit_rows(app, AuditAction.JOB_RUN) if '"job":"backup"' in r.details]
    assert len(backups) == 1 and '"outcome":"success"' in backups[0].details
    assert len(audit_rows(app, AuditAction.BACKUP_COMPLETED)) == 1
    # A second night copies nothing new (objects are incremental; the dump is full)
    assert "dont 0 nouveaux" in filr(["backup", "run"]).output
    # When production is lost, and the short deposit expires before the restore
    _destroy_production(app, stack)
    while utcnow() <= expiry:
        time.sleep(0.2)
    storage_url = stack.restore_storage_url("restored")
    with _empty_database(stack, tmp_path) as database_url:
        out = filr(
            ["backup", "restore", "--database-url", database_url, "--storage-url", storage_url]
        ).output
        # Then the purge ran before the restore declared success
        assert "restaurée" in out and "1 dépôts échus détruits" in out
        restored = create_app(
            stack.settings.with_overrides(database_url=database_url, storage_url=storage_url)
        )
        try:
            recipient = _client(restored, world.adviser_ft)
            (file_id,) = file_ids(restored, kept)
            response = download(recipient, kept, file_id)
            assert response.status_code == 200
            assert (
                hashlib.sha256(response.get_data()).hexdigest() == hashlib.sha256(PDF_A).hexdigest()
            )
            with restored.app_context():
                # the deposit that expired after the backup is destroyed, its key shredded
                assert db.session.get(Deposit, doomed).status == DepositStatus.DESTROYED  # type: ignore[union-attr]
                from portal.container import services

                store = services().store
                (gone,) = [f.object_key for f in db.session.get(Deposit, doomed).files]  # type: ignore[union-attr]
                db.session.commit()  # no transaction held while the key store is asked
                assert not store.exists(gone)
                with pytest.raises(storage.ObjectNotFound):
                    store.open(gone)
                assert gone not in set(store.inner.list())
                # and the restored trail verifies, restore included
                assert audit.verify_chain(db.session).is_valid
                actions = set(db.session.execute(sa.select(audit.AuditEvent.action)).scalars())
                assert {"backup:restored", "deposit:expired", "deposit:destroyed"} <= actions
            # and the recipient cannot get a download link for it
            doomed_file = file_ids(restored, doomed)[0]
            token = csrf_of(recipient, f"/depots/{kept}")
            link = recipient.post(
                f"/depots/{doomed}/fichiers/{doomed_file}/lien", data={"csrf_token": token}
            )
            # (a refused link sends back to the deposit's page, never to a download)
            assert link.status_code == 302
            assert "/telechargement/" not in link.headers["Location"]
        finally:
            db.bound(restored).engine.dispose()


def test_a_restore_refuses_a_non_empty_target(backup_env: Stack, app: Flask, world: World) -> None:
    sender = _client(app, world.agent62)
    sent_deposit(sender, [world.ft62], files={"a.pdf": PDF_B})
    filr(["backup", "run"])
    # The production database itself is not empty: refused, nothing written
    out = filr(
        [
            "backup",
            "restore",
            "--database-url",
            backup_env.settings.database_url,
            "--storage-url",
            backup_env.restore_storage_url("other"),
        ],
        code=1,
    ).output
    assert "n'est pas vide" in out


@pytest.mark.parametrize("part", ["database", "manifest"])
def test_one_byte_changed_in_the_backup_is_refused_at_restore(
    backup_env: Stack, app: Flask, world: World, tmp_path: Path, part: str
) -> None:
    sender = _client(app, world.agent62)
    sent_deposit(sender, [world.ft62], files={"a.pdf": PDF_B})
    filr(["backup", "run"])
    site = _site_files(backup_env)
    (name,) = [n for n in site.list("backups/") if n.endswith("/" + part)]
    data = bytearray(b"".join(site.get(name)))
    data[len(data) // 2] ^= 0x01
    site.put(name, [bytes(data)])
    with _empty_database(backup_env, tmp_path) as database_url:
        out = filr(
            [
                "backup",
                "restore",
                "--database-url",
                database_url,
                "--storage-url",
                backup_env.restore_storage_url("tampered"),
            ],
            code=1,
        ).output
        assert "altéré" in out
        from portal.backup.dump import is_empty_database

        assert is_empty_database(database_url)  # nothing restored from a tampered backup


def test_a_backup_site_that_is_down_fails_the_job_loudly_and_alerts(
    backup_env: Stack,
    app: Flask,
    world: World,
    factory: Factory,
    smtp: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    officer = factory.user(
        factory.org(national=True, departement=None, kind=_ft()), (Role.SECURITE,),
        email="secu-nat@example.org",
    )  # fmt: skip
    operator = factory.user(world.cd62, (Role.ADMIN,), email="ops@example.org")
    # Given a backup site that cannot be reached
    if backup_env.backend == "postgres":
        monkeypatch.setenv("FILR_BACKUP_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    else:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        monkeypatch.setenv("FILR_BACKUP_URL", f"file://{blocker}/site")
    # When the nightly job runs
    result = filr(["backup", "run"], code=1)
    # Then it says so, audits the failure, writes no job:run (the backup's age keeps growing),
    # raises the alert and e-mails the national officers and the platform operators
    assert "Sauvegarde en échec" in result.output
    failed = audit_rows(app, AuditAction.BACKUP_FAILED)
    assert len(failed) == 1 and failed[0].outcome == "failure"
    assert not [r for r in audit_rows(app, AuditAction.JOB_RUN) if '"backup"' in r.details]
    with app.app_context():
        kinds = list(db.session.execute(sa.select(SecurityAlert.kind)).scalars())
    assert kinds == [AlertKind.BACKUP_FAILED]
    assert smtp.to(officer.email) and smtp.to(operator.email)


def _ft() -> object:
    from portal.orgs.models import OrgKind

    return OrgKind.FRANCE_TRAVAIL


def test_the_drill_restores_checks_reports_and_cleans_up(
    backup_env: Stack, app: Flask, world: World
) -> None:
    sender = _client(app, world.agent62)
    sent_deposit(sender, [world.ft62], files={"a.pdf": PDF_A, "b.pdf": PDF_B})
    sent_deposit(_client(app, world.agent59), [world.cd59], departement="59",
                 files={"c.pdf": PDF_B})  # fmt: skip
    filr(["backup", "run"])
    out = filr(["backup", "drill"]).output
    assert "RÉUSSI" in out and "RTO" in out and "RPO" in out
    assert "fichiers déchiffrés : 3 sur 3" in out and "chaîne intègre" in out
    (row,) = audit_rows(app, AuditAction.BACKUP_DRILL)
    assert row.outcome == "success" and '"rto_seconds"' in row.details
    assert [r for r in audit_rows(app, AuditAction.JOB_RUN) if '"backup-drill"' in r.details]
    _assert_no_scratch_left(backup_env)


def _assert_no_scratch_left(stack: Stack) -> None:
    drills = stack.settings.data_dir / "drills"
    assert not drills.exists() or not list(drills.iterdir())
    if stack.backend == "postgres":
        from portal.backup.dump import leftover_databases

        assert leftover_databases(stack.settings.database_url, "filr_drill_") == []


def test_a_drill_on_a_damaged_backup_fails_and_alerts(
    backup_env: Stack, app: Flask, world: World, smtp: SmtpSink
) -> None:
    sender = _client(app, world.agent62)
    sent_deposit(sender, [world.ft62], files={"a.pdf": PDF_A})
    filr(["backup", "run"])
    site = _site_files(backup_env)
    (name,) = list(site.list("objects/"))
    data = bytearray(b"".join(site.get(name)))
    data[-5] ^= 0x01
    site.put(name, [bytes(data)])
    result = filr(["backup", "drill"], code=1)
    assert "ÉCHEC" in result.output or "échec" in result.output
    (row,) = audit_rows(app, AuditAction.BACKUP_DRILL)
    assert row.outcome == "failure"
    with app.app_context():
        kinds = list(db.session.execute(sa.select(SecurityAlert.kind)).scalars())
    assert kinds == [AlertKind.BACKUP_FAILED]
    _assert_no_scratch_left(backup_env)
