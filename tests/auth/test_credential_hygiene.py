"""Credentials that must not outlive a password change, a reset or an MFA reset; the MFA
enrolment link is no password oracle; a mail outage does not reveal which accounts exist."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import audit
from audit import AuditAction
from portal.accounts.models import Role, TokenPurpose, User, UserToken
from portal.api import services as api_tokens
from portal.api.models import ApiToken
from portal.auth import services as auth
from portal.container import services
from portal.db import db
from portal.mail import MailError
from tests.conftest import audit_rows, csrf_of, login, reset_totp_step
from tests.factories import Account, Factory
from tests.support.services import SmtpSink, body_of

LoginAs = Callable[[Account], FlaskClient]
LINK_RE = re.compile(r"https://filr\.test(/\S+)")
NEW_PASSWORD = "une toute nouvelle phrase secrète 2026"


def _anonymous(app: Flask) -> FlaskClient:
    """A browser with no session, as the holder of a mailed link."""
    client = app.test_client()
    client.environ_base.update(
        {"REMOTE_ADDR": "203.0.113.30", "HTTP_REFERER": "https://localhost/"}
    )
    return client


def _link(smtp: SmtpSink, email: str) -> str:
    match = LINK_RE.search(body_of(smtp.last_to(email)))
    assert match, "no link in the mail"
    return match.group(1)


def _ask_reset(client: FlaskClient, email: str) -> TestResponse:
    token = csrf_of(client, "/mot-de-passe/oubli")
    return client.post("/mot-de-passe/oubli", data={"csrf_token": token, "email": email})


def _reset(client: FlaskClient, link: str, password: str = NEW_PASSWORD) -> str:
    """Choose *password* from a reset link; returns the page the person lands on."""
    token = csrf_of(client, link)
    response = client.post(
        link,
        data={"csrf_token": token, "password": password, "confirmation": password},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert response.request.path == "/connexion"
    return response.get_data(as_text=True)


def _reset_mfa_as_manager(client: FlaskClient, account: Account) -> str:
    """The manager's MFA reset; returns the page the manager lands on."""
    token = csrf_of(client, f"/gestion/comptes/{account.id}")
    response = client.post(
        f"/gestion/comptes/{account.id}/reinitialiser-mfa",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _api_token(app: Flask, account: Account, name: str) -> str:
    with app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        _, secret = api_tokens.create_token(
            db.session, user, name=name, scopes=["read"], lifetime_days=30, ctx=audit.NO_CONTEXT
        )
        db.session.commit()
    return secret


def _api_status(app: Flask, secret: str) -> int:
    client = app.test_client(use_cookies=False)
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code


def _mail_to(smtp: SmtpSink, email: str) -> str:
    """The last mail to *email*, with the line ends of the file it was rendered from."""
    return body_of(smtp.last_to(email)).replace("\r\n", "\n")


def _revocations(app: Flask) -> list[dict[str, str]]:
    return [json.loads(r.details) for r in audit_rows(app, AuditAction.API_TOKEN_REVOKED)]


# --- 1. a password set voids the reset links asked for before ------------------------------


def test_a_reset_link_stops_working_once_the_password_is_changed_from_my_account(
    app: Flask, factory: Factory, smtp: SmtpSink, login_as: LoginAs
) -> None:
    # Given a reset link sent to the mailbox of an agent
    agent = factory.user(factory.org())
    stranger = _anonymous(app)
    _ask_reset(stranger, agent.email)
    link = _link(smtp, agent.email)
    assert stranger.get(link).status_code == 200

    # When the agent changes the password from "Mon compte"
    client = login_as(agent)
    token = csrf_of(client, "/compte")
    changed = client.post(
        "/compte/mot-de-passe",
        data={
            "csrf_token": token,
            "current": agent.password,
            "password": NEW_PASSWORD,
            "confirmation": NEW_PASSWORD,
        },
    )
    assert changed.status_code == 302

    # Then the old link can neither be opened nor used to override the new password
    assert stranger.get(link).status_code == 404
    form = {"csrf_token": csrf_of(stranger, "/mot-de-passe/oubli")}
    form |= {
        "password": "attacker passphrase 777 xyz",
        "confirmation": "attacker passphrase 777 xyz",
    }
    assert stranger.post(link, data=form).status_code == 404
    fresh = Account(agent.id, agent.email, NEW_PASSWORD, agent.totp_secret, agent.org_id)
    reset_totp_step(app, agent)
    assert login(_anonymous(app), fresh).status_code == 302


def test_a_password_change_voids_reset_links_but_keeps_a_managers_mfa_enrolment_link(
    app: Flask, factory: Factory
) -> None:
    # Given an account with an unused reset link and an unused MFA enrolment link
    account = factory.user(factory.org())
    with app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        reset = auth.issue_token(db.session, user, TokenPurpose.PASSWORD_RESET)
        enrolment = auth.issue_token(db.session, user, TokenPurpose.MFA_ENROLMENT)
        # When a password is set (as "Mon compte" does)
        auth.set_password(db.session, services(), user, NEW_PASSWORD)
        db.session.commit()
        # Then the reset link is void, the enrolment link (mailbox + password) still works
        assert auth.find_token(db.session, reset, TokenPurpose.PASSWORD_RESET) is None
        assert auth.find_token(db.session, enrolment, TokenPurpose.MFA_ENROLMENT) is not None


def test_a_password_reset_by_mail_voids_a_pending_mfa_enrolment_link(
    app: Flask, factory: Factory, smtp: SmtpSink, login_as: LoginAs
) -> None:
    # Given an MFA reset by the manager: the link asks for the password as its second proof
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    agent = factory.user(org)
    _reset_mfa_as_manager(login_as(manager), agent)
    enrolment_link = _link(smtp, agent.email)

    # When whoever reads the mailbox also resets the password by mail
    stranger = _anonymous(app)
    _ask_reset(stranger, agent.email)
    page = _reset(stranger, _link(smtp, agent.email))

    # Then the enrolment link is dead (mailbox alone is not enough), and the page and mail say so
    assert stranger.get(enrolment_link).status_code == 404
    assert "plus valable" in page
    assert "plus valable" in body_of(smtp.last_to(agent.email))
    [row] = audit_rows(app, AuditAction.AUTH_PASSWORD_RESET)
    assert json.loads(row.details) == {"mfa_enrolment_link_voided": True}


# --- 2. a password reset and an MFA reset revoke the API tokens ----------------------------


def test_a_password_reset_revokes_every_api_token_and_says_so(
    app: Flask, factory: Factory, smtp: SmtpSink
) -> None:
    # Given a technician with two live API tokens and one already revoked by its owner
    technician = factory.user(factory.org(), roles=(Role.TECHNICIEN,))
    first = _api_token(app, technician, "Script CGPEM")
    second = _api_token(app, technician, "Script nuit")
    old = _api_token(app, technician, "Ancien script")
    with app.app_context():
        user = db.session.get(User, technician.id)
        assert user is not None
        old_id = db.session.execute(
            sa.select(ApiToken.id).where(ApiToken.name == "Ancien script")
        ).scalar_one()
        assert api_tokens.revoke_token(db.session, user, old_id, audit.NO_CONTEXT)
        db.session.commit()
    assert _api_status(app, first) == _api_status(app, second) == 200
    assert _api_status(app, old) == 401

    # When the password is reset by mail (the recovery step after a compromise)
    client = _anonymous(app)
    _ask_reset(client, technician.email)
    page = _reset(client, _link(smtp, technician.email))

    # Then neither token opens the API any more, each revocation is audited once
    assert _api_status(app, first) == _api_status(app, second) == 401
    revocations = _revocations(app)
    assert sorted(r["name"] for r in revocations if r.get("reason") == "password_reset") == [
        "Script CGPEM",
        "Script nuit",
    ]
    assert len(revocations) == 3  # the token revoked before is not revoked twice
    assert all(r.actor_id == technician.id for r in audit_rows(app, AuditAction.API_TOKEN_REVOKED))
    # And the page and the mail (before its signature) say so, in French
    assert "Vos 2 jetons d&#39;accès à l&#39;API ont été révoqués" in page
    mail = _mail_to(smtp, technician.email)
    notice = mail.index("Vos 2 jetons d'accès à l'API ont été révoqués")
    assert notice < mail.index("\n-- \n")


def test_a_password_reset_without_api_tokens_says_nothing_about_them(
    app: Flask, factory: Factory, smtp: SmtpSink
) -> None:
    agent = factory.user(factory.org())
    client = _anonymous(app)
    _ask_reset(client, agent.email)
    page = _reset(client, _link(smtp, agent.email))
    assert "Connectez-vous avec votre code." in page
    assert "API" not in page and "API" not in body_of(smtp.last_to(agent.email))
    assert not audit_rows(app, AuditAction.API_TOKEN_REVOKED)


def test_an_mfa_reset_by_the_manager_revokes_every_api_token_and_says_so(
    app: Flask, factory: Factory, smtp: SmtpSink, login_as: LoginAs
) -> None:
    # Given a technician with an API token
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    technician = factory.user(org, roles=(Role.TECHNICIEN,))
    secret = _api_token(app, technician, "Script CGPEM")
    assert _api_status(app, secret) == 200

    # When the account manager resets the technician's MFA
    page = _reset_mfa_as_manager(login_as(manager), technician)

    # Then the token is revoked, by the manager, and the manager and the technician are told
    assert _api_status(app, secret) == 401
    [row] = audit_rows(app, AuditAction.API_TOKEN_REVOKED)
    assert row.actor_id == manager.id
    assert json.loads(row.details) == {"name": "Script CGPEM", "reason": "mfa_reset"}
    assert "Son jeton d&#39;accès à l&#39;API a été révoqué." in page
    mail = _mail_to(smtp, technician.email)
    assert mail.index("Votre jeton d'accès à l'API a été révoqué") < mail.index("\n-- \n")
    assert _link(smtp, technician.email).startswith("/mfa/enrolement/")


def test_a_password_change_from_my_account_keeps_api_tokens(
    app: Flask, factory: Factory, login_as: LoginAs
) -> None:
    # A voluntary change follows a re-authentication: the scripts of the account keep working.
    technician = factory.user(factory.org(), roles=(Role.TECHNICIEN,))
    secret = _api_token(app, technician, "Script CGPEM")
    client = login_as(technician)
    token = csrf_of(client, "/compte")
    form = {"csrf_token": token, "current": technician.password}
    form |= {"password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
    assert client.post("/compte/mot-de-passe", data=form).status_code == 302
    assert _api_status(app, secret) == 200
    assert not audit_rows(app, AuditAction.API_TOKEN_REVOKED)


# --- 3. the MFA enrolment link is throttled and audited -----------------------------------


def test_wrong_passwords_on_an_mfa_enrolment_link_are_throttled_and_audited(
    app: Flask, factory: Factory, smtp: SmtpSink, login_as: LoginAs
) -> None:
    # Given an MFA enrolment link in the hands of someone who does not know the password
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    agent = factory.user(org)
    _reset_mfa_as_manager(login_as(manager), agent)
    link = _link(smtp, agent.email)
    holder = _anonymous(app)
    token = csrf_of(holder, link)

    # When the holder guesses up to the account's limit
    limit = app.config["FILR_SETTINGS"].throttle_account_per_minute
    for attempt in range(limit):
        response = holder.post(link, data={"csrf_token": token, "password": f"guess {attempt}"})
        assert response.status_code == 200
        assert "Mot de passe incorrect." in response.get_data(as_text=True)

    # Then the next attempt, even with the right password, is refused with a delay
    response = holder.post(link, data={"csrf_token": token, "password": agent.password})
    assert response.status_code == 429
    assert "Trop de tentatives" in response.get_data(as_text=True)
    assert holder.get("/activation/authentification").status_code == 404
    # And every failure is in the trail, against the account, without the guesses
    rows = audit_rows(app, AuditAction.AUTH_REAUTH_FAILURE)
    assert [r.outcome for r in rows] == ["failure"] * limit + ["denied"]
    assert all(r.actor_id == agent.id for r in rows)
    assert all('"purpose":"mfa_enrolment_link"' in r.details for r in rows)
    assert all("guess" not in r.details and agent.password not in r.details for r in rows)


def test_the_right_password_on_an_mfa_enrolment_link_still_leads_to_enrolment(
    app: Flask, factory: Factory, smtp: SmtpSink, login_as: LoginAs
) -> None:
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    agent = factory.user(org)
    _reset_mfa_as_manager(login_as(manager), agent)
    link = _link(smtp, agent.email)
    holder = _anonymous(app)
    token = csrf_of(holder, link)
    response = holder.post(link, data={"csrf_token": token, "password": agent.password})
    assert response.status_code == 302
    assert holder.get("/activation/authentification").status_code == 200
    assert not audit_rows(app, AuditAction.AUTH_REAUTH_FAILURE)


# --- 4. a mail outage on "Mot de passe oublié" reveals nothing ----------------------------


def test_a_mail_outage_on_forgotten_password_answers_as_for_an_unknown_address(
    app: Flask,
    client: FlaskClient,
    factory: Factory,
    smtp: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an SMTP relay that refuses every message
    agent = factory.user(factory.org())
    with app.app_context():

        def refuse(*_args: object) -> None:
            raise MailError("relay down (test)")

        monkeypatch.setattr(services().mailer, "send", refuse)

    # When a reset is asked for an existing account and for an unknown address
    answers = []
    with caplog.at_level(logging.WARNING):
        for email in (agent.email, "nobody@example.org"):
            response = _ask_reset(client, email)
            assert response.status_code == 302, email
            location = response.location
            page = client.get(location).get_data(as_text=True)
            answers.append((location, re.sub(r'value="[^"]+"|[0-9a-f]{16}', "", page)))

    # Then both get the same answer, the failure is logged by id only and audited
    assert answers[0] == answers[1]
    logged = [r.getMessage() for r in caplog.records if r.name == "portal.mail"]
    assert any(agent.id in m for m in logged)
    assert all(agent.email not in r.getMessage() for r in caplog.records)
    requested = audit_rows(app, AuditAction.AUTH_PASSWORD_RESET_REQUESTED)
    assert [r.outcome for r in requested] == ["success", "failure"]
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count()).select_from(UserToken)).scalar() == 1
