"""Filtered, scoped reading of the audit trail (framework-free; SQLAlchemy only)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit.actions import AuditAction
from audit.models import AuditEvent


@dataclass(frozen=True)
class Scope:
    """Which rows a reader may see: ``departements=None`` is national (every row)."""

    departements: frozenset[str] | None
    # Rows whose actor belongs to one of these organisations are in scope too (a security
    # officer sees what the members of their own organisation did, whatever the département).
    organisation_ids: frozenset[str] = frozenset()

    @property
    def is_national(self) -> bool:
        """True when the scope covers every row."""
        return self.departements is None


@dataclass(frozen=True)
class AuditFilter:
    """Search criteria; every criterion left to None is ignored."""

    start: datetime | None = None  # occurred_at >= start
    end: datetime | None = None  # occurred_at < end
    actor_id: str | None = None
    actor_org_id: str | None = None
    departement: str | None = None
    action: str | None = None  # exact name, or a prefix ending with ":" ("auth:")
    outcome: str | None = None
    source_ip: str | None = None
    target_type: str | None = None
    target_id: str | None = None


def scope_condition(scope: Scope) -> sa.ColumnElement[bool]:
    """The SQL condition selecting the rows of *scope* (true for the national scope)."""
    if scope.departements is None:
        return sa.true()
    parts: list[sa.ColumnElement[bool]] = []
    if scope.departements:
        parts.append(AuditEvent.target_departement.in_(sorted(scope.departements)))
    if scope.organisation_ids:
        parts.append(AuditEvent.actor_org_id.in_(sorted(scope.organisation_ids)))
    return sa.or_(*parts) if parts else sa.false()


def filter_conditions(
    flt: AuditFilter, *, period_by_index: bool = True
) -> list[sa.ColumnElement[bool]]:
    """The SQL conditions of *flt* (all bound parameters).

    With *period_by_index* false, the period is still checked on every row but kept away from
    the occurred_at index: once `seq_bounds` limits the range, ANDing a bitmap of every row of
    the period costs more than it saves.
    """
    conditions: list[sa.ColumnElement[bool]] = []
    occurred_at: sa.ColumnElement[datetime] = AuditEvent.occurred_at.expression
    if not period_by_index:
        occurred_at = sa.func.coalesce(AuditEvent.occurred_at, AuditEvent.occurred_at)
    if flt.start is not None:
        conditions.append(occurred_at >= flt.start)
    if flt.end is not None:
        conditions.append(occurred_at < flt.end)
    if flt.actor_id is not None:
        conditions.append(AuditEvent.actor_id == flt.actor_id)
    if flt.actor_org_id is not None:
        conditions.append(AuditEvent.actor_org_id == flt.actor_org_id)
    if flt.departement is not None:
        conditions.append(AuditEvent.target_departement == flt.departement)
    if flt.action is not None:
        if flt.action.endswith(":"):
            # record() stores AuditAction values only, so a family is the list of its names:
            # an IN on the (action, seq) index, whatever the database's collation (a LIKE
            # prefix can use a b-tree only under the C collation).
            family = sorted(a.value for a in AuditAction if a.value.startswith(flt.action))
            conditions.append(AuditEvent.action.in_(family) if family else sa.false())
        else:
            conditions.append(AuditEvent.action == flt.action)
    if flt.outcome is not None:
        conditions.append(AuditEvent.outcome == flt.outcome)
    if flt.source_ip is not None:
        conditions.append(AuditEvent.source_ip == flt.source_ip)
    if flt.target_type is not None:
        conditions.append(AuditEvent.target_type == flt.target_type)
    if flt.target_id is not None:
        conditions.append(AuditEvent.target_id == flt.target_id)
    return conditions


# Rows are appended with the time of their append (audit.record reads the clock once it holds
# the chain head's lock), so seq follows occurred_at up to the servers' clock skew. A period is
# turned into a seq range, with this margin on each side, through two probes of the
# occurred_at index: the search then scans only that range of the (criterion, seq) indexes
# instead of walking the whole trail backwards from its newest row (benchmarks/audit.py).
# Rows recorded with an explicit time more than this far in the past (tests, imports) may be
# missed by a period search.
SEQ_TIME_MARGIN = timedelta(hours=1)


def _shifted(moment: datetime | None, delta: timedelta) -> datetime | None:
    """*moment* + *delta*; None when there is none or it lies beyond the calendar's ends."""
    if moment is None:
        return None
    try:
        return moment + delta
    except OverflowError:  # no row lies out there: the period needs no bound on that side
        return None


