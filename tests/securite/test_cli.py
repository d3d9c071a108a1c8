"""`filr jobs alerts` and `filr orgs national` through click."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask

from audit import AuditAction, Outcome
from portal.cli import main
from portal.db import db
from portal.orgs.models import Organisation
from portal.securite.models import SecurityAlert
from portal.settings import Settings
from tests.conftest import audit_rows
from tests.securite.conftest import Emit, World
from tests.support.services import SmtpSink


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_SMTP_HOST": settings.smtp_host or "",
        "FILR_SMTP_PORT": str(settings.smtp_port),
        "FILR_BASE_URL": settings.base_url,
        "FILR_MASTER_KEY_FILE": str(settings.master_key_file),
        "FILR_STORAGE_URL": settings.storage_url,
    }.items():
        monkeypatch.setenv(key, value)


def run(args: list[str], code: int = 0) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_the_alert_job_raises_mails_audits_and_is_idempotent(
    cli_env: None, app: Flask, world: World, emit: Emit, smtp: SmtpSink
) -> None:
    # Given a replayed TOTP code
    emit(AuditAction.MFA_REPLAY, world.agent62, outcome=Outcome.FAILURE)
    # When the job runs twice (cron every minute)
    first = run(["jobs", "alerts", "--verify-chain"])
    second = run(["jobs", "alerts"])
    # Then one alert, one mail per officer concerned, one job row
    assert "1 alertes levées" in first and "Chaîne intègre" in first
    assert "0 alertes levées" in second
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count(SecurityAlert.id))).scalar_one() == 1
    assert len(smtp.to(world.officer62.email)) == 1
    jobs = [r for r in audit_rows(app, AuditAction.JOB_RUN) if '"alerts"' in r.details]
    assert len(jobs) == 1


def test_the_dry_run_raises_nothing(
    cli_env: None, app: Flask, world: World, emit: Emit, smtp: SmtpSink
) -> None:
    emit(AuditAction.MFA_REPLAY, world.agent62, outcome=Outcome.FAILURE)
    assert "[essai]" in run(["jobs", "alerts", "--dry-run"])
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count(SecurityAlert.id))).scalar_one() == 0
    assert smtp.messages == []


def test_orgs_national_flags_a_france_travail_structure_only(
    cli_env: None, app: Flask, world: World
) -> None:
    run(["orgs", "national", world.ft62])
    with app.app_context():
        org = db.session.get(Organisation, world.ft62)
        assert org is not None and org.is_national
    run(["orgs", "national", world.ft62, "--unset"])
    with app.app_context():
        org = db.session.get(Organisation, world.ft62)
        assert org is not None and not org.is_national
    assert "France Travail" in run(["orgs", "national", world.org62], code=1)
    assert len(audit_rows(app, AuditAction.ORGANISATION_UPDATED)) == 2
