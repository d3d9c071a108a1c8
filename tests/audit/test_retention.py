"""Retention purge behind checkpoints, daily head hash, and the audit CLI (export, head)."""

from __future__ import annotations

import csv
import io
import json
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, AuditCheckpoint, AuditEvent, Outcome, trail
from audit.retention import RetentionRefused, head_of_day, months_before, purge_expired_events
from portal.accounts.models import Role
from portal.cli import main
from portal.db import make_engine
from portal.orgs.models import OrgKind
from portal.settings import Settings, SettingsError
from tests.conftest import audit_rows
from tests.factories import Factory
from tests.support.services import SmtpSink

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=500)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def _write(engine: sa.Engine, n: int, at: datetime) -> None:
    with Session(engine) as session:
        for i in range(n):
            audit.record(
                session,
                AuditAction.AUTH_LOGIN_FAILURE,
                outcome=Outcome.FAILURE,
                details={"i": i},
                at=at + timedelta(seconds=i),
            )
        session.commit()


def test_months_before_clips_the_day_to_the_month() -> None:
    assert months_before(datetime(2026, 3, 31, 10, tzinfo=UTC), 1) == datetime(
        2026, 2, 28, 10, tzinfo=UTC
    )
    assert months_before(datetime(2026, 1, 15, tzinfo=UTC), 12) == datetime(2025, 1, 15, tzinfo=UTC)
    assert months_before(datetime(2026, 5, 1, tzinfo=UTC), 36).year == 2023


