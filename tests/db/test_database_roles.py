"""The safe PostgreSQL set-up is the easy one: `filr db upgrade --app-role` creates and checks the
application's role, and the portal refuses a superuser connection unless told otherwise."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import audit
from audit import AuditAction
from portal import Settings, create_app
from portal.cli import main
from portal.db import SuperuserRefused, db
from tests.db.test_database_outage import closed_port
from tests.support.leaks import LEAKS
from tests.support.services import PG_ADMIN_URL, postgres_database

pytestmark = pytest.mark.postgres

APP_PASSWORD = "app-role-password-" + "y" * 20
FILR = Path(sys.executable).with_name("filr")


@dataclass(frozen=True)
class Database:
    owner: str
    app: str
    owner_url: str
    app_url: str
    admin_url: str


def _url(base: str, user: str) -> str:
    return f"postgresql+psycopg://{user}@{base.split('@', 1)[1]}"


def _admin_sql(
    sql: str, url: str = PG_ADMIN_URL, **params: object
) -> list[sa.Row[tuple[object, ...]]]:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(sql), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def database() -> Iterator[Database]:
    """A throw-away database owned by a plain owner role (CREATEROLE for the set-up only); the
    application role is not created: that is `filr db upgrade --app-role`'s job."""
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"filr_owner_{suffix}", f"filr_app_{suffix}"
    _admin_sql(f"CREATE ROLE {owner} LOGIN CREATEROLE")
    try:
        with postgres_database("filr_roles_cli") as admin_url:
            name = admin_url.rsplit("/", 1)[1]
            _admin_sql(f'ALTER DATABASE "{name}" OWNER TO {owner}')
            # PostgreSQL 15 gives the public schema to the database's owner (pg_database_owner).
            yield Database(owner, app, _url(admin_url, owner), _url(admin_url, app), admin_url)
    finally:
        _admin_sql(f"DROP ROLE IF EXISTS {app}")
        _admin_sql(f"DROP ROLE IF EXISTS {owner}")


