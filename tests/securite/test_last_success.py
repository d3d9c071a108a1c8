"""The security page's "last successful backup" counts successful runs only (review finding 9),
and a job that exits non-zero is recorded as a failure (review finding 12)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import Flask

import audit
from audit import AuditAction, AuditEvent, Outcome
from portal.db import db, utcnow
from portal.ops.schedule import find_entry
from portal.ops.scheduler import report_failure
from portal.securite.services import last_successful_run


def test_a_failed_backup_is_never_the_last_successful_one(app: Flask) -> None:
    with app.app_context():
        # Given a backup that succeeded, then a night whose backup failed (as the scheduler
        # records it: a job:run row of outcome failure naming the job)
        audit.record(
            db.session, AuditAction.JOB_RUN, target=audit.Target("job", "backup"),
            details={"job": "backup", "size": 1},
        )  # fmt: skip
        db.session.commit()
        succeeded = last_successful_run(db.session, "backup")
        assert succeeded is not None
        db.session.commit()  # the scheduler writes through its own session
        report_failure(db.engine, find_entry("backup"), 1, 3, None)
        failed_at = db.session.execute(
            sa.select(AuditEvent.occurred_at).where(AuditEvent.outcome == str(Outcome.FAILURE))
        ).scalar_one()
        assert failed_at >= succeeded
        # Then the last success is still the first run; another job's success is not one
        audit.record(
            db.session, AuditAction.JOB_RUN, target=audit.Target("job", "backup-drill"),
            details={"job": "backup-drill"},
        )  # fmt: skip
        db.session.commit()
        assert last_successful_run(db.session, "backup") == succeeded
        assert utcnow() - succeeded < timedelta(minutes=5)