@pytest.mark.parametrize("months", ["5", "37", "0"])
def test_retention_outside_6_to_36_months_is_refused_at_start(
    months: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FILR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FILR_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("FILR_AUDIT_RETENTION_MONTHS", months)
    with pytest.raises(SettingsError, match="AUDIT_RETENTION_MONTHS"):
        Settings.from_env()


@pytest.mark.parametrize("months", ["6", "36"])
def test_retention_bounds_are_accepted(
    months: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FILR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FILR_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("FILR_AUDIT_RETENTION_MONTHS", months)
    assert Settings.from_env().audit_retention_months == int(months)


def test_purge_deletes_old_rows_behind_checkpoints_and_the_chain_still_verifies(
    engine: sa.Engine,
) -> None:
    # Given 7 rows older than the retention and 3 recent ones
    _write(engine, 7, OLD)
    _write(engine, 3, NOW - timedelta(days=1))
    cutoff = months_before(NOW, 12)
    with Session(engine) as session:
        # When the dry run counts, nothing changes
        dry = purge_expired_events(session, cutoff=cutoff, dry_run=True)
        assert dry.rows_deleted == 7
        assert session.execute(sa.select(sa.func.count(AuditEvent.id))).scalar_one() == 10
        # When the purge runs in batches of 3
        report = purge_expired_events(session, cutoff=cutoff, batch=3, retention_months=12)
    # Then the 7 old rows are gone, behind checkpoints at 3, 6 and 7
    assert report.rows_deleted == 7 and report.checkpoint_seq == 7
    with Session(engine) as session:
        checkpoints = session.execute(
            sa.select(AuditCheckpoint.seq, AuditCheckpoint.rows_deleted).order_by(
                AuditCheckpoint.seq
            )
        ).all()
        assert [tuple(c) for c in checkpoints] == [(3, 3), (6, 3), (7, 1)]
        purged = session.execute(
            sa.select(AuditEvent).where(AuditEvent.action == AuditAction.AUDIT_PURGED)
        ).scalars()
        assert [json.loads(e.details)["rows_deleted"] for e in purged] == [3, 3, 1]
        seqs = session.execute(sa.select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars()
        assert list(seqs)[:3] == [8, 9, 10]
        # And the chain verifies from the latest checkpoint on
        result = audit.verify_chain(session)
        assert result.is_valid and result.checkpoint_seq == 7 and result.checked == 6
        # And a second run deletes nothing
        again = purge_expired_events(session, cutoff=cutoff)
        assert again.rows_deleted == 0


def test_deleting_the_first_row_after_a_checkpoint_is_detected(engine: sa.Engine) -> None:
    _write(engine, 4, OLD)
    _write(engine, 4, NOW)
    with Session(engine) as session:
        purge_expired_events(session, cutoff=months_before(NOW, 12))
    # Given someone deletes the first row after the checkpoint
    with engine.begin() as conn:
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.seq == 5))
    with Session(engine) as session:
        result = audit.verify_chain(session)
    assert not result.is_valid and result.first_broken_seq == 5


def test_purge_refuses_to_destroy_a_broken_part_of_the_chain(engine: sa.Engine) -> None:
    _write(engine, 5, OLD)
    _write(engine, 2, NOW)
    # Given an old row was altered
    with engine.begin() as conn:
        conn.execute(sa.update(AuditEvent).where(AuditEvent.seq == 2).values(outcome="success"))
    with Session(engine) as session, pytest.raises(RetentionRefused, match="row 2"):
        purge_expired_events(session, cutoff=months_before(NOW, 12))
    with Session(engine) as session:
        assert session.execute(sa.select(sa.func.count(AuditEvent.id))).scalar_one() == 7


@contextmanager
def _purging_session(engine: sa.Engine, verifying: Session) -> Iterator[Session]:
    """A session for a purge that lands while *verifying* reads the chain."""
    if engine.dialect.name == "postgresql":
        # Another connection, as on another server: each batch commits while the
        # verification's transaction is open (READ COMMITTED: its next statement sees it).
        with Session(engine) as session:
            yield session
        return
    # On SQLite the verification holds the write lock (BEGIN IMMEDIATE, portal.db), so another
    # connection would wait for its end: the purge runs on the verification's own connection,
    # each of its commits a savepoint the verification's next read sees.
    with Session(bind=verifying.connection(), join_transaction_mode="create_savepoint") as session:
        yield session


def _verify_with_a_purge_after_row(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, row: int
) -> audit.VerificationResult:
    """Verify in batches of 2 while the retention purge runs once *row* is hashed."""
    digest = trail._fast_digest
    armed = [True]
    with Session(engine) as session:

        def digest_then_purge(prev_hash: str, values: Sequence[object]) -> str:
            if armed[0] and values[0] == row:
                armed[0] = False
                with _purging_session(engine, session) as purging:
                    purge_expired_events(purging, cutoff=months_before(NOW, 12), batch=3)
            return digest(prev_hash, values)

        monkeypatch.setattr(trail, "_fast_digest", digest_then_purge)
        result = audit.verify_chain(session, batch=2)
        session.commit()  # on SQLite, the purge's savepoints with it
    assert armed == [False]
    return result


def test_a_purge_committed_between_two_batches_of_a_verification_is_no_broken_chain(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 6 rows older than the retention and 4 recent ones
    _write(engine, 6, OLD)
    _write(engine, 4, NOW - timedelta(days=1))
    # When the purge deletes rows 1-6 (checkpoints at 3 and 6) after the verification's first
    # batch (rows 1 and 2), before its second
    result = _verify_with_a_purge_after_row(engine, monkeypatch, 2)
    # Then the verification goes on from the purge's checkpoint: no false "missing row"
    assert result.is_valid, (result.first_broken_seq, result.reason)
    assert result.checkpoint_seq == 6
    with Session(engine) as session:
        assert session.execute(sa.select(sa.func.min(AuditEvent.seq))).scalar_one() == 7
        assert audit.verify_chain(session).is_valid


def test_a_row_deleted_outside_the_purge_is_still_reported_when_a_purge_runs_meanwhile(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(engine, 6, OLD)
    _write(engine, 4, NOW - timedelta(days=1))
    # Given a recent row deleted behind the application's back (no checkpoint covers it)
    with engine.begin() as conn:
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.seq == 9))
    # When the purge commits between two batches of the verification
    result = _verify_with_a_purge_after_row(engine, monkeypatch, 2)
    # Then the deleted row is still named
    assert not result.is_valid
    assert (result.first_broken_seq, result.reason) == (9, "missing row")


def test_head_of_a_day_is_its_last_row(engine: sa.Engine) -> None:
    day = date(2026, 3, 10)
    _write(engine, 3, datetime(2026, 3, 10, 23, 59, 50, tzinfo=UTC))  # seq 1-3, last at 23:59:52
    _write(engine, 2, datetime(2026, 3, 11, 0, 0, tzinfo=UTC))
    with Session(engine) as session:
        head = head_of_day(session, day)
        third = session.execute(sa.select(AuditEvent).where(AuditEvent.seq == 3)).scalar_one()
        assert head is not None and (head.seq, head.hash) == (3, third.hash)
        assert head_of_day(session, date(2026, 3, 9)) is None
        later = head_of_day(session, date(2026, 3, 20))
        assert later is not None and later.seq == 5


# --- the CLI ---------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_SMTP_HOST": settings.smtp_host or "",
        "FILR_SMTP_PORT": str(settings.smtp_port),
        "FILR_BASE_URL": settings.base_url,
    }.items():
        monkeypatch.setenv(key, value)


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_retention_job_dry_run_then_run_and_audits_itself(
    cli_env: None, app: Flask, engine: sa.Engine
) -> None:
    _write(engine, 3, OLD)
    _write(engine, 1, NOW)
    dry = _cli("jobs", "audit-retention", "--dry-run")
    assert dry.exit_code == 0 and "[essai] Journal d'audit : 3 entrées" in dry.output
    assert len(audit_rows(app)) == 4
    done = _cli("jobs", "audit-retention")
    assert done.exit_code == 0 and "3 entrées" in done.output and "12 mois" in done.output
    rows = audit_rows(app)
    assert [r.seq for r in rows][:1] == [4]
    job = [r for r in rows if r.action == AuditAction.JOB_RUN]
    assert len(job) == 1 and json.loads(job[0].details)["rows_deleted"] == 3
    assert len([r for r in rows if r.action == AuditAction.AUDIT_PURGED]) == 1
    assert _cli("audit", "verify").exit_code == 0


