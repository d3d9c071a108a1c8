"""Server-side sessions: fixation, logout replay, timeouts, revocation, closing a session."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from audit import AuditAction
from portal.accounts.models import AccountStatus, Role, User
from portal.auth.models import ServerSession
from portal.db import db, utcnow
from tests.conftest import audit_rows, csrf_of, https, login
from tests.factories import Account, Factory

COOKIE = "__Host-filr"
NEW_PASSWORD = "lilac harbour compass 7319 !"
HANDLE_RE = re.compile(r"/compte/sessions/([0-9a-f]{16})/fermer")

LoginAs = Callable[..., FlaskClient]


# --- helpers ---------------------------------------------------------------------------


def token_of(client: FlaskClient) -> str | None:
    """The session token the browser holds (None: no cookie)."""
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def digest(token: str) -> str:
    """The primary key of the `server_session` row of *token* (sha256 of the cookie value)."""
    return hashlib.sha256(token.encode()).hexdigest()


def session_row(app: Flask, token: str) -> ServerSession | None:
    """The `server_session` row behind *token*, detached."""
    with app.app_context():
        row = db.session.get(ServerSession, digest(token))
        db.session.expunge_all()
        return row


def session_rows_of(app: Flask, user_id: str) -> list[ServerSession]:
    """Every `server_session` row bound to *user_id*, detached."""
    with app.app_context():
        rows = list(
            db.session.execute(
                sa.select(ServerSession).where(ServerSession.user_id == user_id)
            ).scalars()
        )
        db.session.expunge_all()
        return rows


def age_session(
    app: Flask, token: str, *, idle: timedelta | None = None, age: timedelta | None = None
) -> None:
    """Pretend the session of *token* was last used *idle* ago and created *age* ago."""
    now = utcnow()
    values = {}
    if idle is not None:
        values["last_seen_at"] = now - idle
    if age is not None:
        values["created_at"] = now - age
    with app.app_context():
        result = db.session.execute(
            sa.update(ServerSession).where(ServerSession.id == digest(token)).values(**values)
        )
        assert result.rowcount == 1  # type: ignore[attr-defined]
        db.session.commit()


def user_row(app: Flask, user_id: str) -> User:
    """The account *user_id*, detached."""
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        db.session.expunge_all()
        return user


def replay(app: Flask, token: str) -> FlaskClient:
    """A fresh browser that presents *token* as its session cookie (an attacker's copy)."""
    other = https(app.test_client())
    other.set_cookie(COOKIE, token)
    return other


def assert_sent_to_login(response: TestResponse) -> None:
    """The response is the gate's redirect to the log-in page."""
    assert response.status_code == 302
    location = response.headers.get("Location", "")
    assert location.startswith("/connexion"), location


# --- session fixation ------------------------------------------------------------------


def test_log_in_issues_a_new_session_id_and_the_pre_login_one_dies(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    # Given a visitor holding a pre-login session (the log-in form's CSRF token lives in it),
    # e.g. a cookie planted by an attacker who kept a copy
    account = factory.user(factory.org())
    client.get("/connexion")
    before = token_of(client)
    assert before is not None
    pre_login = session_row(app, before)
    assert pre_login is not None and pre_login.user_id is None
    # When the visitor logs in with password and code
    assert login(client, account).status_code == 302
    # Then the browser holds a new token bound to the account
    after = token_of(client)
    assert after is not None and after != before
    row = session_row(app, after)
    assert row is not None and row.user_id == account.id and row.mfa_verified_at is not None
    # And the pre-login token maps to nothing and opens nothing
    assert session_row(app, before) is None
    assert_sent_to_login(replay(app, before).get("/"))
    assert client.get("/").status_code == 200


def test_a_session_token_invented_by_an_attacker_is_never_adopted(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    # Given a browser carrying a token the server never issued
    account = factory.user(factory.org())
    planted = "attacker-chosen-token-0123456789abcdef"
    client.set_cookie(COOKIE, planted)
    # When the victim logs in in that browser
    assert login(client, account).status_code == 302
    # Then the server issued its own token, and the planted one opens nothing
    assert token_of(client) not in (None, planted)
    assert session_row(app, planted) is None
    assert_sent_to_login(replay(app, planted).get("/"))


def test_the_database_holds_only_a_digest_of_the_session_token(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    account = factory.user(factory.org())
    client = login_as(account)
    token = token_of(client)
    assert token is not None and len(token) >= 32
    rows = session_rows_of(app, account.id)
    assert [r.id for r in rows] == [digest(token)]
    assert token not in rows[0].data


# --- logout ----------------------------------------------------------------------------


def test_a_cookie_kept_after_logout_opens_nothing(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given a logged-in user whose cookie was copied (shared computer, stolen cookie jar)
    account = factory.user(factory.org())
    client = login_as(account)
    kept = token_of(client)
    assert kept is not None
    # When the user logs out
    response = client.post("/deconnexion", data={"csrf_token": csrf_of(client, "/")})
    assert response.status_code == 302
    # Then the server forgot the session; the browser holds at most a new anonymous one
    # (it carries the "you are logged out" message)
    assert session_row(app, kept) is None
    assert session_rows_of(app, account.id) == []
    now_held = token_of(client)
    assert now_held != kept
    if now_held is not None:
        anonymous = session_row(app, now_held)
        assert anonymous is not None and anonymous.user_id is None
    # And replaying the old cookie leads to the log-in page
    assert_sent_to_login(replay(app, kept).get("/"))
    assert len(audit_rows(app, AuditAction.AUTH_LOGOUT)) == 1


# --- timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle", "age"),
    [
        pytest.param(timedelta(minutes=15, seconds=30), timedelta(minutes=16), id="idle-15min"),
        pytest.param(timedelta(seconds=1), timedelta(hours=12, minutes=1), id="absolute-12h"),
    ],
)
def test_a_session_past_a_timeout_is_ended_and_audited(
    app: Flask, login_as: LoginAs, factory: Factory, idle: timedelta, age: timedelta
) -> None:
    # Given a logged-in user whose session went past the idle or absolute limit
    account = factory.user(factory.org())
    client = login_as(account)
    token = token_of(client)
    assert token is not None
    age_session(app, token, idle=idle, age=age)
    # When the next request arrives
    response = client.get("/compte")
    # Then it is sent to log in, the row is gone, the cookie cleared, and the expiry audited
    assert_sent_to_login(response)
    assert session_row(app, token) is None
    assert token_of(client) is None
    expired = audit_rows(app, AuditAction.AUTH_SESSION_EXPIRED)
    assert [row.actor_id for row in expired] == [account.id]


@pytest.mark.parametrize(
    ("idle", "age"),
    [
        pytest.param(timedelta(minutes=14), timedelta(minutes=14), id="idle-14min"),
        pytest.param(timedelta(seconds=1), timedelta(hours=11, minutes=59), id="age-11h59"),
    ],
)
def test_a_session_just_under_the_limits_still_works(
    app: Flask, login_as: LoginAs, factory: Factory, idle: timedelta, age: timedelta
) -> None:
    account = factory.user(factory.org())
    client = login_as(account)
    token = token_of(client)
    assert token is not None
    age_session(app, token, idle=idle, age=age)
    assert client.get("/compte").status_code == 200
    assert audit_rows(app, AuditAction.AUTH_SESSION_EXPIRED) == []


def test_activity_restarts_the_idle_clock_but_not_the_absolute_one(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given a session idle for 14 minutes and 11 hours old
    account = factory.user(factory.org())
    client = login_as(account)
    token = token_of(client)
    assert token is not None
    age_session(app, token, idle=timedelta(minutes=14), age=timedelta(hours=11))
    # When the user clicks
    assert client.get("/").status_code == 200
    # Then the idle clock restarted, the absolute one did not
    row = session_row(app, token)
    assert row is not None
    assert utcnow() - row.last_seen_at < timedelta(minutes=1)
    assert utcnow() - row.created_at > timedelta(hours=10, minutes=59)


def test_an_expired_session_is_audited_even_when_the_next_request_is_a_form_post(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given a user who leaves a form open past the idle limit
    account = factory.user(factory.org())
    client = login_as(account)
    token = csrf_of(client, "/compte")
    kept = token_of(client)
    assert kept is not None
    age_session(app, kept, idle=timedelta(minutes=20), age=timedelta(minutes=20))
    # When the form is finally submitted (its CSRF token died with the session)
    response = client.post(
        "/compte/mot-de-passe",
        data={
            "csrf_token": token,
            "current": account.password,
            "password": NEW_PASSWORD,
            "confirmation": NEW_PASSWORD,
        },
    )
    # Then nothing is changed, the session is gone, and its expiry is still audited
    assert response.status_code in (302, 400)
    assert session_row(app, kept) is None
    assert audit_rows(app, AuditAction.AUTH_PASSWORD_CHANGED) == []
    assert [row.actor_id for row in audit_rows(app, AuditAction.AUTH_SESSION_EXPIRED)] == [
        account.id
    ]


# --- revocation ------------------------------------------------------------------------


def _manager_and_member(factory: Factory) -> tuple[Account, Account]:
    org = factory.org()
    return factory.user(org, roles=(Role.GESTIONNAIRE,)), factory.user(org)


def _act(manager_client: FlaskClient, user_id: str, action: str) -> None:
    token = csrf_of(manager_client, f"/gestion/comptes/{user_id}")
    response = manager_client.post(
        f"/gestion/comptes/{user_id}/{action}", data={"csrf_token": token}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/gestion/comptes/{user_id}"


def test_suspension_by_the_account_manager_ends_the_sessions_at_once(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given a member logged in on two browsers, and the organisation's account manager
    manager, member = _manager_and_member(factory)
    office = login_as(member, on=app.test_client())
    home = login_as(member, on=app.test_client())
    assert office.get("/").status_code == 200
    manager_client = login_as(manager)
    # When the manager suspends the member
    _act(manager_client, member.id, "suspendre")
    # Then the member's sessions are gone from the server, not merely refused
    assert user_row(app, member.id).status == AccountStatus.SUSPENDED
    assert session_rows_of(app, member.id) == []
    assert_sent_to_login(office.get("/"))
    # And lifting the suspension does not bring the old sessions back
    _act(manager_client, member.id, "reactiver")
    assert user_row(app, member.id).status == AccountStatus.ACTIVE
    assert_sent_to_login(home.get("/"))
    # While the manager's own session is untouched
    assert manager_client.get("/gestion/comptes").status_code == 200


@pytest.mark.parametrize(
    ("action", "status"),
    [("revoquer", AccountStatus.REVOKED), ("reinitialiser-mfa", AccountStatus.ACTIVE)],
)
def test_revocation_and_mfa_reset_by_the_account_manager_end_the_sessions_at_once(
    app: Flask, login_as: LoginAs, factory: Factory, action: str, status: AccountStatus
) -> None:
    # Given a logged-in member
    manager, member = _manager_and_member(factory)
    member_client = login_as(member, on=app.test_client())
    kept = token_of(member_client)
    assert kept is not None
    # When the account manager revokes the account (or resets its second factor)
    _act(login_as(manager), member.id, action)
    # Then the member's session ends now
    assert user_row(app, member.id).status == status
    assert session_rows_of(app, member.id) == []
    assert_sent_to_login(member_client.get("/"))
    assert_sent_to_login(replay(app, kept).get("/"))


def test_password_change_ends_the_other_sessions_and_renews_the_current_id(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given a user logged in on two browsers, and a colleague logged in elsewhere
    org = factory.org()
    account, colleague = factory.user(org), factory.user(org)
    forgotten = login_as(account, on=app.test_client())
    colleague_client = login_as(colleague, on=app.test_client())
    current = login_as(account)
    before = token_of(current)
    assert before is not None
    # When the user changes the password in one of them
    response = current.post(
        "/compte/mot-de-passe",
        data={
            "csrf_token": csrf_of(current, "/compte"),
            "current": account.password,
            "password": NEW_PASSWORD,
            "confirmation": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/compte"
    # Then the current browser continues with a new session id, the old id is dead
    after = token_of(current)
    assert after is not None and after != before
    assert session_row(app, before) is None
    assert current.get("/compte").status_code == 200
    assert [r.id for r in session_rows_of(app, account.id)] == [digest(after)]
    # And the other browser of the account is logged out
    assert_sent_to_login(forgotten.get("/"))
    # But nobody else is
    assert colleague_client.get("/").status_code == 200
    assert len(audit_rows(app, AuditAction.AUTH_PASSWORD_CHANGED)) == 1


# --- closing a session from "mon compte" -----------------------------------------------


def test_a_user_closes_one_of_their_other_sessions_from_mon_compte(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given a user logged in on a laptop and on a forgotten computer
    account = factory.user(factory.org())
    forgotten = login_as(account, on=app.test_client())
    forgotten_token = token_of(forgotten)
    assert forgotten_token is not None
    laptop = login_as(account)
    page = laptop.get("/compte").get_data(as_text=True)
    # The page offers to close the other session only, by a short handle
    assert HANDLE_RE.findall(page) == [digest(forgotten_token)[:16]]
    # When the user closes it
    response = laptop.post(
        f"/compte/sessions/{digest(forgotten_token)[:16]}/fermer",
        data={"csrf_token": csrf_of(laptop, "/compte")},
    )
    # Then that session ends, and the laptop's continues
    assert response.status_code == 302
    assert response.headers["Location"] == "/compte"
    assert session_row(app, forgotten_token) is None
    assert_sent_to_login(forgotten.get("/"))
    assert laptop.get("/compte").status_code == 200
    revoked = audit_rows(app, AuditAction.AUTH_SESSION_REVOKED)
    assert [(r.actor_id, r.target_id) for r in revoked] == [
        (account.id, digest(forgotten_token)[:16])
    ]


def test_the_handle_of_another_users_session_gives_404_and_closes_nothing(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given two users of the same organisation, both logged in
    org = factory.org()
    alice, bob = factory.user(org), factory.user(org)
    bob_client = login_as(bob, on=app.test_client())
    bob_token = token_of(bob_client)
    assert bob_token is not None
    alice_client = login_as(alice)
    # When Alice posts the handle of Bob's session
    response = alice_client.post(
        f"/compte/sessions/{digest(bob_token)[:16]}/fermer",
        data={"csrf_token": csrf_of(alice_client, "/compte")},
    )
    # Then the answer is "not found" and Bob's session lives on
    assert response.status_code == 404
    assert session_row(app, bob_token) is not None
    assert bob_client.get("/").status_code == 200
    assert audit_rows(app, AuditAction.AUTH_SESSION_REVOKED) == []
