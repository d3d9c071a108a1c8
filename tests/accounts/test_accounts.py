"""Account life cycle: creation by the account manager, activation, reset, MFA reset."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.accounts.models import AccountStatus, Role, User, UserToken
from portal.db import db, utcnow
from tests.conftest import audit_rows, csrf_of, login
from tests.factories import STRONG_PASSWORD, Account, Factory
from tests.support.services import SmtpSink, body_of

LINK_RE = re.compile(r"https://filr\.test(/\S+)")


def _link(smtp: SmtpSink, to: str) -> str:
    match = LINK_RE.search(body_of(smtp.last_to(to)))
    assert match, "no link in the mail"
    return match.group(1)


def _user(app: Flask, email: str) -> User:
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.email == email)).scalar_one()
        db.session.expunge_all()
        return user


def _create_via_manager(client: FlaskClient, email: str, roles: list[str]) -> None:
    token = csrf_of(client, "/gestion/comptes/nouveau")
    response = client.post(
        "/gestion/comptes/nouveau",
        data={
            "csrf_token": token,
            "full_name": "Camille Nouvelle",
            "email": email,
            "roles": roles,
            "function": "instructeur_rsa",
            "granted_on": "2026-01-05",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:800]


def _activate(app: Flask, smtp: SmtpSink, email: str, password: str) -> tuple[FlaskClient, str]:
    newcomer = app.test_client()
    newcomer.environ_base.update(
        {"HTTP_REFERER": "https://localhost/", "REMOTE_ADDR": "203.0.113.20"}
    )
    link = _link(smtp, email)
    token = csrf_of(newcomer, link)
    response = newcomer.post(
        link, data={"csrf_token": token, "password": password, "confirmation": password}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:800]
    page = newcomer.get("/activation/authentification").get_data(as_text=True)
    secret = re.search(r'id="totp-secret"[^>]*>([A-Z2-7]+)<', page)
    assert secret and "<svg" in page
    token = csrf_of(newcomer, "/activation/authentification")
    done = newcomer.post(
        "/activation/authentification",
        data={"csrf_token": token, "code": pyotp.TOTP(secret.group(1)).now()},
    )
    assert done.status_code == 200
    codes = re.findall(
        r"<code>([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})</code>",
        done.get_data(as_text=True),
    )
    assert len(codes) == 10
    return newcomer, secret.group(1)


def test_manager_creates_account_and_newcomer_activates_with_password_and_totp(
    app: Flask, client: FlaskClient, factory: Factory, smtp: SmtpSink, login_as
) -> None:
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    login_as(manager)
    _create_via_manager(client, "camille@example.org", ["agent", "technicien"])
    user = _user(app, "camille@example.org")
    assert user.status == AccountStatus.PENDING
    # The activation mail says nothing but the invitation and a single-use link
    mail = smtp.last_to("camille@example.org")
    assert "72 heures" in body_of(mail)
    newcomer, secret = _activate(app, smtp, "camille@example.org", STRONG_PASSWORD)
    # Then the newcomer is logged in and active, with argon2id storage
    assert newcomer.get("/").status_code == 200
    user = _user(app, "camille@example.org")
    assert user.status == AccountStatus.ACTIVE
    assert user.password_hash and user.password_hash.startswith("$argon2id$")
    assert secret not in (user.totp_secret or "")  # sealed, never stored in clear
    actions = [r.action for r in audit_rows(app)]
    for expected in (
        AuditAction.ACCOUNT_CREATED,
        AuditAction.ACCOUNT_ACTIVATION_SENT,
        AuditAction.AUTH_MFA_ENROLLED,
        AuditAction.ACCOUNT_ACTIVATED,
    ):
        assert expected in actions


def test_activation_link_works_once(
    app: Flask, client: FlaskClient, factory: Factory, smtp: SmtpSink, login_as
) -> None:
    manager = factory.user(factory.org(), roles=(Role.GESTIONNAIRE,))
    login_as(manager)
    _create_via_manager(client, "once@example.org", ["agent"])
    link = _link(smtp, "once@example.org")
    _activate(app, smtp, "once@example.org", STRONG_PASSWORD)
    other = app.test_client()
    other.environ_base.update({"HTTP_REFERER": "https://localhost/"})
    assert other.get(link).status_code == 404


def test_activation_link_expires_after_72_hours(
    app: Flask, client: FlaskClient, factory: Factory, smtp: SmtpSink, login_as
) -> None:
    manager = factory.user(factory.org(), roles=(Role.GESTIONNAIRE,))
    login_as(manager)
    _create_via_manager(client, "late@example.org", ["agent"])
    link = _link(smtp, "late@example.org")
    with app.app_context():
        db.session.execute(
            sa.update(UserToken).values(
                created_at=utcnow() - timedelta(hours=73), expires_at=utcnow() - timedelta(hours=1)
            )
        )
        db.session.commit()
    assert app.test_client().get(link, base_url="https://localhost").status_code == 404


def test_activation_refuses_weak_password_with_french_messages(
    app: Flask, client: FlaskClient, factory: Factory, smtp: SmtpSink, login_as
) -> None:
    manager = factory.user(factory.org(), roles=(Role.GESTIONNAIRE,))
    login_as(manager)
    _create_via_manager(client, "weak@example.org", ["agent"])
    newcomer = app.test_client()
    newcomer.environ_base.update({"HTTP_REFERER": "https://localhost/"})
    link = _link(smtp, "weak@example.org")
    token = csrf_of(newcomer, link)
    response = newcomer.post(
        link,
        data={
            "csrf_token": token,
            "password": "motdepasse2024!",
            "confirmation": "motdepasse2024!",
        },
    )
    assert response.status_code == 200
    assert "trop courant" in response.get_data(as_text=True)
    assert _user(app, "weak@example.org").password_hash is None


def test_password_reset_by_mail_keeps_mfa_and_works_once(
    app: Flask, client: FlaskClient, factory: Factory, smtp: SmtpSink
) -> None:
    account = factory.user(factory.org())
    token = csrf_of(client, "/mot-de-passe/oubli")
    client.post("/mot-de-passe/oubli", data={"csrf_token": token, "email": account.email})
    link = _link(smtp, account.email)
    new_password = "une toute nouvelle phrase secrète"
    token = csrf_of(client, link)
    response = client.post(
        link, data={"csrf_token": token, "password": new_password, "confirmation": new_password}
    )
    assert response.status_code == 302
    assert client.get(link).status_code == 404  # single use
    # The new password alone is not enough: the TOTP is still required
    changed = Account(account.id, account.email, new_password, account.totp_secret, account.org_id)
    assert login(client, changed, code="").status_code == 200
    assert login(client, changed).status_code == 302
    assert audit_rows(app, AuditAction.AUTH_PASSWORD_RESET)


def test_password_reset_answer_does_not_reveal_whether_the_account_exists(
    client: FlaskClient, factory: Factory, smtp: SmtpSink
) -> None:
    account = factory.user(factory.org())
    answers = []
    for email in (account.email, "nobody@example.org"):
        token = csrf_of(client, "/mot-de-passe/oubli")
        r = client.post(
            "/mot-de-passe/oubli", data={"csrf_token": token, "email": email}, follow_redirects=True
        )
        answers.append(re.sub(r'value="[^"]+"|[0-9a-f]{16}', "", r.get_data(as_text=True)))
    assert answers[0] == answers[1]
    assert smtp.to(account.email) and not smtp.to("nobody@example.org")


def test_password_reset_link_expires_after_30_minutes(
    app: Flask, client: FlaskClient, factory: Factory, smtp: SmtpSink
) -> None:
    account = factory.user(factory.org())
    token = csrf_of(client, "/mot-de-passe/oubli")
    client.post("/mot-de-passe/oubli", data={"csrf_token": token, "email": account.email})
    link = _link(smtp, account.email)
    with app.app_context():
        row = db.session.execute(sa.select(UserToken)).scalar_one()
        assert timedelta(minutes=29) < row.expires_at - row.created_at <= timedelta(minutes=30)
        db.session.execute(
            sa.update(UserToken).values(
                created_at=utcnow() - timedelta(minutes=31),
                expires_at=utcnow() - timedelta(minutes=1),
            )
        )
        db.session.commit()
    assert client.get(link).status_code == 404


def test_mfa_reset_by_manager_notifies_user_and_requires_new_enrolment(
    app: Flask, client: FlaskClient, factory: Factory, smtp: SmtpSink, login_as
) -> None:
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,), name="Gérante Compte")
    account = factory.user(org)
    login_as(manager)
    token = csrf_of(client, f"/gestion/comptes/{account.id}")
    r = client.post(f"/gestion/comptes/{account.id}/reinitialiser-mfa", data={"csrf_token": token})
    assert r.status_code == 302
    mail = body_of(smtp.last_to(account.email))
    assert "Gérante Compte" in mail and "réinitialisé" in mail
    # The old authenticator no longer works
    user_client = app.test_client()
    user_client.environ_base.update({"HTTP_REFERER": "https://localhost/"})
    assert login(user_client, account).status_code == 200
    # The link asks for the password, then enrols a new authenticator
    link = _link(smtp, account.email)
    token = csrf_of(user_client, link)
    assert (
        user_client.post(
            link, data={"csrf_token": token, "password": "wrong password here"}
        ).status_code
        == 200
    )
    r = user_client.post(link, data={"csrf_token": token, "password": account.password})
    assert r.status_code == 302
    page = user_client.get("/activation/authentification").get_data(as_text=True)
    secret = re.search(r'id="totp-secret"[^>]*>([A-Z2-7]+)<', page)
    assert secret
    token = csrf_of(user_client, "/activation/authentification")
    done = user_client.post(
        "/activation/authentification",
        data={"csrf_token": token, "code": pyotp.TOTP(secret.group(1)).now()},
    )
    assert done.status_code == 200
    assert user_client.get("/").status_code == 200
    assert audit_rows(app, AuditAction.AUTH_MFA_RESET)[0].target_id == account.id


def test_manager_suspends_reactivates_and_revokes_with_audit(
    app: Flask, client: FlaskClient, factory: Factory, login_as
) -> None:
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    account = factory.user(org)
    login_as(manager)
    for action, status in (
        ("suspendre", "suspended"),
        ("reactiver", "active"),
        ("revoquer", "revoked"),
    ):
        token = csrf_of(client, f"/gestion/comptes/{account.id}")
        assert (
            client.post(
                f"/gestion/comptes/{account.id}/{action}", data={"csrf_token": token}
            ).status_code
            == 302
        )
        assert _user(app, account.email).status == status
    for action in (
        AuditAction.ACCOUNT_SUSPENDED,
        AuditAction.ACCOUNT_REACTIVATED,
        AuditAction.ACCOUNT_REVOKED,
    ):
        row = audit_rows(app, action)[0]
        assert row.actor_id == manager.id and row.target_id == account.id
        assert row.source_ip == "203.0.113.10" and row.request_id and row.user_agent


def test_manager_cannot_manage_itself_or_create_platform_roles(
    app: Flask, client: FlaskClient, factory: Factory, login_as
) -> None:
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    login_as(manager)
    assert client.get(f"/gestion/comptes/{manager.id}").status_code == 404
    token = csrf_of(client, "/gestion/comptes/nouveau")
    r = client.post(
        "/gestion/comptes/nouveau",
        data={
            "csrf_token": token,
            "full_name": "Root",
            "email": "root@example.org",
            "roles": ["admin"],
        },
    )
    assert r.status_code == 200
    with app.app_context():
        assert (
            db.session.execute(sa.select(User).where(User.email == "root@example.org")).first()
            is None
        )


def test_every_audit_row_of_a_login_carries_time_actor_org_ip_agent_request_and_outcome(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 test"
    login(client, account, password="wrong password for this")
    login(client, account)
    client.post("/deconnexion", data={"csrf_token": csrf_of(client, "/")})
    rows = audit_rows(app)
    assert [r.action for r in rows] == [
        AuditAction.AUTH_LOGIN_FAILURE,
        AuditAction.AUTH_MFA_SUCCESS,
        AuditAction.AUTH_LOGIN_SUCCESS,
        AuditAction.AUTH_LOGOUT,
    ]
    for row in rows:
        assert row.occurred_at.tzinfo is not None
        assert row.actor_id == account.id and row.actor_org_id == account.org_id
        assert row.source_ip == "203.0.113.10"
        assert row.user_agent == "Mozilla/5.0 test"
        assert row.request_id and len(row.request_id) == 16
        assert row.outcome in ("success", "failure")
    assert rows[0].outcome == "failure"
    # No secret of the user in any row
    text = " ".join(f"{r.details} {r.user_agent}" for r in rows)
    assert account.password not in text and account.email not in text
