"""A TOTP secret waiting for its first code is sealed in the session row, never kept in clear:
not in the database file, its WAL, the PostgreSQL table or a dump, abandoned or confirmed."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.accounts.models import AccountStatus, TokenPurpose, User
from portal.auth import services as auth
from portal.auth.models import ServerSession
from portal.container import services
from portal.db import db
from tests.conftest import csrf_of
from tests.factories import Account, Factory

LoginAs = Callable[[Account], FlaskClient]
SECRET_RE = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7]+)<')


def _browser(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base.update(
        {"REMOTE_ADDR": "203.0.113.40", "HTTP_REFERER": "https://localhost/"}
    )
    return client


def _shown_secret(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200
    match = SECRET_RE.search(page.get_data(as_text=True))
    assert match, f"no secret on {path}"
    return match.group(1)


def _forms_of(secret: str) -> dict[str, bytes]:
    """Every spelling under which *secret* could sit in a database page."""
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return {
        "base32": secret.encode(),
        "base32 lower-case": secret.lower().encode(),
        "hex of the base32 text": secret.encode().hex().encode(),
        "raw bytes": raw,
        "hex of the raw bytes": raw.hex().encode(),
        "upper hex of the raw bytes": raw.hex().upper().encode(),
    }


def _sessions_data(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.execute(sa.select(ServerSession.data)).scalars())


def _database_images(app: Flask, database_url: str) -> dict[str, bytes]:
    """What a thief of the database would read: files on SQLite, the table and a dump else."""
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        path = Path(url.database)
        wal = path.with_name(path.name + "-wal")
        # The embedded database runs in WAL mode: the log holds recent pages next to the file.
        assert wal.exists()
        return {"SQLite file": path.read_bytes(), "SQLite WAL": wal.read_bytes()}
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed to read the PostgreSQL database as a thief would"
    libpq_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = subprocess.run(
        [pg_dump, "--no-owner", "--dbname", libpq_url], check=True, capture_output=True
    ).stdout
    table = "\n".join(_sessions_data(app)).encode()
    return {"server_session table": table, "pg_dump": dump}


def _assert_nowhere(app: Flask, database_url: str, secret: str) -> None:
    images = _database_images(app, database_url)
    found = [
        f"{form} in {where}"
        for where, image in images.items()
        for form, needle in _forms_of(secret).items()
        if needle in image
    ]
    assert not found, found


def _issue(app: Flask, account: Account, purpose: TokenPurpose) -> str:
    with app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        raw = auth.issue_token(db.session, user, purpose)
        db.session.commit()
        return raw


def test_an_activation_abandoned_on_its_qr_code_page_leaves_the_secret_nowhere_in_the_database(
    app: Flask, factory: Factory, database_url: str
) -> None:
    # Given a newcomer who chose a password and reached the QR code page
    account = factory.user(factory.org(), status=AccountStatus.PENDING)
    newcomer = _browser(app)
    link = "/activation/" + _issue(app, account, TokenPurpose.ACTIVATION)
    password = "une phrase de passe pour activer 2026"
    chosen = newcomer.post(
        link,
        data={
            "csrf_token": csrf_of(newcomer, link),
            "password": password,
            "confirmation": password,
        },
    )
    assert chosen.status_code == 302
    secret = _shown_secret(newcomer, "/activation/authentification")
    # When the newcomer leaves the page there (the session row keeps the pending enrolment)
    assert any('"enrol"' in data for data in _sessions_data(app))
    assert _shown_secret(newcomer, "/activation/authentification") == secret
    # Then the secret is in no form in the file, the WAL, the table or a dump
    _assert_nowhere(app, database_url, secret)


def test_an_mfa_enrolment_link_abandoned_on_its_qr_code_page_leaves_the_secret_nowhere(
    app: Flask, factory: Factory, database_url: str
) -> None:
    # Given the holder of an MFA enrolment link who proved the password and saw the QR code
    account = factory.user(factory.org())
    holder = _browser(app)
    link = "/mfa/enrolement/" + _issue(app, account, TokenPurpose.MFA_ENROLMENT)
    proved = holder.post(
        link, data={"csrf_token": csrf_of(holder, link), "password": account.password}
    )
    assert proved.status_code == 302
    secret = _shown_secret(holder, "/activation/authentification")
    # When the page is abandoned, then the new secret is nowhere in the database
    _assert_nowhere(app, database_url, secret)


def test_a_reenrolment_keeps_its_secret_sealed_while_pending_and_drops_it_once_confirmed(
    app: Flask, factory: Factory, database_url: str, login_as: LoginAs
) -> None:
    # Given a logged-in user who opened the page of a new authenticator app
    account = factory.user(factory.org())
    client = login_as(account)
    secret = _shown_secret(client, "/compte/authentification")
    assert _shown_secret(client, "/compte/authentification") == secret  # kept while pending
    # Then, pending, the secret is in no form in the database
    _assert_nowhere(app, database_url, secret)
    # When the new app's code is confirmed
    done = client.post(
        "/compte/authentification",
        data={
            "csrf_token": csrf_of(client, "/compte/authentification"),
            "current": account.password,
            "code": pyotp.TOTP(secret).now(),
        },
    )
    assert done.status_code == 302
    # Then it is the account's sealed secret, the session forgets it, and no page holds it
    assert not any("reenrol_secret" in data for data in _sessions_data(app))
    with app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None and user.totp_secret is not None
        assert services().secret_box.open(user.totp_secret, user.id) == secret
    _assert_nowhere(app, database_url, secret)


def test_a_pending_secret_opens_only_for_the_account_it_was_sealed_for(app: Flask) -> None:
    with app.app_context():
        svc = services()
        secret, sealed = auth.new_pending_totp_secret(svc, "a" * 32)
        assert secret not in sealed
        assert auth.open_pending_totp_secret(svc, sealed, "a" * 32) == secret
        # Another account, an enrolled secret's binding, a clear value: none is trusted
        assert auth.open_pending_totp_secret(svc, sealed, "b" * 32) is None
        enrolled = svc.secret_box.seal(secret, "a" * 32)
        assert auth.open_pending_totp_secret(svc, enrolled, "a" * 32) is None
        assert auth.open_pending_totp_secret(svc, secret, "a" * 32) is None
        assert auth.open_pending_totp_secret(svc, None, "a" * 32) is None


@pytest.mark.parametrize("value", ["v1:", "v1:!!!!", "v1:" + "A" * 8])
def test_a_damaged_pending_secret_is_refused_not_an_error(app: Flask, value: str) -> None:
    with app.app_context():
        assert auth.open_pending_totp_secret(services(), value, "a" * 32) is None
