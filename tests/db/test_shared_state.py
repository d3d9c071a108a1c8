"""State that several servers share: throttle counters (database or Redis), constraints."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask

from portal.db import db
from portal.orgs.models import Organisation
from tests.conftest import login
from tests.factories import Account, Factory
from tests.support.services import REDIS_URL, port_open, unavailable


def _server(make_app: Callable[..., Flask], **overrides: object) -> Flask:
    # A second create_app has its own engine and connection pool: as separate as two servers.
    return make_app(**overrides)


def _client(app: Flask, ip: str):  # type: ignore[no-untyped-def]
    c = app.test_client()
    c.environ_base.update({"HTTP_REFERER": "https://localhost/", "REMOTE_ADDR": ip})
    return c


@pytest.mark.parametrize("store", ["database", "redis"])
def test_throttle_counters_are_shared_between_two_servers(
    make_app: Callable[..., Flask], factory: Factory, store: str, backend: str
) -> None:
    overrides: dict[str, object] = {}
    if store == "redis":
        if not port_open("127.0.0.1", 6379):
            unavailable("Redis on 127.0.0.1:6379")
        overrides["redis_url"] = REDIS_URL
    server_a, server_b = _server(make_app, **overrides), _server(make_app, **overrides)
    account = factory.user(factory.org(), email=f"shared-{uuid.uuid4().hex[:8]}@example.org")
    wrong = Account(account.id, account.email, "not the password at all", account.totp_secret, "")
    # Given three failures on server A and two on server B, from different addresses
    for _ in range(3):
        login(_client(server_a, "198.51.100.1"), wrong)
    for _ in range(2):
        login(_client(server_b, "198.51.100.2"), wrong)
    # Then the account is throttled on both servers
    assert login(_client(server_a, "198.51.100.3"), account).status_code == 429
    assert login(_client(server_b, "198.51.100.4"), account).status_code == 429


def test_database_refuses_a_departement_organisation_without_departement(app: Flask) -> None:
    with app.app_context():
        db.session.add(Organisation(kind="departement", name="Sans code", departement_code=None))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        db.session.add(Organisation(kind="inconnu", name="Type inconnu", departement_code=None))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()


def test_database_refuses_an_active_account_without_password(app: Flask, factory: Factory) -> None:
    from portal.accounts.models import User

    org = factory.org()
    with app.app_context():
        db.session.add(
            User(organisation_id=org, email="nopw@example.org", full_name="No Pw", status="active")
        )
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
