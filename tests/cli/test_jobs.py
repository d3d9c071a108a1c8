"""`filr jobs`: the `@job` wrapper (lock, `job:run` row, dry run, exit code) and each job."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

import audit
from audit import AuditAction, Outcome
from portal.auth.models import ServerSession, ThrottleEvent
from portal.db import db, job_lock, make_engine, utcnow
from portal.securite.models import SecurityAlert
from portal.settings import Settings
from tests.cli.conftest import filr
from tests.conftest import audit_rows
from tests.factories import Account, Factory, OfficerWorld
from tests.support.services import SmtpSink


def _replayed_code(app: Flask, account: Account) -> None:
    """A replayed TOTP code of *account*, on the trail as the portal writes it."""
    with app.app_context():
        audit.record(
            db.session,
            AuditAction.AUTH_MFA_REPLAY,
            actor=audit.Actor(account.id, account.org_id),
            context=audit.Context(source_ip="203.0.113.10", user_agent="pytest"),
            outcome=Outcome.FAILURE,
        )
        db.session.commit()


def _alerts(app: Flask) -> int:
    with app.app_context():
        return int(db.session.execute(sa.select(sa.func.count(SecurityAlert.id))).scalar_one())


def test_the_alert_job_raises_mails_audits_and_is_idempotent(
    cli_env: Settings, app: Flask, factory: Factory, smtp: SmtpSink
) -> None:
    world = OfficerWorld.build(factory)
    # Given a replayed TOTP code
    _replayed_code(app, world.agent62)
    # When the job runs twice (cron every minute)
    first = filr(["jobs", "alerts", "--verify-chain"]).output
    second = filr(["jobs", "alerts"]).output
    # Then one alert, one mail per officer concerned, one job row
    assert "1 alertes levées" in first and "Chaîne intègre" in first
    assert "0 alertes levées" in second
    assert _alerts(app) == 1
    assert len(smtp.to(world.officer62.email)) == 1
    jobs = [r for r in audit_rows(app, AuditAction.JOB_RUN) if '"alerts"' in r.details]
    assert len(jobs) == 1


def test_the_dry_run_raises_nothing(
    cli_env: Settings, app: Flask, factory: Factory, smtp: SmtpSink
) -> None:
    world = OfficerWorld.build(factory)
    _replayed_code(app, world.agent62)
    assert "[essai]" in filr(["jobs", "alerts", "--dry-run"]).output
    assert _alerts(app) == 0
    assert smtp.messages == []


def test_a_broken_chain_makes_the_alert_job_exit_1(cli_env: Settings, app: Flask) -> None:
    # Given a trail whose first row was rewritten
    with app.app_context():
        audit.record(db.session, AuditAction.JOB_RUN, details={"job": "purge"})
        db.session.commit()
        db.session.execute(sa.update(audit.AuditEvent).values(details='{"forged": true}'))
        db.session.commit()
    # When the job verifies the chain, Then it says so and monitoring sees exit 1
    assert "CHAÎNE ROMPUE" in filr(["jobs", "alerts", "--verify-chain"], code=1).output


def test_the_sessions_job_deletes_expired_sessions_and_forgotten_counters_only(
    cli_env: Settings, app: Flask
) -> None:
    # Given sessions idle for 20 minutes, started 13 hours ago, and fresh; throttle events of
    # two hours ago and of now
    now = utcnow()
    with app.app_context():
        for name, created, seen in [
            ("idle", now - timedelta(hours=1), now - timedelta(minutes=20)),
            ("old", now - timedelta(hours=13), now),
            ("fresh", now - timedelta(hours=1), now),
        ]:
            db.session.add(ServerSession(id=name, created_at=created, last_seen_at=seen))
        db.session.add(ThrottleEvent(key="k", at=now - timedelta(hours=2)))
        db.session.add(ThrottleEvent(key="k", at=now))
        db.session.commit()

    # When the job runs dry, then for real
    dry = filr(["jobs", "sessions", "--dry-run"]).output
    done = filr(["jobs", "sessions"]).output

    # Then the dry run counted what the run deleted, and the fresh rows stay
    assert dry == "[essai] 2 sessions expirées, 1 compteurs anciens supprimés.\n"
    assert done == "2 sessions expirées, 1 compteurs anciens supprimés.\n"
    with app.app_context():
        assert db.session.execute(sa.select(ServerSession.id)).scalars().all() == ["fresh"]
        assert db.session.execute(sa.select(sa.func.count(ThrottleEvent.id))).scalar_one() == 1
    assert audit_rows(app, AuditAction.JOB_RUN) == []  # ticks are not recorded


def test_the_purge_records_its_run_once_and_never_a_dry_run(cli_env: Settings, app: Flask) -> None:
    dry = filr(["jobs", "purge", "--dry-run"]).output
    assert dry.startswith("[essai] 0 dépôts expirés, 0 retirés")
    assert audit_rows(app, AuditAction.JOB_RUN) == []

    done = filr(["jobs", "purge"]).output

    assert done.startswith("0 dépôts expirés") and done.endswith("clés effacées en retard).\n")
    [row] = audit_rows(app, AuditAction.JOB_RUN)
    assert json.loads(row.details) == {
        "job": "purge", "expired": 0, "withdrawn": 0, "abandoned_drafts": 0,
        "files_destroyed": 0, "orphans": 0, "fiches_destroyed": 0, "aborted_uploads": 0,
        "late_shreds": 0, "late_removals": 0, "removals_pending": 0,
    }  # fmt: skip
    assert row.user_agent == "filr-cli" and row.request_id.startswith("cli-")


JOBS = {
    "purge": "Une autre purge est en cours : rien à faire.",
    "reminders": "Un autre envoi de rappels est en cours : rien à faire.",
    "digest": "Un autre envoi de résumés est en cours : rien à faire.",
    "audit-retention": "Une autre purge du journal est en cours : rien à faire.",
    "audit-head": "Un autre envoi de l'empreinte est en cours : rien à faire.",
    "flow-reminders": "Un autre envoi de rappels de flux est en cours : rien à faire.",
    "alerts": "Une autre détection d'alertes est en cours : rien à faire.",
}


@pytest.mark.parametrize("backend", ["postgres"])  # SQLite has no advisory lock to hold
@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_job_whose_lock_is_held_does_nothing_and_says_so(
    cli_env: Settings, app: Flask, job: str
) -> None:
    # Given another server running the same job (it holds the job's advisory lock)
    engine = make_engine(cli_env.database_url)
    try:
        with job_lock(engine, f"filr.jobs.{job}") as acquired:
            assert acquired
            # When the job starts here, Then it says so, exits 0 and records nothing
            assert filr(["jobs", job]).output == JOBS[job] + "\n"
            assert audit_rows(app) == []
        # and once the lock is free, the job runs
        assert filr(["jobs", job, "--dry-run"]).output != JOBS[job] + "\n"
    finally:
        engine.dispose()
