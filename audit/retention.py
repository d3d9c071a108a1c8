"""Retention of the trail (purge from a checkpoint) and the daily head hash (framework-free)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.models import AuditCheckpoint, AuditEvent
from audit.trail import NO_CONTEXT, Context, VerificationResult, latest_checkpoint, record
from audit.trail import verify_chain as _verify_chain


class RetentionRefused(RuntimeError):
    """The part of the chain to purge does not verify: purging it would destroy evidence."""

    def __init__(self, result: VerificationResult) -> None:
        super().__init__(
            f"audit chain broken at row {result.first_broken_seq} ({result.reason}): "
            "the purge would destroy evidence, nothing was deleted"
        )
        self.result = result


def months_before(moment: datetime, months: int) -> datetime:
    """*moment* minus *months* calendar months (the day is clipped to the month's length)."""
    index = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class RetentionReport:
    """What the retention purge did (or, with ``dry_run``, would do)."""

    cutoff: datetime
    rows_deleted: int
    checkpoint_seq: int | None
    dry_run: bool


def _last_seq_to_purge(session: Session, cutoff: datetime) -> int | None:
    # The purge removes a prefix of the chain: every row before the first one still within the
    # retention (by seq, so a server's clock skew can only keep a row longer, never cut it).
    first_kept = session.execute(
        sa.select(sa.func.min(AuditEvent.seq)).where(AuditEvent.occurred_at >= cutoff)
    ).scalar_one()
    if first_kept is not None:
        return int(first_kept) - 1
    last = session.execute(sa.select(sa.func.max(AuditEvent.seq))).scalar_one()
    return None if last is None else int(last)


def purge_expired_events(
    session: Session,
    *,
    cutoff: datetime,
    dry_run: bool = False,
    batch: int = 100_000,
    context: Context = NO_CONTEXT,
    retention_months: int | None = None,
) -> RetentionReport:
    """Delete the rows recorded before *cutoff*, in batches, each behind a checkpoint.

    Run with the tables' owner (on PostgreSQL the application's role may not delete). Each batch
    is one transaction: a checkpoint naming the last deleted row and its hash, the deletion, and
    an ``audit:purged`` row; the chain verifies from the checkpoint on. The rows to delete are
    verified first: a broken chain is never purged (`RetentionRefused`).
    """
    checkpoint = latest_checkpoint(session)
    start = checkpoint.seq if checkpoint else 0
    upto = _last_seq_to_purge(session, cutoff)
    if upto is None or upto <= start:
        session.rollback()
        return RetentionReport(cutoff, 0, checkpoint.seq if checkpoint else None, dry_run)
    if dry_run:
        count = session.execute(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.seq > start, AuditEvent.seq <= upto)
        ).scalar_one()
        session.rollback()
        return RetentionReport(cutoff, int(count), checkpoint.seq if checkpoint else None, True)
    verified = _verify_chain(session, upto_seq=upto)
    session.rollback()
    if not verified.is_valid:
        raise RetentionRefused(verified)
    deleted = 0
    last_checkpoint: int | None = None
    low = start
    while low < upto:
        high = min(low + max(1, batch), upto)
        if session.get_bind().dialect.name == "postgresql":
            # Lets the append-only trigger (migration 0005) accept this transaction's DELETE.
            session.execute(sa.select(sa.func.set_config("filr.audit_retention", "on", True)))
        last_hash = session.execute(
            sa.select(AuditEvent.hash).where(AuditEvent.seq == high)
        ).scalar_one()
        result = session.execute(
            sa.delete(AuditEvent).where(AuditEvent.seq > low, AuditEvent.seq <= high)
        )
        n = int(result.rowcount)  # type: ignore[attr-defined] # DML returns a CursorResult
        session.add(
            AuditCheckpoint(seq=high, hash=last_hash, rows_deleted=n, created_at=datetime.now(UTC))
        )
        record(
            session,
            AuditAction.AUDIT_PURGED,
            context=context,
            details={
                "cutoff": cutoff.isoformat(),
                "retention_months": retention_months,
                "from_seq": low + 1,
                "to_seq": high,
                "rows_deleted": n,
            },
        )
        session.commit()
        deleted += n
        last_checkpoint = high
        low = high
    return RetentionReport(cutoff, deleted, last_checkpoint, False)


@dataclass(frozen=True)
class DayHead:
    """The chain's head at the end of one UTC day: its last row's seq and hash."""

    day: date
    seq: int
    hash: str
    occurred_at: datetime


def head_of_day(session: Session, day: date) -> DayHead | None:
    """The last row recorded before midnight UTC ending *day* (None if none, or purged)."""
    end = datetime.combine(day + timedelta(days=1), time(), UTC)
    row = session.execute(
        sa.select(AuditEvent.seq, AuditEvent.hash, AuditEvent.occurred_at)
        .where(AuditEvent.occurred_at < end)
        .order_by(AuditEvent.occurred_at.desc(), AuditEvent.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return DayHead(day, int(row.seq), str(row.hash), row.occurred_at)