def seq_bounds(session: Session, flt: AuditFilter) -> list[sa.ColumnElement[bool]]:
    """Conditions on seq equivalent to the period of *flt* (see SEQ_TIME_MARGIN)."""
    conditions: list[sa.ColumnElement[bool]] = []
    low = _shifted(flt.start, -SEQ_TIME_MARGIN)
    high = _shifted(flt.end, SEQ_TIME_MARGIN)
    if low is not None:
        before = session.execute(
            sa.select(AuditEvent.seq)
            .where(AuditEvent.occurred_at < low)
            .order_by(AuditEvent.occurred_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        if before is not None:
            conditions.append(AuditEvent.seq > before)
    if high is not None:
        after = session.execute(
            sa.select(AuditEvent.seq)
            .where(AuditEvent.occurred_at >= high)
            .order_by(AuditEvent.occurred_at)
            .limit(1)
        ).scalar_one_or_none()
        if after is not None:
            conditions.append(AuditEvent.seq < after)
    return conditions


def conditions(session: Session, flt: AuditFilter, scope: Scope) -> list[sa.ColumnElement[bool]]:
    """Every SQL condition of a scoped search (the period also as a seq range)."""
    bounds = seq_bounds(session, flt)
    return [
        scope_condition(scope),
        *filter_conditions(flt, period_by_index=not bounds),
        *bounds,
    ]


def _matching(session: Session, flt: AuditFilter, scope: Scope) -> sa.Select[AuditEvent]:
    return sa.select(AuditEvent).where(*conditions(session, flt, scope))


def _custom_plans(session: Session) -> None:
    # psycopg prepares a statement run five times on a connection, and PostgreSQL may then
    # switch to a generic plan, blind to the values: for these searches it walks the whole
    # trail backwards (seconds on 10 million rows). Plan each search for its own values.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))


def search(
    session: Session,
    flt: AuditFilter,
    scope: Scope,
    *,
    limit: int = 50,
    before_seq: int | None = None,
) -> list[AuditEvent]:
    """One page of matching events, newest first; pass the last seq as *before_seq* for the next."""
    _custom_plans(session)
    query = _matching(session, flt, scope)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    query = query.order_by(AuditEvent.seq.desc()).limit(max(1, limit))
    return list(session.execute(query).scalars().all())


def iter_matching(
    session: Session,
    flt: AuditFilter,
    scope: Scope,
    *,
    batch: int = 1000,
    end_read_transactions: bool = False,
) -> Iterator[AuditEvent]:
    """Every matching event, oldest first, fetched in keyset batches (constant memory).

    With *end_read_transactions*, the session's transaction is rolled back after each batch:
    a long export then holds no lock (SQLite takes its write lock at BEGIN, see portal.db)
    and no snapshot; only for sessions with nothing pending.
    """
    base = _matching(session, flt, scope).order_by(AuditEvent.seq).limit(max(1, batch))
    last: int | None = None
    while True:
        _custom_plans(session)  # again after each rollback
        query = base if last is None else base.where(AuditEvent.seq > last)
        rows = session.execute(query).scalars().all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        # Detach only the rows of this batch (never the caller's other objects) so that a
        # long export does not grow the identity map.
        for row in rows:
            if row in session:
                session.expunge(row)
        if end_read_transactions:
            session.rollback()
        if len(rows) < batch:
            return
