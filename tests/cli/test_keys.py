"""`filr keys`: département key rotation and master key rotation, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask

from audit import AuditAction
from portal.cli import main
from portal.container import services
from portal.db import job_lock, make_engine
from portal.settings import Settings
from storage import (
    IntegrityError,
    MasterKey,
    RewrappedKek,
    SqlKeyStore,
    StorageUnavailable,
    WrongMasterKey,
)
from tests.conftest import audit_rows

CONTENTS = {
    f"deposits/{departement}/{index}": os.urandom(70_000 + index)
    for index, departement in enumerate(["62", "59", "62", "2A", "62", "59"])
}


@pytest.fixture
def stored(app: Flask, cli_env: Settings) -> Flask:
    """Objects of three départements stored through the portal's encrypted store."""
    with app.app_context():
        store = services().store
        for key, content in CONTENTS.items():
            store.keyring.ensure(key.split("/")[1])
            store.put(key, [content], departement=key.split("/")[1])
    return app


def _run(args: list[str], exit_code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["keys", *args], catch_exceptions=False)
    assert result.exit_code == exit_code, result.output
    return result


def _status() -> dict[str, Any]:
    return dict(json.loads(_run(["status", "--json"]).output))


def _read_all(make_app: Callable[..., Flask]) -> None:
    """Every object reads back exactly, through a freshly started portal."""
    with make_app().app_context():
        store = services().store
        for key, content in CONTENTS.items():
            assert b"".join(store.open(key)) == content


def _details(app: Flask, action: AuditAction) -> list[dict[str, Any]]:
    return [json.loads(row.details) for row in audit_rows(app, action)]


def _start_rotation(settings: Settings, tmp_path: Path) -> tuple[Path, str, str]:
    """Generate a new master key and list it first in the master key file, the old one after."""
    new_file = tmp_path / "new-master.key"
    old_text = settings.master_key_file.read_text()
    out = _run(["generate-master-key", str(new_file)]).output
    new_id = MasterKey.from_file(new_file).key_id
    assert new_id in out and new_file.read_text().strip() not in out
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    settings.master_key_file.write_text(new_file.read_text() + old_text)
    return new_file, new_id, MasterKey.from_text(old_text).key_id


