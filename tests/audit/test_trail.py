"""The audit trail: hash chain, tamper detection, concurrent writers, literal storage."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, AuditEvent, Outcome
from portal.db import make_engine


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def _write(engine: sa.Engine, n: int, **kwargs: object) -> None:
    with Session(engine) as session:
        for i in range(n):
            audit.record(
                session,
                AuditAction.AUTH_LOGIN_FAILURE,
                outcome=Outcome.FAILURE,
                details={"i": i},
                **kwargs,
            )  # type: ignore[arg-type]
            session.commit()


def test_chain_of_recorded_events_verifies(engine: sa.Engine) -> None:
    _write(engine, 25)
    with Session(engine) as session:
        result = audit.verify_chain(session)
    assert result.is_valid and result.checked == 25


def test_row_altered_by_a_superuser_is_named_by_verification(engine: sa.Engine) -> None:
    _write(engine, 10)
    # Given someone with direct database access rewrites one row
    with engine.begin() as conn:
        conn.execute(sa.update(AuditEvent).where(AuditEvent.seq == 4).values(outcome="success"))
    # Then verification names that row
    with Session(engine) as session:
        result = audit.verify_chain(session)
    assert not result.is_valid
    assert result.first_broken_seq == 4 and result.reason == "content altered"


def test_deleted_row_is_detected(engine: sa.Engine) -> None:
    _write(engine, 10)
    with engine.begin() as conn:
        conn.execute(sa.delete(AuditEvent).where(AuditEvent.seq == 7))
    with Session(engine) as session:
        result = audit.verify_chain(session)
    assert not result.is_valid and result.first_broken_seq == 7


def test_control_characters_and_long_values_are_stored_literally(engine: sa.Engine) -> None:
    nasty = "evil\r\nauth:login:success\x00\x1b[31m;DROP TABLE audit_event;--" + "é" * 3000
    with Session(engine) as session:
        audit.record(
            session,
            AuditAction.AUTH_LOGIN_FAILURE,
            context=audit.Context(user_agent=nasty),
            details={"note": nasty},
        )
        session.commit()
    with Session(engine) as session:
        rows = session.execute(sa.select(AuditEvent)).scalars().all()
        assert len(rows) == 1
        row = rows[0]
        assert row.user_agent is not None and row.user_agent.startswith(
            "evil\r\nauth:login:success"
        )
        assert len(row.user_agent) <= 512
        assert "\\x00" in row.user_agent  # NUL kept visible, as text
        assert json.loads(row.details)["note"].startswith("evil\r\nauth:login:success\\x00\x1b")
        assert audit.verify_chain(session).is_valid


WRITER = textwrap.dedent(
    """
    import sys
    from sqlalchemy.orm import Session
    import audit
    from portal.db import make_engine
    engine = make_engine(sys.argv[1])
    for i in range(int(sys.argv[2])):
        with Session(engine) as session:
            details = {"w": sys.argv[3], "i": i}
            audit.record(session, audit.AuditAction.AUTH_LOGIN_FAILURE, details=details)
            session.commit()
    engine.dispose()
    """
)


def test_two_processes_writing_at_once_keep_one_valid_chain(
    engine: sa.Engine, database_url: str
) -> None:
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, database_url, "60", str(w)], cwd=root)
        for w in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    with Session(engine) as session:
        result = audit.verify_chain(session)
        seqs = session.execute(sa.select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars().all()
    assert result.is_valid, result
    assert seqs == list(range(1, 121))


@pytest.mark.parametrize(
    "text",
    [None, "", "plain", "é\u2028\u00a0\U0001f600", '\r\n\t\x00\x1b"\\/', "x" * 600],
)
def test_fast_verification_digest_agrees_with_the_json_spec(text: str | None) -> None:
    from datetime import UTC, datetime

    from audit.trail import _fast_digest, _row_digest

    at = datetime(2026, 3, 1, 8, 0, 0, 123, tzinfo=UTC).isoformat(timespec="microseconds")
    row = (7, at, "auth:login:failure", "failure", text, text, text, text, text, text, text,
           text, '{"a":"' + (text or "") + '"}')  # fmt: skip
    fields = dict(
        zip(
            (
                "seq",
                "occurred_at",
                "action",
                "outcome",
                "actor_id",
                "actor_org_id",
                "target_type",
                "target_id",
                "target_departement",
                "source_ip",
                "user_agent",
                "request_id",
                "details",
            ),
            row,
            strict=True,
        )
    )
    assert _fast_digest("ab" * 32, row) == _row_digest("ab" * 32, fields)
