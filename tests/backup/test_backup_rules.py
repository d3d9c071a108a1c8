"""The rules around backups: a separate site and key, retention, the drill's clean-up when
killed. Quick tests on the embedded stack (SQLite, directories)."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask

from portal.backup.services import run_backup
from portal.backup.site import BackupConfigurationError, load_backup_key, open_backup_site
from portal.db import utcnow
from portal.settings import Settings, SettingsError
from storage import LocalStore
from storage.backup import BackupKey, BackupTampered, list_backups, read_manifest
from tests.backup.conftest import Stack
from tests.cli.conftest import filr
from tests.deposits.conftest import PDF
from tests.factories import Factory, World


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_the_production_bucket_or_directory_is_refused_as_backup_site(stack: Stack) -> None:
    s3 = stack.settings.with_overrides(
        storage_url="s3://filr-prod/a", s3_endpoint_url="http://s3.example:8333",
        backup_url="s3://filr-prod/backups", backup_s3_endpoint_url="http://s3.example:8333/",
    )  # fmt: skip
    with pytest.raises(BackupConfigurationError, match="seau de production"):
        open_backup_site(s3)
    inside = stack.settings.with_overrides(backup_url=stack.settings.storage_url + "/backups")
    with pytest.raises(BackupConfigurationError, match="répertoire du stockage"):
        open_backup_site(inside)
    # Another bucket of the same service, or another service, is a backup site
    other = s3.with_overrides(backup_url="s3://filr-backup/nightly")
    assert open_backup_site(other) is not None


def test_the_master_key_is_refused_as_backup_key(stack: Stack, app: Flask) -> None:
    master = stack.settings.master_key_file.read_text()
    same = stack.settings.backup_key_file
    assert same is not None
    same.write_text(master)
    with pytest.raises(BackupConfigurationError, match="distincte de la clé maîtresse"):
        load_backup_key(stack.settings)


def test_retention_is_bounded_by_the_life_of_a_deposit_plus_the_restore_window(
    stack: Stack,
) -> None:
    with pytest.raises(SettingsError, match="BACKUP_RETENTION_DAYS"):
        stack.settings.with_overrides(backup_retention_days=92)
    with pytest.raises(SettingsError, match="BACKUP_RETENTION_DAYS"):
        stack.settings.with_overrides(backup_retention_days=0)
    assert Settings.from_env().backup_retention_days == 35


def _key(stack: Stack) -> BackupKey:
    assert stack.settings.backup_key_file is not None
    return BackupKey.from_file(stack.settings.backup_key_file)


def test_old_backups_and_the_objects_only_they_name_are_deleted(
    stack: Stack, tmp_path: Path
) -> None:
    # Given a production store with two objects and a backup 40 days old
    settings = stack.settings
    prod = LocalStore(tmp_path / "prod-objects")
    site = open_backup_site(settings)
    prod.put("deposits/a/1", [b"ciphertext-1"])
    prod.put("deposits/a/2", [b"ciphertext-2"])
    old = run_backup(
        database_url=settings.database_url, store=prod, site=site, key=_key(stack),
        retention_days=35, now=utcnow() - timedelta(days=40),
    )  # fmt: skip
    # When one object is destroyed in production and tonight's backup runs
    prod.delete("deposits/a/1")
    new = run_backup(
        database_url=settings.database_url, store=prod, site=site, key=_key(stack),
        retention_days=35,
    )  # fmt: skip
    # Then the old backup is gone, and with it the object no kept backup names
    assert new.backups_deleted == 1 and new.objects_deleted == 1
    assert list_backups(site) == [new.backup_id] != [old.backup_id]
    assert set(site.list("objects/")) == {"objects/deposits/a/2"}
    manifest = read_manifest(site, _key(stack), new.backup_id)
    assert set(manifest.objects) == {"deposits/a/2"}


def test_a_manifest_does_not_open_under_another_backup_key_nor_as_another_backup(
    stack: Stack, tmp_path: Path
) -> None:
    settings = stack.settings
    prod = LocalStore(tmp_path / "prod-objects")
    site = open_backup_site(settings)
    report = run_backup(
        database_url=settings.database_url, store=prod, site=site, key=_key(stack),
        retention_days=35,
    )  # fmt: skip
    stranger = BackupKey(secrets.token_bytes(32))
    with pytest.raises(BackupTampered, match="autre clé"):
        read_manifest(site, stranger, report.backup_id)
    # A manifest copied under another backup's name is refused too (bound to its id)
    other = "20200101T000000000000Z"
    site.put(f"backups/{other}/manifest", site.get(f"backups/{report.backup_id}/manifest"))
    with pytest.raises(BackupTampered):
        read_manifest(site, _key(stack), other)
    # After a rotation, the previous key (second line of the file) still opens old manifests
    rotated = BackupKey.from_text(
        base64.b64encode(secrets.token_bytes(32)).decode()
        + "\n"
        + base64.b64encode(_key(stack)._key).decode()
    )
    assert read_manifest(site, rotated, report.backup_id).backup_id == report.backup_id


def test_a_drill_killed_with_sigterm_removes_its_scratch_database_and_files(
    backup_env: Stack, app: Flask, factory: Factory
) -> None:
    from tests.backup.test_backup_restore import _client
    from tests.deposits.conftest import sent_deposit

    world = World.build(factory)
    sender = _client(app, world.agent62)
    big = b"\x89PNG\r\n\x1a\n" + os.urandom(24 * 1024 * 1024)  # an image: checked by type only
    sent_deposit(sender, [world.ft62], files={"a.pdf": PDF, "b.png": big})
    filr(["backup", "run"])
    drills = backup_env.settings.data_dir / "drills"
    process = subprocess.Popen(
        [sys.executable, "-c", "from portal.cli import main; main()", "backup", "drill"],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (drills.is_dir() and any(drills.iterdir())):
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, output
    assert "interrompu" in output
    assert not any(drills.iterdir())


def test_the_workspace_shows_the_last_successful_backup_and_drill(
    backup_env: Stack, app: Flask, factory: Factory
) -> None:
    from portal.accounts.models import Role
    from portal.orgs.models import OrgKind
    from tests.backup.test_backup_restore import _client

    org = factory.org(OrgKind.FRANCE_TRAVAIL, None, national=True, name="DSI")
    officer = factory.user(org, (Role.SECURITE,))
    page = _client(app, officer).get("/securite").get_data(as_text=True)
    assert "Aucune sauvegarde réussie" in page
    assert "Aucun exercice de restauration réussi" in page
    filr(["backup", "run"])
    filr(["backup", "drill"])
    page = _client(app, officer).get("/securite").get_data(as_text=True)
    assert (
        "Dernière sauvegarde réussie le" in page and "la sauvegarde de la nuit manque" not in page
    )
    assert "Dernier exercice de restauration réussi le" in page


def test_list_and_dry_runs_change_nothing_and_name_what_would_be_used(
    backup_env: Stack, app: Flask
) -> None:
    assert "Site de sauvegarde joignable (0 fichiers" in filr(["backup", "run", "--dry-run"]).output
    site = open_backup_site(backup_env.settings)
    assert list(site.list()) == []
    filr(["backup", "run"])
    (backup_id,) = list_backups(site)
    assert backup_id in filr(["backup", "list"]).output
    assert backup_id in filr(["backup", "drill", "--dry-run"]).output
    # A manifest that does not open is listed as refused, not hidden
    site.put(f"backups/{backup_id}/manifest", [b"FILR/BKM garbage"])
    assert "REFUSÉE" in filr(["backup", "list"]).output


def test_a_restore_whose_purge_leaves_an_expired_deposit_refuses_to_finish(
    backup_env: Stack, app: Flask, factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    import portal.deposits.purge
    from portal.db import db
    from portal.deposits.models import Deposit
    from tests.backup.test_backup_restore import _client
    from tests.deposits.conftest import sent_deposit

    world = World.build(factory)
    doomed = sent_deposit(_client(app, world.agent62), [world.ft62], files={"a.pdf": PDF})
    expiry = utcnow() + timedelta(seconds=3)
    with app.app_context():
        db.session.execute(sa.update(Deposit).where(Deposit.id == doomed).values(expires_at=expiry))
        db.session.commit()
    filr(["backup", "run"])
    while utcnow() <= expiry:
        time.sleep(0.2)
    # Given a purge that, for whatever reason, destroys nothing
    original = portal.deposits.purge.purge_expired_deposits
    monkeypatch.setattr(
        portal.deposits.purge, "purge_expired_deposits", lambda *a, **k: _NothingPurged()
    )
    # When the restore runs, then it refuses to say the portal may open
    out = filr(
        [
            "backup", "restore", "--database-url", f"sqlite:///{tmp_path / 'r.db'}",
            "--storage-url", f"file://{tmp_path / 'restored-objects'}",
        ],
        code=1,
    ).output  # fmt: skip
    assert "n'ouvrez pas le portail" in out and "1 dépôt(s) échu(s)" in out
    assert "peut ouvrir" not in out
    # And the portal refuses to serve that database: `filr serve`, and gunicorn's app
    import click

    from portal.backup.guard import (
        RestoreUnfinished,
        refuse_connections_while_unfinished,
        refuse_unfinished_restore,
    )
    from portal.cli.serve import check_no_unfinished_restore
    from portal.db import make_engine

    restored_url = f"sqlite:///{tmp_path / 'r.db'}"
    with pytest.raises(click.ClickException, match="Restauration inachevée"):
        check_no_unfinished_restore(backup_env.settings.with_overrides(database_url=restored_url))
    engine = make_engine(restored_url)
    with pytest.raises(RestoreUnfinished, match="finish-restore"):
        refuse_unfinished_restore(engine)
    serving = make_engine(restored_url)  # as portal.wsgi and `filr serve` guard their engine
    refuse_connections_while_unfinished(serving)
    with pytest.raises(RestoreUnfinished):
        serving.connect()
    # Until the purge succeeds: `filr backup finish-restore`
    monkeypatch.setattr(portal.deposits.purge, "purge_expired_deposits", original)
    done = filr(
        [
            "backup", "finish-restore", "--database-url", restored_url,
            "--storage-url", f"file://{tmp_path / 'restored-objects'}",
        ]
    ).output  # fmt: skip
    assert "1 dépôts échus détruits" in done and "peut ouvrir" in done
    refuse_unfinished_restore(engine)  # no longer raises
    serving.connect().close()
    serving.dispose()
    engine.dispose()


class _NothingPurged:
    expired = withdrawn = abandoned_drafts = files_destroyed = removal_pending = 0


def test_a_dry_run_that_cannot_reach_the_site_fails_and_writes_nothing(
    backup_env: Stack, app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit import AuditAction
    from tests.conftest import audit_rows

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FILR_BACKUP_URL", f"file://{blocker}/site")
    assert "Sauvegarde impossible" in filr(["backup", "run", "--dry-run"], code=1).output
    assert "Exercice impossible" in filr(["backup", "drill", "--dry-run"], code=1).output
    assert audit_rows(app, AuditAction.BACKUP_FAILED) == []
    assert audit_rows(app, AuditAction.BACKUP_DRILL) == []