def test_audit_head_prints_the_hash_of_the_day(cli_env: None, engine: sa.Engine) -> None:
    _write(engine, 2, datetime(2026, 3, 10, 12, tzinfo=UTC))
    out = _cli("audit", "head", "--date", "2026-03-10")
    with Session(engine) as session:
        last = session.execute(sa.select(AuditEvent).where(AuditEvent.seq == 2)).scalar_one()
    assert out.exit_code == 0 and out.output.strip() == f"2026-03-10 2 {last.hash}"
    assert _cli("audit", "head", "--date", "2026-03-09").exit_code == 1


def test_daily_head_is_mailed_to_national_and_platform_officers_only(
    cli_env: None, app: Flask, factory: Factory, smtp: SmtpSink, engine: sa.Engine
) -> None:
    # Given officers of the national FT structure, of the platform and of the 62
    national = factory.org(OrgKind.FRANCE_TRAVAIL, territory=("62",), national=True)
    regional = factory.org(OrgKind.FRANCE_TRAVAIL, territory=("59",))
    platform = factory.org(OrgKind.PLATEFORME, departement=None)
    cd62 = factory.org()
    factory.user(national, roles=(Role.SECURITE,), email="dsi@ft.example")
    factory.user(platform, roles=(Role.SECURITE,), email="rssi@plateforme.example")
    factory.user(national, roles=(Role.AGENT,), email="agent@ft.example")
    factory.user(regional, roles=(Role.SECURITE,), email="rssi@ft59.example")
    factory.user(cd62, roles=(Role.SECURITE,), email="rssi@cd62.example")
    yesterday = (NOW - timedelta(days=1)).date()
    _write(engine, 2, datetime.combine(yesterday, datetime.min.time(), UTC))
    with Session(engine) as session:
        head = head_of_day(session, yesterday)
    assert head is not None
    # When the job runs (default: yesterday)
    result = _cli("jobs", "audit-head")
    # Then the two officers got the head hash, and nobody else
    assert result.exit_code == 0, result.output
    assert sorted(str(m["To"]) for m in smtp.messages) == [
        "dsi@ft.example",
        "rssi@plateforme.example",
    ]
    body = smtp.messages[0].get_payload(decode=True).decode()
    assert head.hash in body and f"n° {head.seq}" in body
    # And the sending is on the trail
    sent = audit_rows(app, AuditAction.AUDIT_HEAD_SENT)
    assert len(sent) == 1
    expected = {"head_hash": head.hash, "head_seq": head.seq, "sent": 2, "failed": 0}
    assert expected.items() <= json.loads(sent[0].details).items()


def _seed_period(engine: sa.Engine) -> None:
    _write(engine, 2, datetime(2026, 2, 28, 23, 0, tzinfo=UTC))
    _write(engine, 3, datetime(2026, 3, 1, 0, 0, tzinfo=UTC))
    _write(engine, 2, datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    _write(engine, 1, datetime(2026, 4, 1, 0, 0, tzinfo=UTC))


def test_export_jsonl_to_stdout_covers_the_days_and_is_audited(
    cli_env: None, app: Flask, engine: sa.Engine
) -> None:
    _seed_period(engine)
    out = _cli("audit", "export", "--from", "2026-03-01", "--to", "2026-03-31")
    assert out.exit_code == 0
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert [row["seq"] for row in lines] == [3, 4, 5, 6, 7]
    exported = audit_rows(app, AuditAction.AUDIT_EXPORTED)
    assert len(exported) == 1
    assert json.loads(exported[0].details)["from"] == "2026-03-01T00:00:00+00:00"


def test_export_csv_to_a_private_file(cli_env: None, engine: sa.Engine, tmp_path: Path) -> None:
    _seed_period(engine)
    target = tmp_path / "export.csv"
    out = _cli(
        "audit", "export", "--from", "2026-02-28", "--to", "2026-03-01", "--format", "csv",
        "--output", str(target),
    )  # fmt: skip
    assert out.exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4", "5"]
    bad = CliRunner().invoke(
        main, ["audit", "export", "--from", "2026-03-02", "--to", "2026-03-01"]
    )
    assert bad.exit_code != 0
