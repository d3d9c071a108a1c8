"""The verbs of the security officer's workspace: scoped reads that audit themselves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, AuditEvent, Outcome
from audit.query import AuditFilter, Scope, iter_matching, search
from portal.accounts.models import User
from portal.db import utcnow
from portal.deposits.models import Deposit, DepositFile
from portal.orgs.models import FtTerritory, Organisation, OrgKind
from portal.securite.models import AlertJobState, AlertStatus, SecurityAlert
from portal.securite.permissions import audit_scope_of, mandated_by

# 20 rows: a page stays readable on a phone (the rows carry labelled details).
PAGE_SIZE = 20


class AlertError(Exception):
    """An alert cannot change as asked (the message is for the user, in French)."""


def scope_for(session: Session, user: User | None) -> Scope | None:
    """The audit scope of *user* (None: not a security officer)."""
    if user is None:
        return None
    mandated: frozenset[str] = frozenset()
    org = user.organisation
    if OrgKind(org.kind) is OrgKind.DEPARTEMENT and org.departement_code:
        providers = session.execute(
            sa.select(Organisation).where(
                Organisation.kind == OrgKind.PRESTATAIRE,
                Organisation.departement_code == org.departement_code,
            )
        ).scalars()
        mandated = mandated_by(org, providers)
    return audit_scope_of(user, mandated)


def filter_details(flt: AuditFilter) -> dict[str, Any]:
    """The filter as audit details: only the criteria given, datetimes in ISO form."""
    details: dict[str, Any] = {}
    for key, value in asdict(flt).items():
        if value is None:
            continue
        details[key] = value.isoformat() if isinstance(value, datetime) else str(value)
    return details


def search_events(
    session: Session,
    officer: User,
    scope: Scope,
    flt: AuditFilter,
    ctx: audit.Context,
    *,
    before_seq: int | None = None,
    limit: int = PAGE_SIZE,
    view: str = "search",
) -> list[AuditEvent]:
    """One page of the rows of *scope* matching *flt*, newest first; the search is audited."""
    rows = list(search(session, flt, scope, limit=limit, before_seq=before_seq))
    details = filter_details(flt)
    details.update(view=view, results=len(rows))
    if before_seq is not None:
        details["before_seq"] = before_seq
    audit.record(
        session,
        AuditAction.AUDIT_SEARCHED,
        actor=officer.audit_actor,
        context=ctx,
        details=details,
    )
    session.commit()
    return rows


def start_export(
    session: Session, officer: User, scope: Scope, flt: AuditFilter, fmt: str, ctx: audit.Context
) -> Iterator[AuditEvent]:
    """Audit the export of *flt* (committed before the first byte), then stream its rows."""
    details = filter_details(flt)
    details["format"] = fmt
    details["national"] = scope.departements is None
    audit.record(
        session,
        AuditAction.AUDIT_EXPORTED,
        actor=officer.audit_actor,
        context=ctx,
        details=details,
    )
    session.commit()
    return iter_matching(session, flt, scope)


def stream_export(session: Session, events: Iterator[AuditEvent]) -> Iterator[AuditEvent]:
    """Yield *events* (from `start_export`) to a streamed response, then close *session*.

    The rows are read after the view has returned and its session was closed at teardown, so
    this commits and closes that session itself.
    """
    try:
        for event in events:
            # End each read transaction before the client reads on: on SQLite every
            # transaction holds the database's write lock, which a slow download must not keep.
            session.commit()
            yield event
    finally:
        session.close()


def deposit_events(
    session: Session,
    officer: User,
    deposit: Deposit,
    ctx: audit.Context,
    *,
    before_seq: int | None = None,
    limit: int = PAGE_SIZE,
) -> list[AuditEvent]:
    """Rows about *deposit* and its files, newest first (the caller checked the scope)."""
    file_ids = list(
        session.execute(
            sa.select(DepositFile.id).where(DepositFile.deposit_id == deposit.id)
        ).scalars()
    )
    # Details are canonical JSON (sorted keys, no spaces): a download row names its deposit
    # exactly so. Deposit ids are hex, so the pattern holds no LIKE wildcard.
    about = sa.or_(
        AuditEvent.target_id.in_([deposit.id, *file_ids]),
        AuditEvent.details.like(f'%"deposit_id":"{deposit.id}"%'),
    )
    stmt = sa.select(AuditEvent).where(
        about, AuditEvent.target_departement == deposit.departement_code
    )
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    rows = list(session.execute(stmt.order_by(AuditEvent.seq.desc()).limit(limit)).scalars())
    audit.record(
        session,
        AuditAction.AUDIT_SEARCHED,
        actor=officer.audit_actor,
        context=ctx,
        target=audit.Target("deposit", deposit.id, deposit.departement_code),
        details={"view": "deposit-timeline", "results": len(rows)},
    )
    session.commit()
    return rows


def names_of(session: Session, events: list[AuditEvent]) -> tuple[dict[str, str], dict[str, str]]:
    """Display names of the actors, of the accounts the rows act on, and of organisations.

    An account is named with its organisation (`Alex Martin (CD 62)`).
    """
    user_ids = {e.actor_id for e in events if e.actor_id}
    user_ids |= {e.target_id for e in events if e.target_type == "user" and e.target_id}
    org_ids = {e.actor_org_id for e in events if e.actor_org_id}
    users = {
        u.id: f"{u.full_name} ({u.organisation.name})"
        for u in session.execute(sa.select(User).where(User.id.in_(user_ids))).scalars()
    }
    orgs = {
        o.id: o.name
        for o in session.execute(
            sa.select(Organisation).where(Organisation.id.in_(org_ids))
        ).scalars()
    }
    return users, orgs


def organisations_in(session: Session, scope: Scope) -> list[Organisation]:
    """Organisations an officer of *scope* may filter on."""
    stmt = sa.select(Organisation).order_by(Organisation.name)
    if scope.departements is not None:
        in_space = sa.select(FtTerritory.organisation_id).where(
            FtTerritory.departement_code.in_(scope.departements)
        )
        stmt = stmt.where(
            sa.or_(
                Organisation.id.in_(scope.organisation_ids),
                Organisation.departement_code.in_(scope.departements),
                Organisation.id.in_(in_space),
            )
        )
    return list(session.execute(stmt).scalars())


# --- alerts ----------------------------------------------------------------------------


def _alert_condition(scope: Scope) -> sa.ColumnElement[bool]:
    """SQL twin of `permissions.can_see_alert`."""
    if scope.departements is None:
        return sa.true()
    return sa.or_(
        SecurityAlert.subject_type == "chain",
        SecurityAlert.departement_code.in_(scope.departements),
        SecurityAlert.organisation_id.in_(scope.organisation_ids),
    )


def visible_alerts(
    session: Session, scope: Scope, status: str | None = None, limit: int = 200
) -> list[SecurityAlert]:
    """Alerts of *scope*, newest first."""
    stmt = sa.select(SecurityAlert).where(_alert_condition(scope))
    if status is not None:
        stmt = stmt.where(SecurityAlert.status == status)
    stmt = stmt.order_by(SecurityAlert.last_seen_at.desc(), SecurityAlert.id).limit(limit)
    return list(session.execute(stmt).scalars())


def count_new_alerts(session: Session, scope: Scope) -> int:
    """How many alerts of *scope* wait for acknowledgement."""
    return int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(SecurityAlert)
            .where(_alert_condition(scope), SecurityAlert.status == AlertStatus.NEW)
        ).scalar_one()
    )


def acknowledge(
    session: Session, officer: User, alert: SecurityAlert, ctx: audit.Context
) -> SecurityAlert:
    """Mark *alert* as acknowledged by *officer* (conditional: one officer wins), audited."""
    done = session.execute(
        sa.update(SecurityAlert)
        .where(SecurityAlert.id == alert.id, SecurityAlert.status == AlertStatus.NEW)
        .values(
            status=AlertStatus.ACKNOWLEDGED,
            acknowledged_at=utcnow(),
            acknowledged_by_id=officer.id,
        )
    )
    if done.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.rollback()
        raise AlertError("Cette alerte a déjà été acquittée.")
    audit.record(
        session,
        AuditAction.ALERT_ACKNOWLEDGED,
        actor=officer.audit_actor,
        context=ctx,
        target=audit.Target("alert", alert.id, alert.departement_code),
        details={"kind": alert.kind},
    )
    session.commit()
    session.refresh(alert)
    return alert


def chain_status(session: Session) -> AlertJobState | None:
    """The chain status recorded by the last alert job (None before its first run)."""
    return session.get(AlertJobState, 1)


# A nightly backup older than this is late: the night's run failed, or did not run.
BACKUP_LATE_AFTER = timedelta(hours=26)


def last_successful_run(session: Session, job: str) -> datetime | None:
    """When the job *job* last succeeded: its latest `job:run` row of outcome success (None if
    it never did). The scheduler and `@job` also write `job:run` rows for failed runs (outcome
    failure): those never count.
    """
    return session.execute(
        sa.select(AuditEvent.occurred_at)
        .where(
            AuditEvent.action == str(AuditAction.JOB_RUN),
            AuditEvent.outcome == str(Outcome.SUCCESS),
            sa.or_(
                AuditEvent.target_id == job,
                # Rows written before the job was their target (see ops.metrics.last_job_runs).
                sa.and_(
                    AuditEvent.target_id.is_(None),
                    AuditEvent.details.like(f'%"job":"{job}"%'),
                ),
            ),
        )
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
