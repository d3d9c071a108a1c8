"""`filr users` (and `filr orgs create` to give them an organisation): provisioning, status."""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.settings import Settings
from tests.cli.conftest import filr
from tests.conftest import audit_rows, login
from tests.factories import Account
from tests.support.services import SmtpSink


def _org(*options: str) -> dict[str, str]:
    created: dict[str, str] = json.loads(filr(["orgs", "create", *options, "--json"]).output)
    return created


def test_scripted_provisioning_prints_the_totp_secret_once_and_the_account_logs_in(
    cli_env: Settings, app: Flask, client: FlaskClient
) -> None:
    org = _org("--kind", "departement", "--departement", "62", "--name", "CD 62 test")
    out = filr(
        [
            "users",
            "create",
            "--org",
            org["id"],
            "--email",
            "tech@example.org",
            "--name",
            "Tech Nicien",
            "--role",
            "technicien",
            "--password-stdin",
            "--with-totp",
            "--json",
        ],
        stdin="une phrase de passe solide\n",
    ).output
    created = json.loads(out)
    assert created["status"] == "active" and len(created["recovery_codes"]) == 10
    assert list(created) == [
        "id", "email", "status", "totp_secret", "recovery_codes", "otpauth_uri"
    ]  # fmt: skip
    account = Account(
        created["id"],
        "tech@example.org",
        "une phrase de passe solide",
        created["totp_secret"],
        org["id"],
    )
    assert login(client, account).status_code == 302
    # The secret is never written to the audit trail
    assert all(created["totp_secret"] not in (r.details or "") for r in audit_rows(app))
    # and the activation is on the trail as the account's own, done through the CLI
    for action in (AuditAction.AUTH_MFA_ENROLLED, AuditAction.ACCOUNT_ACTIVATED):
        [row] = audit_rows(app, action)
        assert (row.actor_id, row.details, row.user_agent) == (
            created["id"],
            '{"via":"cli"}',
            "filr-cli",
        )


def test_provisioning_refuses_a_weak_password(cli_env: Settings, app: Flask) -> None:
    org = _org("--kind", "departement", "--departement", "59", "--name", "CD 59 test")
    result = filr(
        [
            "users",
            "create",
            "--org",
            org["id"],
            "--email",
            "g@example.org",
            "--name",
            "Ges Tion",
            "--role",
            "gestionnaire",
            "--password-stdin",
            "--with-totp",
        ],
        code=1,
        stdin="azertyuiop123456\n",
    )
    assert "trop courant" in result.output
    # and nothing of the refused account is left
    assert audit_rows(app, AuditAction.ACCOUNT_CREATED) == []


def test_create_without_password_sends_the_activation_mail(
    cli_env: Settings, smtp: SmtpSink
) -> None:
    org = _org("--kind", "france_travail", "--territory", "62,59", "--name", "FT test")
    out = filr(
        [
            "users",
            "create",
            "--org",
            org["id"],
            "--email",
            "conseil@example.org",
            "--name",
            "Con Seiller",
            "--role",
            "agent",
            "--json",
        ]
    ).output
    assert json.loads(out)["status"] == "pending" and json.loads(out)["activation"] == "sent"
    assert "/activation/" in smtp.last_to("conseil@example.org").get_payload()


def test_suspend_and_revoke_from_the_cli_are_audited(cli_env: Settings, app: Flask) -> None:
    org = _org("--kind", "departement", "--departement", "06", "--name", "CD 06 test")
    filr(
        [
            "users",
            "create",
            "--org",
            org["id"],
            "--email",
            "s@example.org",
            "--name",
            "Sus Pendu",
            "--role",
            "agent",
            "--password-stdin",
            "--with-totp",
        ],
        stdin="une phrase de passe solide\n",
    )
    assert "Suspendu" in filr(["users", "suspend", "s@example.org"]).output
    assert "Révoqué" in filr(["users", "revoke", "s@example.org"]).output
    assert audit_rows(app, AuditAction.ACCOUNT_SUSPENDED)
    assert audit_rows(app, AuditAction.ACCOUNT_REVOKED)


def test_an_unknown_organisation_or_account_is_one_line_and_exit_1(cli_env: Settings) -> None:
    out = filr(
        ["users", "create", "--org", "nulle part", "--email", "x@example.org", "--name", "X Y",
         "--role", "agent"],
        code=1,
    ).output  # fmt: skip
    assert out == "Erreur : organisation inconnue : nulle part\n"
    assert filr(["users", "suspend", "nobody@example.org"], code=1).output == (
        "Erreur : compte inconnu : nobody@example.org\n"
    )
