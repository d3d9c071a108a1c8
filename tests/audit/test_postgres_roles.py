"""On PostgreSQL the application's role may only append to and read the audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, AuditCheckpoint, AuditEvent, Outcome
from portal import Settings, create_app
from portal.cli import main
from portal.db import db, make_engine
from portal.migrate import upgrade
from tests.conftest import login
from tests.factories import Factory
from tests.support.services import PG_ADMIN_URL, SmtpSink, port_open, postgres_database, unavailable

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Roles:
    owner: str
    app: str
    owner_url: str
    app_url: str
    admin_url: str


def _url(base: str, user: str) -> str:
    rest = base.split("@", 1)[1]
    return f"postgresql+psycopg://{user}@{rest}"


@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch) -> Iterator[Roles]:
    """A database owned by a plain owner role, migrated with FILR_DATABASE_APP_ROLE set."""
    if not port_open("127.0.0.1", 5432):
        unavailable("PostgreSQL on 127.0.0.1:5432")
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"filr_owner_{suffix}", f"filr_app_{suffix}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {owner} LOGIN")
        conn.exec_driver_sql(f"CREATE ROLE {app} LOGIN")
    try:
        with postgres_database("filr_roles") as admin_url:
            name = admin_url.rsplit("/", 1)[1]
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" OWNER TO {owner}')
            monkeypatch.setenv("FILR_DATABASE_APP_ROLE", app)
            owner_url = _url(admin_url, owner)
            upgrade(owner_url)
            yield Roles(owner, app, owner_url, _url(admin_url, app), admin_url)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {app}")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {owner}")
        admin.dispose()


def _record(url: str, n: int = 1, *, at: datetime | None = None) -> None:
    engine = make_engine(url)
    with Session(engine) as session:
        for i in range(n):
            audit.record(
                session,
                AuditAction.AUTH_LOGIN_FAILURE,
                outcome=Outcome.FAILURE,
                details={"i": i},
                at=at + timedelta(seconds=i) if at else None,
            )
        session.commit()
    engine.dispose()


def _refused(url: str, sql: str) -> str:
    engine = make_engine(url)
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()
    return str(caught.value.orig)


def test_application_role_may_insert_and_select_audit_rows_but_not_update_or_delete(
    roles: Roles,
) -> None:
    # Given the portal connects with the application's role
    _record(roles.app_url, 3)
    engine = make_engine(roles.app_url)
    with Session(engine) as session:
        assert audit.verify_chain(session).checked == 3
    engine.dispose()
    # When it tries to rewrite or erase the trail, Then PostgreSQL refuses
    for sql in (
        "UPDATE audit_event SET outcome = 'success' WHERE seq = 2",
        "DELETE FROM audit_event WHERE seq = 2",
        "TRUNCATE audit_event",
        "INSERT INTO audit_checkpoint (seq, hash, rows_deleted, created_at) "
        "VALUES (3, 'x', 3, now())",
        "DELETE FROM audit_checkpoint",
        "UPDATE alembic_version SET version_num = '0001'",
    ):
        assert "permission denied" in _refused(roles.app_url, sql), sql
    # And it may still work on the portal's own tables
    engine = make_engine(roles.app_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM throttle_event")
    engine.dispose()


def test_even_the_owner_cannot_rewrite_rows_outside_the_retention_purge(roles: Roles) -> None:
    _record(roles.app_url, 2)
    engine = make_engine(roles.owner_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO audit_checkpoint (seq, hash, rows_deleted, created_at) "
            "VALUES (0, repeat('0', 64), 0, now())"
        )
    engine.dispose()
    # Given the tables' owner (migrations, retention), not a superuser
    for sql in (
        "UPDATE audit_event SET outcome = 'success'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
        "UPDATE audit_checkpoint SET hash = 'x'",
        "DELETE FROM audit_checkpoint",
        "TRUNCATE audit_checkpoint",
    ):
        assert "append-only" in _refused(roles.owner_url, sql), sql
    # Then only a transaction flagged as the retention purge may delete
    engine = make_engine(roles.owner_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT set_config('filr.audit_retention', 'on', true)")
        assert conn.exec_driver_sql("DELETE FROM audit_event WHERE seq = 1").rowcount == 1
    engine.dispose()


@pytest.fixture
def role_settings(roles: Roles, tmp_path: Path, smtp: SmtpSink) -> Settings:
    return Settings(
        secret_key="test-secret-key-" + "x" * 40,
        database_url=roles.app_url,
        database_owner_url=roles.owner_url,
        database_app_role=roles.app,
        data_dir=tmp_path / "data",
        storage_url=f"file://{tmp_path / 'objects'}",
        master_key_file=tmp_path / "data" / "secrets" / "master.key",
        base_url="https://filr.test",
        secure_cookies=True,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        testing=True,
    )


def test_portal_runs_as_the_application_role_and_logins_are_recorded(
    role_settings: Settings,
) -> None:
    # Given the portal connected with the application's role only
    app = create_app(role_settings)
    try:
        factory = Factory(app)
        account = factory.user(factory.org(departement="62"))
        client = app.test_client()
        client.environ_base.update(
            {"REMOTE_ADDR": "203.0.113.10", "HTTP_REFERER": "https://localhost/"}
        )
        # When a user logs in
        assert login(client, account).status_code == 302
        # Then the log-in is on the trail, and the chain verifies
        with app.app_context():
            actions = db.session.execute(sa.select(AuditEvent.action)).scalars().all()
            assert AuditAction.AUTH_LOGIN_SUCCESS in actions
            assert audit.verify_chain(db.session).is_valid
    finally:
        db.bound(app).engine.dispose()


def _cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for key, value in {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_DATABASE_OWNER_URL": settings.database_owner_url or "",
        "FILR_DATABASE_APP_ROLE": settings.database_app_role or "",
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_SMTP_HOST": settings.smtp_host or "",
        "FILR_SMTP_PORT": str(settings.smtp_port),
        "FILR_BASE_URL": settings.base_url,
    }.items():
        monkeypatch.setenv(key, value)


def test_row_altered_by_a_superuser_is_named_by_filr_audit_verify(
    roles: Roles, role_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cli_env(monkeypatch, role_settings)
    _record(roles.app_url, 5)
    assert CliRunner().invoke(main, ["audit", "verify"]).exit_code == 0
    # Given a superuser (who can bypass any trigger) rewrites row 3
    engine = sa.create_engine(roles.admin_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_event SET source_ip = '192.0.2.66' WHERE seq = 3")
    engine.dispose()
    # When the chain is verified with the application's role, Then row 3 is named
    result = CliRunner().invoke(main, ["audit", "verify"])
    assert result.exit_code == 1
    assert "n° 3" in result.output and "content altered" in result.output


def test_retention_job_purges_with_the_owner_url_and_the_chain_still_verifies(
    roles: Roles, role_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = datetime.now(UTC) - timedelta(days=500)
    _record(roles.app_url, 4, at=old)
    _record(roles.app_url, 2)
    # Given the retention job runs with the owner's URL
    _cli_env(monkeypatch, role_settings)
    result = CliRunner().invoke(main, ["jobs", "audit-retention"])
    assert result.exit_code == 0, result.output
    assert "4 entrées" in result.output
    engine = make_engine(roles.app_url)
    with Session(engine) as session:
        checkpoint = session.execute(sa.select(AuditCheckpoint)).scalar_one()
        assert checkpoint.seq == 4 and checkpoint.rows_deleted == 4
        verified = audit.verify_chain(session)
        assert verified.is_valid and verified.checkpoint_seq == 4
    engine.dispose()