@pytest.fixture
def cli_env(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The owner's environment; the new role's password in a 0600 file."""
    LEAKS.remember("application role password", APP_PASSWORD)
    password_file = tmp_path / "app-password"
    password_file.write_text(APP_PASSWORD + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    for key in [k for k in os.environ if k.startswith("FILR_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FILR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FILR_SECRET_KEY", "test-secret-key-" + "x" * 40)
    monkeypatch.setenv("FILR_DATABASE_OWNER_URL", database.owner_url)
    monkeypatch.setenv("FILR_DATABASE_URL", database.app_url)
    return password_file


def _settings(url: str, tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        secret_key="test-secret-key-" + "x" * 40,
        database_url=url,
        data_dir=tmp_path / "data",
        storage_url=f"file://{tmp_path / 'objects'}",
        master_key_file=tmp_path / "data" / "secrets" / "master.key",
        base_url="https://filr.test",
        argon2_time_cost=1,
        argon2_memory_kib=8,
        **overrides,  # type: ignore[arg-type]
    )


def test_db_upgrade_creates_the_application_role_which_cannot_rewrite_the_audit_trail(
    database: Database, cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    # Given no password for the role to create, Then nothing is created
    refused = runner.invoke(main, ["db", "upgrade", "--app-role", database.app])
    assert refused.exit_code == 1
    assert "FILR_DATABASE_APP_PASSWORD_FILE" in refused.output
    assert not _admin_sql("SELECT 1 FROM pg_roles WHERE rolname = :r", r=database.app)
    assert not _admin_sql(
        "SELECT 1 FROM pg_tables WHERE tablename = 'audit_event'", database.admin_url
    )  # one transaction: no migration either
    # Given an owner that may not create roles, Then it says what to do, and nothing is created
    monkeypatch.setenv("FILR_DATABASE_APP_PASSWORD_FILE", str(cli_env))
    _admin_sql(f"ALTER ROLE {database.owner} NOCREATEROLE")
    powerless = runner.invoke(main, ["db", "upgrade", "--app-role", database.app])
    assert powerless.exit_code == 1 and "CREATEROLE" in powerless.output
    assert not _admin_sql("SELECT 1 FROM pg_roles WHERE rolname = :r", r=database.app)
    _admin_sql(f"ALTER ROLE {database.owner} CREATEROLE")
    # When the owner runs the set-up with the password in a file
    result = runner.invoke(main, ["db", "upgrade", "--app-role", database.app])
    assert result.exit_code == 0, result.output
    assert f"Rôle {database.app} créé" in result.output
    assert f"Rôle {database.app} vérifié" in result.output
    # Then the role logs in with a SCRAM verifier (never the password) and holds no power
    (role,) = _admin_sql(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, "
        "rolbypassrls, rolpassword FROM pg_authid WHERE rolname = :r",
        r=database.app,
    )
    assert role[:6] == (True, False, False, False, False, False)
    assert str(role[6]).startswith("SCRAM-SHA-256$") and APP_PASSWORD not in str(role[6])
    # And the portal, connected as that role, appends to the trail but cannot rewrite it
    app = create_app(_settings(database.app_url, tmp_path))  # production mode: not testing
    engine = db.bound(app).engine
    try:
        with app.app_context():
            audit.record(db.session, AuditAction.AUTH_LOGIN_FAILURE, outcome=audit.Outcome.FAILURE)
            db.session.commit()
        for sql in ("UPDATE audit_event SET outcome = 'success'", "DELETE FROM audit_event"):
            with (
                pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
                engine.begin() as conn,
            ):
                conn.exec_driver_sql(sql)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM audit_event").scalar_one() == 1
    finally:
        engine.dispose()
    # And running the set-up again only checks the role (idempotent)
    again = runner.invoke(main, ["db", "upgrade", "--app-role", database.app])
    assert again.exit_code == 0, again.output
    assert "créé" not in again.output and f"Rôle {database.app} vérifié" in again.output


def test_db_upgrade_takes_back_widened_grants_and_names_what_it_cannot(
    database: Database, cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FILR_DATABASE_APP_PASSWORD_FILE", str(cli_env))
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade", "--app-role", database.app]).exit_code == 0
    # Given an administrator widened the role by hand: a table privilege, an attribute, and
    # membership of the owner (which may drop the audit trigger)
    owner_sql = sa.create_engine(database.owner_url, isolation_level="AUTOCOMMIT")
    with owner_sql.connect() as conn:
        conn.exec_driver_sql(f"GRANT TRUNCATE, TRIGGER ON deposit TO {database.app}")
        conn.exec_driver_sql(f"GRANT UPDATE, DELETE ON audit_event TO {database.app}")
    owner_sql.dispose()
    _admin_sql(f"ALTER ROLE {database.app} CREATEDB")
    _admin_sql(f"GRANT {database.owner} TO {database.app}")
    # When the set-up runs again
    result = runner.invoke(main, ["db", "upgrade", "--app-role", database.app])
    # Then it refuses, naming each power it cannot take back
    assert result.exit_code == 1
    assert "CREATEDB" in result.output
    assert f"membre du rôle {database.owner}" in result.output
    # And the privileges granted to it directly are exactly the portal's again
    granted = _admin_sql(
        "SELECT c.relname, a.privilege_type FROM pg_class c "
        "CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee "
        "WHERE r.rolname = :r AND c.relname IN ('deposit', 'audit_event')",
        database.admin_url,
        r=database.app,
    )
    assert {(t, p) for t, p in granted} == {
        ("deposit", "SELECT"), ("deposit", "INSERT"), ("deposit", "UPDATE"),
        ("deposit", "DELETE"), ("audit_event", "SELECT"), ("audit_event", "INSERT"),
    }  # fmt: skip
    # And once the administrator took back what only he can, the set-up passes
    _admin_sql(f"REVOKE {database.owner} FROM {database.app}")
    _admin_sql(f"ALTER ROLE {database.app} NOCREATEDB")
    fixed = runner.invoke(main, ["db", "upgrade", "--app-role", database.app])
    assert fixed.exit_code == 0, fixed.output


# --- a superuser connection ---------------------------------------------------------------------


def test_portal_refuses_a_superuser_connection_unless_allowed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with postgres_database("filr_superuser") as url:  # the test suite's role is a superuser
        # Given the portal in production mode (not testing) on a superuser's connection
        refusing = create_app(_settings(url, tmp_path))
        try:
            # When it connects, Then it refuses
            with (
                pytest.raises(SuperuserRefused, match="superutilisateur"),
                db.bound(refusing).engine.connect(),
            ):
                pass
        finally:
            db.bound(refusing).engine.dispose()
        # Given the explicit setting, Then it connects, with a warning in the log
        allowed = create_app(_settings(url, tmp_path, allow_superuser=True))
        caplog.set_level(logging.WARNING, logger="portal")
        try:
            with db.bound(allowed).engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
        finally:
            db.bound(allowed).engine.dispose()
        warnings = [r for r in caplog.records if "superuser" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_portal_refuses_a_member_of_a_superuser_role(tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    boss, member = f"filr_boss_{suffix}", f"filr_member_{suffix}"
    # Given a login role, not a superuser itself, that may SET ROLE to a superuser role
    _admin_sql(f"CREATE ROLE {boss} NOLOGIN SUPERUSER")
    _admin_sql(f"CREATE ROLE {member} LOGIN NOSUPERUSER")
    try:
        _admin_sql(f"GRANT {boss} TO {member}")
        with postgres_database("filr_superuser_member") as admin_url:
            url = _url(admin_url, member)
            app = create_app(_settings(url, tmp_path))
            try:
                # When the portal connects as that role, Then it refuses
                with (
                    pytest.raises(SuperuserRefused, match="superutilisateur"),
                    db.bound(app).engine.connect(),
                ):
                    pass
            finally:
                db.bound(app).engine.dispose()
            # (the role is indeed one step from a superuser, not one itself)
            plain = sa.create_engine(url)
            try:
                with plain.connect() as conn:
                    conn.exec_driver_sql(f"SET ROLE {boss}")
                    assert conn.exec_driver_sql("SHOW is_superuser").scalar_one() == "on"
            finally:
                plain.dispose()
    finally:
        _admin_sql(f"DROP ROLE IF EXISTS {member}")
        _admin_sql(f"DROP ROLE IF EXISTS {boss}")


def _serve_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILR_")}
    env.update(FILR_DATA_DIR=str(tmp_path / "data"), FILR_DATABASE_URL=url, **extra)
    return env


def test_filr_serve_refuses_to_start_as_a_superuser_unless_allowed(tmp_path: Path) -> None:
    with postgres_database("filr_superuser_serve") as url:
        port = closed_port()
        # Given FILR_DATABASE_URL names a superuser, When filr serve starts, Then one line, exit 1
        refused = subprocess.run(
            [str(FILR), "serve", "--port", str(port)],
            env=_serve_env(tmp_path, url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 1
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "superutilisateur" in lines[0], refused.stderr
        assert "FILR_ALLOW_SUPERUSER" in lines[0]
        # Given FILR_ALLOW_SUPERUSER=1, Then it serves, and says it runs as a superuser
        server = subprocess.Popen(
            [str(FILR), "serve", "--port", str(port), "--workers", "1"],
            env=_serve_env(tmp_path, url, FILR_ALLOW_SUPERUSER="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            health = None
            while health is None and time.monotonic() < deadline and server.poll() is None:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/sante", timeout=2
                    ) as answer:
                        health = answer.status
                except OSError:
                    time.sleep(0.2)
        finally:
            server.terminate()
            _out, err = server.communicate(timeout=30)
        assert health == 200, err
        assert "superuser" in err and "FILR_ALLOW_SUPERUSER" in err
