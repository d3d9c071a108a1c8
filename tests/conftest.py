"""Shared fixtures: databases (SQLite and real PostgreSQL), SMTP, app, clients, factories."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from flask import Flask, request_finished
from flask.testing import FlaskClient

from portal import Settings, create_app
from portal.accounts.models import User
from portal.db import db
from portal.migrate import upgrade
from tests.factories import Account, Factory
from tests.support.clamd import shared_clamd
from tests.support.leaks import LEAKS
from tests.support.services import SmtpSink, postgres_database, smtp_server

T = TypeVar("T")

# --- no secret and no NIR in logs or audit rows, over the whole session (tests/support/leaks.py)


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_in_the_session() -> Iterator[None]:
    """Collect every log record of the session; fail at its end if a secret or a NIR leaked."""
    root = logging.getLogger()
    level = root.level
    root.addHandler(LEAKS.handler)
    if level > logging.INFO:  # INFO records of the portal are collected too
        root.setLevel(logging.INFO)
    yield
    LEAKS.end_test()
    root.removeHandler(LEAKS.handler)
    root.setLevel(level)
    if LEAKS.findings:
        pytest.fail("secrets or NIR in logs or audit rows:\n" + LEAKS.report(), pytrace=False)


@pytest.fixture(autouse=True)
def _leak_watch(request: pytest.FixtureRequest) -> Iterator[None]:
    """Scan what this test logged and audited, with the secrets it handed out."""
    sink = request.getfixturevalue("smtp") if "smtp" in request.fixturenames else None
    yield
    if sink is not None:
        LEAKS.remember_mails(sink.messages)
    LEAKS.end_test()


@pytest.fixture(autouse=True)
def _superuser_allowed_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's PostgreSQL role is a superuser: commands run by the CLI tests (settings from
    the environment) may use it. The refusal's tests clear it (db/test_database_roles.py)."""
    monkeypatch.setenv("FILR_ALLOW_SUPERUSER", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests parametrised on the PostgreSQL backend carry the `postgres` marker."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec and callspec.params.get("backend") == "postgres":
            item.add_marker(pytest.mark.postgres)


# --- databases -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for the whole session (tables emptied per test)."""
    with postgres_database() as url:
        upgrade(url)
        yield url


_KEEP = {"departement", "alembic_version", "audit_chain_head"}


def _truncate_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
            if r[0] not in _KEEP
        ]
        if tables:
            conn.exec_driver_sql(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
            )
        conn.exec_driver_sql("UPDATE audit_chain_head SET seq = 0, hash = repeat('0', 64)")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Functional tests run on both database backends."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database of the requested backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "filr.db"
        shutil.copy(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate_postgres(url)
    return url


# --- mail ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_session() -> Iterator[SmtpSink]:
    """One real SMTP server for the session."""
    with smtp_server() as sink:
        yield sink


@pytest.fixture
def smtp(smtp_session: SmtpSink) -> SmtpSink:
    """The SMTP sink, emptied for this test."""
    smtp_session.clear()
    return smtp_session


# --- app -------------------------------------------------------------------------------


def make_settings(database_url: str, tmp_path: Path, smtp: SmtpSink) -> Settings:
    """Test settings: cheap argon2 (tests only), real SMTP, secure cookies as in production."""
    return Settings(
        secret_key="test-secret-key-" + "x" * 40,
        database_url=database_url,
        data_dir=tmp_path / "data",
        storage_url=f"file://{tmp_path / 'objects'}",
        master_key_file=tmp_path / "data" / "secrets" / "master.key",
        base_url="https://filr.test",
        secure_cookies=True,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        # One real clamd for the whole run, on a local signature database (no download).
        clamd_url=shared_clamd().url,
        clamd_timeout_seconds=30,
        testing=True,
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp: SmtpSink) -> Settings:
    """Test settings on the local object store (see `make_settings`)."""
    return make_settings(database_url, tmp_path, smtp)


def _watch_secrets(_sender: Flask, response: Any, **_extra: Any) -> None:
    LEAKS.remember_response(response.headers.getlist("Set-Cookie"), response.location)


@pytest.fixture
def make_app(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Callable[..., Flask]]:
    """Build apps with optional settings overrides; engines are disposed afterwards."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = create_app(settings.with_overrides(**overrides) if overrides else settings)
        apps.append(app)
        # request_finished comes after the session cookie is set (after_request is too early).
        request_finished.connect(_watch_secrets, app)
        return app

    yield factory
    for app in apps:
        request_finished.disconnect(_watch_secrets, app)
        LEAKS.collect_audit(db.bound(app).engine, request.node.nodeid)
        db.bound(app).engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The portal on the test database."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """An HTTPS test client (secure cookies need https)."""
    return app.test_client()


def https(client: FlaskClient) -> FlaskClient:
    """Requests of *client* come from 203.0.113.10 over HTTPS, as a same-origin browser's.

    The scheme follows the app's PREFERRED_URL_SCHEME (https with secure cookies); the Referer
    lets Flask-WTF's strict same-origin check pass, as it does for a real browser.
    """
    client.environ_base.update(
        {"REMOTE_ADDR": "203.0.113.10", "HTTP_REFERER": "https://localhost/"}
    )
    return client


@pytest.fixture(autouse=True)
def _https_clients(request: pytest.FixtureRequest) -> None:
    if "client" in request.fixturenames:
        https(request.getfixturevalue("client"))


# --- factories -------------------------------------------------------------------------


@pytest.fixture
def factory(app: Flask) -> Factory:
    """Factories bound to the test app."""
    return Factory(app)


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: FlaskClient, path: str = "/connexion") -> str:
    """The CSRF token of the form at *path*."""
    html = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def reset_totp_step(app: Flask, account: Account) -> None:
    """Forget the last used TOTP step so the current code can log in again (test helper)."""
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == account.id).values(totp_last_step=None))
        db.session.commit()


def login(
    client: FlaskClient,
    account: Account,
    *,
    code: str | None = None,
    password: str | None = None,
    next_url: str | None = None,
) -> Any:
    """Post the log-in form; returns the response (not followed)."""
    token = csrf_of(client)
    path = "/connexion" + (f"?next={next_url}" if next_url else "")
    return client.post(
        path,
        data={
            "csrf_token": token,
            "email": account.email,
            "password": account.password if password is None else password,
            "code": account.code() if code is None else code,
        },
    )


@pytest.fixture
def login_as(app: Flask, client: FlaskClient) -> Callable[[Account], FlaskClient]:
    """Log *account* in on the shared client (resetting its TOTP step first)."""

    def do(account: Account, on: FlaskClient | None = None) -> FlaskClient:
        c = https(on) if on is not None else client
        reset_totp_step(app, account)
        response = login(c, account)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return c

    return do


def reread(app: Flask, model: type[T], row_id: str) -> T:
    """The row of *model* with *row_id*, read afresh and detached from the session."""
    with app.app_context():
        found = db.session.get(model, row_id)
        assert found is not None, f"no {model.__name__} {row_id}"
        db.session.expunge_all()
        return found


def audit_rows(app: Flask, action: str | None = None) -> list[Any]:
    """Audit events (optionally of one action), in chain order."""
    from audit import AuditEvent

    with app.app_context():
        stmt = sa.select(AuditEvent).order_by(AuditEvent.seq)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        rows = list(db.session.execute(stmt).scalars())
        db.session.expunge_all()
        return rows
