"""The `filr` command: provisioning, status changes, demo, audit verification."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.cli import main
from portal.settings import Settings
from tests.conftest import Account, audit_rows, login
from tests.support.services import SmtpSink


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_SMTP_HOST": settings.smtp_host or "",
        "FILR_SMTP_PORT": str(settings.smtp_port),
        "FILR_BASE_URL": settings.base_url,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _run(args: list[str], stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, args, input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_scripted_provisioning_prints_the_totp_secret_once_and_the_account_logs_in(
    cli_env: dict[str, str], app: Flask, client: FlaskClient
) -> None:
    org = json.loads(
        _run(
            [
                "orgs",
                "create",
                "--kind",
                "departement",
                "--departement",
                "62",
                "--name",
                "CD 62 test",
                "--json",
            ]
        )
    )
    out = _run(
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
    )
    created = json.loads(out)
    assert created["status"] == "active" and len(created["recovery_codes"]) == 10
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


def test_provisioning_refuses_a_weak_password(cli_env: dict[str, str]) -> None:
    org = json.loads(
        _run(
            [
                "orgs",
                "create",
                "--kind",
                "departement",
                "--departement",
                "59",
                "--name",
                "CD 59 test",
                "--json",
            ]
        )
    )
    result = CliRunner().invoke(
        main,
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
        input="azertyuiop123456\n",
    )
    assert result.exit_code != 0
    assert "trop courant" in result.output


def test_create_without_password_sends_the_activation_mail(
    cli_env: dict[str, str], smtp: SmtpSink
) -> None:
    org = json.loads(
        _run(
            [
                "orgs",
                "create",
                "--kind",
                "france_travail",
                "--territory",
                "62,59",
                "--name",
                "FT test",
                "--json",
            ]
        )
    )
    _run(
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
        ]
    )
    assert "/activation/" in smtp.last_to("conseil@example.org").get_payload()


def test_suspend_and_revoke_from_the_cli_are_audited(cli_env: dict[str, str], app: Flask) -> None:
    org = json.loads(
        _run(
            [
                "orgs",
                "create",
                "--kind",
                "departement",
                "--departement",
                "06",
                "--name",
                "CD 06 test",
                "--json",
            ]
        )
    )
    _run(
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
    assert "Suspendu" in _run(["users", "suspend", "s@example.org"])
    assert "Révoqué" in _run(["users", "revoke", "s@example.org"])
    assert audit_rows(app, AuditAction.ACCOUNT_SUSPENDED)
    assert audit_rows(app, AuditAction.ACCOUNT_REVOKED)


def test_demo_is_idempotent_and_its_codes_log_in(
    cli_env: dict[str, str], client: FlaskClient
) -> None:
    first = _run(["demo"])
    second = _run(["demo"])
    assert first.count("@demo.filr.localhost") == second.count("@demo.filr.localhost") == 15
    creds = json.loads((Path(cli_env["FILR_DATA_DIR"]) / "secrets/demo-accounts.json").read_text())
    email = "gestionnaire.62@demo.filr.localhost"
    code = _run(["demo", "code", email]).strip()
    assert code == pyotp.TOTP(creds[email]["totp_secret"]).now()
    account = Account("", email, creds[email]["password"], creds[email]["totp_secret"], "")
    assert login(client, account, code=code).status_code == 302
    # And the national France Travail structure of the demo has the national scope
    from portal.cli import DEMO_NATIONAL
    from portal.db import db
    from portal.orgs.models import Organisation

    with client.application.app_context():
        national = db.session.execute(
            sa.select(Organisation).where(Organisation.name == DEMO_NATIONAL)
        ).scalar_one()
        others = db.session.execute(
            sa.select(Organisation).where(Organisation.name != DEMO_NATIONAL)
        ).scalars()
        assert national.is_national and not any(o.is_national for o in others)


def test_audit_verify_exit_code_follows_the_chain(cli_env: dict[str, str], app: Flask) -> None:
    import sqlalchemy as sa

    from audit import AuditEvent
    from portal.db import db

    _run(["orgs", "create", "--kind", "departement", "--departement", "68", "--name", "CD 68"])
    assert "intègre" in _run(["audit", "verify"])
    with app.app_context():
        db.session.execute(sa.update(AuditEvent).values(details='{"forged": true}'))
        db.session.commit()
    result = CliRunner().invoke(main, ["audit", "verify"])
    assert result.exit_code == 1
    assert "n° 1" in result.output
