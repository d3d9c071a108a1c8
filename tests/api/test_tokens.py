"""Personal API tokens: created after re-authentication, shown once, stored hashed, scoped,
expiring, revocable, audited."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction
from portal.accounts.models import AccountStatus, User
from portal.api import services as tokens
from portal.api.models import ApiToken
from portal.db import db, new_id, utcnow
from tests.api.conftest import assert_problem, bare_client, make_token
from tests.conftest import audit_rows, csrf_of
from tests.factories import Account, Api, World
from tests.support.services import SmtpSink, body_of

Clients = Callable[[Account], FlaskClient]
SECRET_RE = re.compile(r"filr_[A-Za-z0-9_-]{43}")


def create_through_page(client: FlaskClient, account: Account, **changes: Any) -> Any:
    """Post the creation form of /compte/jetons."""
    form: dict[str, Any] = {
        "csrf_token": csrf_of(client, "/compte/jetons"),
        "name": "Script CGPEM",
        "scopes": ["read", "deposit"],
        "lifetime_days": "30",
        "current": account.password,
        **changes,
    }
    return client.post("/compte/jetons", data=form)


def secret_in(response: Any) -> str:
    """The token shown on the creation page."""
    match = SECRET_RE.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:2000]
    return match.group(0)


def token_rows(app: Flask, user_id: str | None = None) -> list[ApiToken]:
    with app.app_context():
        stmt = sa.select(ApiToken)
        if user_id:
            stmt = stmt.where(ApiToken.user_id == user_id)
        rows = list(db.session.execute(stmt).scalars())
        for row in rows:
            _ = row.scopes  # loaded before the session closes
        db.session.expunge_all()
        return rows


def everything_stored(app: Flask) -> str:
    """Every value of every row of every table, as one text."""
    with app.app_context():
        engine = db.engine
        names = sa.inspect(engine).get_table_names()
        with engine.connect() as conn:
            return "\n".join(
                repr(tuple(row))
                for name in names
                for row in conn.exec_driver_sql(f'SELECT * FROM "{name}"')  # noqa: S608 - test
            )


def test_a_token_is_shown_once_and_only_its_digest_is_stored(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    # Given a technician logged in with password and TOTP
    browser = client_for(world.technicien_ft)
    assert "Jetons d'accès à l'API" in browser.get("/compte").get_data(as_text=True)
    assert browser.get("/compte/jetons").status_code == 200
    # When it creates a token, confirming with its password
    created = create_through_page(browser, world.technicien_ft)
    # Then the secret is on that page, and on no other
    assert created.status_code == 200
    secret = secret_in(created)
    assert created.headers["Cache-Control"] == "no-store"
    listing = browser.get("/compte/jetons").get_data(as_text=True)
    assert secret not in listing and f"filr_{secret[5:13]}…" in listing
    # And the database holds its SHA-256 digest, never the secret nor its unshown part
    (row,) = token_rows(app, world.technicien_ft.id)
    assert row.token_digest == hashlib.sha256(secret.encode()).hexdigest()
    assert row.token_prefix == secret[5:13]
    assert {str(s) for s in row.scopes} == {"read", "deposit"}
    assert row.expires_at - row.created_at == timedelta(days=30)
    stored = everything_stored(app)
    assert secret not in stored and secret[13:] not in stored
    # And its owner is told by e-mail, without the secret
    (mail,) = smtp.to(world.technicien_ft.email)
    assert "jeton" in str(mail["Subject"]) and f"filr_{secret[5:13]}" in body_of(mail)
    assert all(secret[13:] not in raw.decode("utf-8", "replace") for raw in smtp.raw)
    # And the secret opens the API
    me = Api(bare_client(app), secret).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json["id"] == world.technicien_ft.id  # type: ignore[index]
    assert me.json["token"]["scopes"] == ["deposit", "read"]  # type: ignore[index]


def test_creating_a_token_needs_the_current_password(
    app: Flask, world: World, client_for: Clients
) -> None:
    browser = client_for(world.agent62)
    response = create_through_page(browser, world.agent62, current="not my password at all")
    assert response.status_code == 200
    assert "Le mot de passe actuel est incorrect." in response.get_data(as_text=True)
    assert not SECRET_RE.search(response.get_data(as_text=True))
    assert token_rows(app) == []
    assert audit_rows(app, AuditAction.API_TOKEN_CREATED) == []


def test_creating_a_token_without_the_csrf_token_is_refused(
    app: Flask, world: World, client_for: Clients
) -> None:
    browser = client_for(world.agent62)
    response = browser.post(
        "/compte/jetons",
        data={"name": "x", "scopes": "read", "lifetime_days": "30", "current": "x"},
    )
    assert response.status_code == 400
    assert token_rows(app) == []


def test_a_token_lives_one_year_at_most(app: Flask, world: World, client_for: Clients) -> None:
    browser = client_for(world.agent62)
    # Through the page: 366 days is refused, 365 accepted
    refused = create_through_page(browser, world.agent62, lifetime_days="366")
    assert "Entre 1 et 365 jours." in refused.get_data(as_text=True)
    assert token_rows(app) == []
    secret_in(create_through_page(browser, world.agent62, lifetime_days="365"))
    (row,) = token_rows(app)
    assert row.expires_at - row.created_at == timedelta(days=365)
    # Through the service as well
    with app.app_context():
        user = db.session.get(User, world.agent62.id)
        assert user is not None
        for days in (0, 366, 10_000):
            with pytest.raises(tokens.TokenError):
                tokens.create_token(
                    db.session, user, name="x", scopes=["read"], lifetime_days=days,
                    ctx=audit.NO_CONTEXT,
                )  # fmt: skip
        with pytest.raises(tokens.TokenError):
            tokens.create_token(
                db.session, user, name="x", scopes=[], lifetime_days=1, ctx=audit.NO_CONTEXT
            )
        with pytest.raises(tokens.TokenError):
            tokens.create_token(
                db.session, user, name="x", scopes=["admin"], lifetime_days=1, ctx=audit.NO_CONTEXT
            )
        # And the database refuses a token that expires before it is created
        now = utcnow()
        db.session.add(
            ApiToken(
                id=new_id(), user_id=user.id, name="x", token_prefix="x", token_digest="0" * 64,
                created_at=now, expires_at=now - timedelta(seconds=1),
            )
        )  # fmt: skip
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()


def test_a_revoked_token_gets_401_and_creation_and_revocation_are_audited(
    app: Flask, world: World, client_for: Clients
) -> None:
    # Given a token created through the page, that works
    browser = client_for(world.agent62)
    secret = secret_in(create_through_page(browser, world.agent62))
    script = Api(bare_client(app), secret)
    assert script.get("/api/v1/me").status_code == 200
    (row,) = token_rows(app)
    # When its owner revokes it
    token = csrf_of(browser, "/compte/jetons")
    revoked = browser.post(f"/compte/jetons/{row.id}/revoquer", data={"csrf_token": token})
    assert revoked.status_code == 302
    assert "Révoqué" in browser.get("/compte/jetons").get_data(as_text=True)
    # Then the script gets 401, as problem details naming the Bearer scheme
    refused = script.get("/api/v1/me")
    assert_problem(refused, 401, "unauthorized")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    # And the trail has the creation, the revocation and the refused use, without the secret
    (created,) = audit_rows(app, AuditAction.API_TOKEN_CREATED)
    (revocation,) = audit_rows(app, AuditAction.API_TOKEN_REVOKED)
    for event in (created, revocation):
        assert event.actor_id == world.agent62.id
        assert (event.target_type, event.target_id) == ("api-token", row.id)
    assert "read" in created.details and "Script CGPEM" in created.details
    denied = audit_rows(app, AuditAction.ACCESS_DENIED)
    assert [d.target_id for d in denied] == [row.id] and "token_revoked" in denied[0].details
    for event in audit_rows(app):
        for value in vars(event).values():
            assert secret[5:] not in str(value)
    # And revoking again changes nothing
    browser.post(f"/compte/jetons/{row.id}/revoquer", data={"csrf_token": token})
    assert len(audit_rows(app, AuditAction.API_TOKEN_REVOKED)) == 1


def test_a_token_of_another_user_cannot_be_revoked(
    app: Flask, world: World, client_for: Clients
) -> None:
    make_token(app, world.agent62)
    (row,) = token_rows(app)
    colleague = client_for(world.agent62b)
    token = csrf_of(colleague, "/compte/jetons")
    response = colleague.post(f"/compte/jetons/{row.id}/revoquer", data={"csrf_token": token})
    assert response.status_code == 404
    assert token_rows(app)[0].revoked_at is None
    assert audit_rows(app, AuditAction.API_TOKEN_REVOKED) == []


def test_an_expired_token_gets_401(app: Flask, world: World) -> None:
    secret = make_token(app, world.agent62)
    with app.app_context():
        past = utcnow() - timedelta(days=2)
        db.session.execute(
            sa.update(ApiToken).values(created_at=past, expires_at=past + timedelta(days=1))
        )
        db.session.commit()
    assert_problem(Api(bare_client(app), secret).get("/api/v1/me"), 401, "unauthorized")
    assert "token_expired" in audit_rows(app, AuditAction.ACCESS_DENIED)[0].details


def test_a_token_of_a_suspended_account_gets_401(app: Flask, world: World) -> None:
    script = Api(bare_client(app), make_token(app, world.agent62))
    assert script.get("/api/v1/me").status_code == 200
    with app.app_context():
        db.session.execute(
            sa.update(User)
            .where(User.id == world.agent62.id)
            .values(status=AccountStatus.SUSPENDED)
        )
        db.session.commit()
    assert_problem(script.get("/api/v1/me"), 401, "unauthorized")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Bearer filr_" + "A" * 43,  # well formed, unknown
        "Basic " + "x" * 20,
        "",
    ],
)
def test_an_unknown_or_malformed_token_gets_401(
    app: Flask, world: World, authorization: str
) -> None:
    make_token(app, world.agent62)
    response = bare_client(app).get("/api/v1/me", headers={"Authorization": authorization})
    assert_problem(response, 401, "unauthorized")
    assert audit_rows(app, AuditAction.ACCESS_DENIED) == []  # garbage does not fill the trail


def test_the_scheme_is_case_insensitive_and_last_use_is_recorded(app: Flask, world: World) -> None:
    secret = make_token(app, world.agent62)
    assert token_rows(app)[0].last_used_at is None
    response = bare_client(app).get("/api/v1/me", headers={"Authorization": f"bearer {secret}"})
    assert response.status_code == 200
    assert token_rows(app)[0].last_used_at is not None


def test_a_read_token_cannot_deposit_and_a_deposit_token_cannot_read(
    app: Flask, world: World, api_for: Callable[..., Api]
) -> None:
    reader = api_for(world.agent62, scopes=["read"])
    depositor = api_for(world.agent62, scopes=["deposit"])
    body = {"departement": "62", "category": "document", "title": "t", "recipients": [world.ft62]}
    refused = reader.post("/api/v1/deposits", json=body)
    assert_problem(refused, 403, "insufficient_scope")
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert 'scope="deposit"' in refused.headers["WWW-Authenticate"]
    assert_problem(depositor.get("/api/v1/deposits"), 403, "insufficient_scope")
    # Both may say who they are; the depositor's draft is made, the reader's is not
    assert reader.get("/api/v1/me").status_code == 200
    assert depositor.post("/api/v1/deposits", json=body).status_code == 201
    assert len(audit_rows(app, AuditAction.DEPOSIT_CREATED)) == 1


def test_the_session_cookie_alone_does_not_open_the_api(
    app: Flask, world: World, client_for: Clients
) -> None:
    # Given a browser logged in with password and TOTP (the web pages open)
    browser = client_for(world.agent62)
    assert browser.get("/depots").status_code == 200
    # When it calls the API with its cookie only, even with a valid CSRF token
    headers = {"X-CSRFToken": csrf_of(browser, "/")}
    body = {"departement": "62", "category": "document", "title": "t", "recipients": [world.ft62]}
    responses = [
        browser.get("/api/v1/me"),
        browser.get("/api/v1/deposits"),
        browser.post("/api/v1/deposits", json=body, headers=headers),
        browser.post("/api/v1/deposits", json=body),
    ]
    # Then every call is refused as unauthenticated, and nothing was created
    for response in responses:
        assert_problem(response, 401, "unauthorized")
    assert audit_rows(app, AuditAction.DEPOSIT_CREATED) == []