def test_master_key_rotation_keeps_every_deposit_readable(
    stored: Flask, cli_env: Settings, make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    # Given objects under the old master key, and a new key listed first in the key file
    before = _status()
    assert before["keks_under_previous_master_key"] == 0
    new_file, new_id, old_id = _start_rotation(cli_env, tmp_path)
    assert _status()["keks_under_previous_master_key"] == 3
    _read_all(make_app)  # servers restarted on the new file read everything at once

    # When the operator runs the rotation job
    out = _run(["rotate-master", "--new-key-file", str(new_file)]).output

    # Then every département key is under the new master key, and every object readable
    assert "3 clés de département reprises" in out and "Rotation terminée" in out
    after = _status()
    assert after["master_key_id"] == new_id and after["previous_master_key_ids"] == [old_id]
    assert after["keks_under_previous_master_key"] == 0
    assert {kek["master_key_id"] for kek in after["keks"]} == {new_id}
    assert [
        (d["scope"], d["rewrapped"], d["failed"], d["remaining"])
        for d in _details(stored, AuditAction.KEY_ROTATED)
    ] == [("master", 3, 0, 0)]
    # and once the old key is removed from the file, the portal still reads everything
    cli_env.master_key_file.write_text(new_file.read_text())
    _read_all(make_app)


def test_the_old_master_key_alone_cannot_read_after_the_rotation(
    stored: Flask, cli_env: Settings, make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    # Given a finished rotation
    old_text = cli_env.master_key_file.read_text()
    new_file, _, _ = _start_rotation(cli_env, tmp_path)
    _run(["rotate-master", "--new-key-file", str(new_file)])

    # When a server starts with the old master key only
    cli_env.master_key_file.write_text(old_text)

    # Then it cannot unwrap any département key, so no object can be read
    with make_app().app_context():
        store = services().store
        for key in CONTENTS:
            with pytest.raises(WrongMasterKey):
                store.open(key)
        for kek in store.keyring.keystore.keks():
            with pytest.raises(IntegrityError):
                MasterKey.from_text(old_text).unwrap(kek.departement, kek.version, kek.wrapped_key)


def test_master_key_rotation_is_idempotent_and_resumes_after_a_crash(
    stored: Flask,
    cli_env: Settings,
    make_app: Callable[..., Flask],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a rotation job that crashes after its first batch of one key
    new_file, new_id, _ = _start_rotation(cli_env, tmp_path)
    original = SqlKeyStore.save_rewrapped_keks
    saves = 0

    def crash_on_second_batch(self: SqlKeyStore, rewrapped: Sequence[RewrappedKek]) -> int:
        nonlocal saves
        saves += 1
        if saves == 2:
            raise StorageUnavailable("key database unavailable")
        return original(self, rewrapped)

    monkeypatch.setattr(SqlKeyStore, "save_rewrapped_keks", crash_on_second_batch)
    with pytest.raises(StorageUnavailable):
        CliRunner().invoke(
            main,
            ["keys", "rotate-master", "--new-key-file", str(new_file), "--batch-size", "1"],
            catch_exceptions=False,
        )
    monkeypatch.setattr(SqlKeyStore, "save_rewrapped_keks", original)

    # Then one key moved, two wait, and every object stays readable meanwhile
    assert _status()["keks_under_previous_master_key"] == 2
    _read_all(make_app)

    # When the job runs again, it finishes; a third run has nothing to do
    assert "2 clés de département reprises" in _run(["rotate-master"]).output
    assert "0 clés de département reprises" in _run(["rotate-master"]).output
    assert {kek["master_key_id"] for kek in _status()["keks"]} == {new_id}
    # And the trail says the first run stopped half-way, then what each later run did
    failed, *done = _details(stored, AuditAction.KEY_ROTATED)
    assert failed == {"scope": "master", "error": "StorageUnavailable"}
    assert audit_rows(stored, AuditAction.KEY_ROTATED)[0].outcome == "failure"
    assert [d["rewrapped"] for d in done] == [2, 0]
    _read_all(make_app)


def test_rotate_master_refuses_a_new_key_that_is_not_configured(
    stored: Flask, cli_env: Settings, tmp_path: Path
) -> None:
    # Given a new key generated but not yet put in the master key file
    new_file = tmp_path / "new-master.key"
    _run(["generate-master-key", str(new_file)])
    before = _status()

    # When the operator runs the job, Then it refuses and changes nothing
    out = _run(["rotate-master", "--new-key-file", str(new_file)], exit_code=1).output
    assert "FILR_MASTER_KEY_FILE" in out
    assert _status() == before
    assert audit_rows(stored, AuditAction.KEY_ROTATED) == []


def test_generate_master_key_never_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("existing\n")

    _run(["generate-master-key", str(path)], exit_code=1)

    assert path.read_text() == "existing\n"


def test_departement_rotation_rewraps_data_keys_and_keeps_objects_readable(
    stored: Flask, cli_env: Settings, make_app: Callable[..., Flask]
) -> None:
    # When département 62 gets a new key version
    out = _run(["rotate-departement", "62"]).output

    # Then its three objects moved to version 2, other départements are untouched
    assert "version 2 en service, 3 clés de fichier reprises" in out
    keks = {(k["departement"], k["version"]): k for k in _status()["keks"]}
    assert keks["62", 1]["data_keys"] == 0 and keks["62", 2]["data_keys"] == 3
    assert keks["59", 1]["data_keys"] == 2 and ("59", 2) not in keks
    _read_all(make_app)
    [details] = _details(stored, AuditAction.KEY_ROTATED)
    assert details == {"scope": "departement", "version": 2, "rewrapped": 3, "failed": 0}
    [row] = audit_rows(stored, AuditAction.KEY_ROTATED)
    assert row.target_departement == "62"


def test_rewrap_finishes_a_rotation_done_without_rewrap(
    stored: Flask, cli_env: Settings, make_app: Callable[..., Flask]
) -> None:
    _run(["rotate-departement", "59", "--no-rewrap"])
    assert _status()["data_keys_to_rewrap"] == 2
    assert "[essai] 2 clés de fichier" in _run(["rewrap", "--dry-run"]).output

    assert "2 clés de fichier reprises" in _run(["rewrap"]).output
    assert "0 clés de fichier reprises" in _run(["rewrap", "--departement", "59"]).output

    assert _status()["data_keys_to_rewrap"] == 0
    _read_all(make_app)
    assert [(d["job"], d["rewrapped"]) for d in _details(stored, AuditAction.JOB_RUN)] == [
        ("keys-rewrap", 2),
        ("keys-rewrap", 0),
    ]


def test_rotating_an_unknown_or_malformed_departement_is_refused(
    stored: Flask, cli_env: Settings
) -> None:
    assert "pas encore de clé" in _run(["rotate-departement", "971"], exit_code=1).output
    assert "971" in _run(["rewrap", "--departement", "971"], exit_code=1).output
    _run(["rotate-departement", "../62"], exit_code=2)
    assert audit_rows(stored, AuditAction.KEY_ROTATED) == []


def test_status_shows_no_key_material(stored: Flask, cli_env: Settings) -> None:
    out = _run(["status"]).output + _run(["status", "--json"]).output

    assert cli_env.master_key_file.read_text().strip() not in out
    assert "version en service" in out


@pytest.mark.parametrize("backend", ["postgres"])  # SQLite has no advisory lock to hold
def test_a_key_job_whose_lock_is_held_exits_1(cli_env: Settings, app: Flask) -> None:
    engine = make_engine(cli_env.database_url)
    try:
        with job_lock(engine, "filr.keys") as acquired:
            assert acquired
            out = _run(["rewrap", "--dry-run"], exit_code=1).output
        assert out == "Une autre opération sur les clés est en cours : rien à faire.\n"
    finally:
        engine.dispose()
