"""Alerts: the job that hands the new audit rows to the detectors, and raises what they find.

The job (`filr jobs alerts`, every minute) keeps a cursor on the audit sequence in
`alert_job_state`, so each row is looked at once; an alert still open for the same kind,
subject and scope is updated (occurrences, last seen) rather than raised again. E-mails carry no
personal data: the kind of alert and a link to the workspace. The rules themselves are in
`portal.securite.detectors`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

import audit
from audit import AuditAction, AuditEvent
from portal.accounts.models import AccountStatus, Role, User, UserRole
from portal.mail import Mailer, MailError
from portal.securite.detectors import SCANNED_ACTIONS, Hit, chain_hit, detect
from portal.securite.models import (
    ALERT_KIND_LABELS,
    AlertJobState,
    AlertKind,
    AlertStatus,
    SecurityAlert,
)
from portal.settings import Settings

log = logging.getLogger("portal.securite")

FIRST_RUN_LOOKBACK = timedelta(hours=24)


@dataclass
class AlertReport:
    """What one run of the alert job did."""

    scanned: int = 0
    raised: int = 0
    updated: int = 0
    mails_sent: int = 0
    mails_failed: int = 0
    chain_checked: bool = False
    chain_valid: bool | None = None
    last_seq: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


def _state(session: Session, now: datetime) -> AlertJobState:
    state = session.get(AlertJobState, 1)
    if state is None:
        # First run on an existing trail: look back one day only, so that switching the job
        # on does not mail months of history to the officers.
        start = session.execute(
            sa.select(sa.func.max(AuditEvent.seq)).where(
                AuditEvent.occurred_at < now - FIRST_RUN_LOOKBACK
            )
        ).scalar()
        state = AlertJobState(id=1, last_seq=start or 0)
        session.add(state)
        session.flush()
    return state


# --- raising ---------------------------------------------------------------------------


def _merge_details(old: str, new: dict[str, Any]) -> str:
    try:
        merged: dict[str, Any] = json.loads(old)
    except ValueError:
        merged = {}
    for key, value in new.items():
        if key in ("departement", "network"):
            seen = merged.get(key + "s", [])
            if value not in seen:
                seen = sorted([*seen, value])[:20]
            merged[key + "s"] = seen
        elif key == "count_in_window":
            merged[key] = max(int(merged.get(key, 0)), int(value))
        else:
            merged[key] = value
    return json.dumps(merged, sort_keys=True)


# Kind, subject, and scope (département, organisation): who is told is part of the identity.
_AlertKey = tuple[str, str, str, str | None, str | None]


def _same(column: InstrumentedAttribute[str | None], value: str | None) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def raise_alert(
    session: Session,
    hit: Hit,
    ctx: audit.Context,
    cache: dict[_AlertKey, SecurityAlert] | None = None,
) -> tuple[SecurityAlert, bool]:
    """Raise *hit*, or fold it into the open alert of the same kind, subject and scope.

    Returns the alert and True when it is new. A detection in another scope (another
    département, another organisation) opens its own alert: folded into one of a different
    scope, its officers would never hear of it and the other scope's would read about it.
    *cache* keeps the open alerts already met in this run (one query per subject, not per hit).
    """
    key = (
        str(hit.kind),
        hit.subject_type,
        hit.subject_id[:64],
        hit.departement,
        hit.organisation_id,
    )
    cache = {} if cache is None else cache
    alert = (
        cache.get(key)
        or session.execute(
            sa.select(SecurityAlert)
            .where(
                SecurityAlert.kind == hit.kind,
                SecurityAlert.subject_type == hit.subject_type,
                SecurityAlert.subject_id == key[2],
                _same(SecurityAlert.departement_code, hit.departement),
                _same(SecurityAlert.organisation_id, hit.organisation_id),
                SecurityAlert.status == AlertStatus.NEW,
            )
            .order_by(SecurityAlert.created_at.desc())
            .limit(1)
        ).scalar_one_or_none()
    )
    if alert is not None:
        cache[key] = alert
        alert.occurrences += hit.occurrences
        alert.last_seen_at = max(alert.last_seen_at, hit.last_at)
        alert.last_event_seq = hit.last_seq or alert.last_event_seq
        alert.details = _merge_details(alert.details, hit.details)
        return alert, False
    alert = SecurityAlert(
        kind=hit.kind,
        status=AlertStatus.NEW,
        departement_code=hit.departement,
        organisation_id=hit.organisation_id,
        subject_type=hit.subject_type,
        subject_id=hit.subject_id[:64],
        first_seen_at=hit.first_at,
        last_seen_at=hit.last_at,
        occurrences=hit.occurrences,
        first_event_seq=hit.first_seq,
        last_event_seq=hit.last_seq,
        details=_merge_details("{}", hit.details),
    )
    session.add(alert)
    session.flush()
    cache[key] = alert
    audit.record(
        session,
        AuditAction.ALERT_RAISED,
        context=ctx,
        target=audit.Target("alert", alert.id, alert.departement_code),
        details={"kind": str(hit.kind), "organisation_id": hit.organisation_id},
    )
    return alert, True


# --- the job ---------------------------------------------------------------------------


def _verify_chain_if_due(
    session: Session, settings: Settings, now: datetime, report: AlertReport, force: bool
) -> Hit | None:
    state = _state(session, now)
    due = (
        force
        or state.chain_checked_at is None
        or now - state.chain_checked_at >= timedelta(minutes=settings.alert_chain_verify_minutes)
    )
    if not due:
        return None
    session.commit()
    # verify_chain reads the head first and verifies up to it: rows committed meanwhile by
    # other servers do not look like a broken chain (a false alarm to every officer).
    result = audit.verify_chain(session)
    is_valid, broken, reason = result.is_valid, result.first_broken_seq, result.reason
    state = _state(session, now)
    state.chain_checked_at = now
    state.chain_is_valid = is_valid
    state.chain_checked_rows = result.checked
    state.chain_first_broken_seq = broken
    state.chain_reason = (reason or "")[:64] or None
    report.chain_checked = True
    report.chain_valid = is_valid
    if is_valid:
        return None
    return chain_hit(now, None, broken, reason)


def scan(
    session: Session,
    settings: Settings,
    now: datetime,
    ctx: audit.Context,
    *,
    batch: int = 5000,
    verify_chain: bool = False,
    dry_run: bool = False,
) -> AlertReport:
    """Scan the audit rows written since the last run, raise alerts, move the cursor."""
    report = AlertReport()
    hits: list[Hit] = []
    chain = _verify_chain_if_due(session, settings, now, report, verify_chain)
    if chain is not None:
        hits.append(chain)
    state = _state(session, now)
    head = session.execute(sa.select(sa.func.max(AuditEvent.seq))).scalar() or 0
    cursor = state.last_seq
    while cursor < head:
        events = list(
            session.execute(
                sa.select(AuditEvent)
                .where(
                    AuditEvent.seq > cursor,
                    AuditEvent.seq <= head,
                    AuditEvent.action.in_(SCANNED_ACTIONS),
                )
                .order_by(AuditEvent.seq)
                .limit(batch)
            ).scalars()
        )
        if not events:
            cursor = head
            break
        report.scanned += len(events)
        hits.extend(detect(session, settings, events))
        cursor = events[-1].seq
    open_alerts: dict[_AlertKey, SecurityAlert] = {}
    for hit in hits:
        report.kinds[str(hit.kind)] = report.kinds.get(str(hit.kind), 0) + 1
        if dry_run:
            continue
        _alert, is_new = raise_alert(session, hit, ctx, open_alerts)
        if is_new:
            report.raised += 1
        else:
            report.updated += 1
    report.last_seq = cursor
    if dry_run:
        session.rollback()
        return report
    state = _state(session, now)
    state.last_seq = cursor
    state.last_run_at = now
    session.commit()
    return report


# --- e-mails ---------------------------------------------------------------------------


def alert_mail(alert: SecurityAlert, base_url: str) -> tuple[str, str]:
    """Subject and body of the e-mail of *alert*: the kind and a link, no personal data."""
    subject = "Fil'R : alerte de sécurité"
    body = (
        "Bonjour,\n\n"
        "Une alerte de sécurité relevant de votre périmètre a été détectée sur Fil'R :\n\n"
        f"    {ALERT_KIND_LABELS[AlertKind(alert.kind)]}\n\n"
        "Consultez-la dans votre espace sécurité (connexion avec double authentification) :\n"
        f"{base_url}/securite/alertes/{alert.id}\n\n"
        "Ce message ne contient volontairement aucun détail : ils sont dans le portail.\n"
        "-- \nFil'R (message automatique, ne pas répondre)\n"
    )
    return subject, body


def security_officers(session: Session) -> list[User]:
    """Active accounts holding the `securite` role."""
    return list(
        session.execute(
            sa.select(User)
            .join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == Role.SECURITE, User.status == AccountStatus.ACTIVE)
            .order_by(User.id)
        ).scalars()
    )


def platform_operators(session: Session) -> list[User]:
    """Active accounts holding the `admin` role (the platform's operators)."""
    return list(
        session.execute(
            sa.select(User)
            .join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == Role.ADMIN, User.status == AccountStatus.ACTIVE)
            .order_by(User.id)
        ).scalars()
    )


# Alerts about the platform itself, e-mailed to its operators as well as to the national
# security officers: they are the ones who can mend a backup site.
OPERATOR_ALERT_KINDS = frozenset({AlertKind.BACKUP_FAILED})


# Who was already e-mailed about an alert, kept in its details under this key (ids only,
# never an address): a refused mailbox must not make the others receive the alert every minute.
NOTIFICATION_KEY = "_notification"
# Failed deliveries to one officer before the job gives up on that officer for this alert:
# half an hour at one run a minute rides out a relay restart, not a mailbox that refuses.
MAIL_MAX_ATTEMPTS = 30


@dataclass
class _Notification:
    """The e-mail bookkeeping of one alert: officers mailed, failed attempts per officer."""

    mailed: set[str] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, alert: SecurityAlert) -> _Notification:
        """The bookkeeping stored in *alert*'s details (empty when there is none)."""
        try:
            stored = json.loads(alert.details).get(NOTIFICATION_KEY)
        except (ValueError, AttributeError):
            stored = None
        if not isinstance(stored, dict):
            return cls()
        mailed = stored.get("mailed")
        attempts = stored.get("attempts")
        return cls(
            mailed={str(i) for i in mailed} if isinstance(mailed, list) else set(),
            attempts={str(k): int(v) for k, v in attempts.items() if isinstance(v, int)}
            if isinstance(attempts, dict)
            else {},
        )

    def is_done_for(self, officer_id: str) -> bool:
        """True when *officer_id* was mailed, or its mailbox given up on."""
        return officer_id in self.mailed or self.attempts.get(officer_id, 0) >= MAIL_MAX_ATTEMPTS

    def store(self, alert: SecurityAlert) -> None:
        """Write the bookkeeping into *alert*'s details, keeping the detection details."""
        try:
            details = json.loads(alert.details)
        except ValueError:
            details = {}
        if not isinstance(details, dict):
            details = {}
        details[NOTIFICATION_KEY] = {
            "mailed": sorted(self.mailed),
            "attempts": {k: v for k, v in sorted(self.attempts.items()) if k not in self.mailed},
        }
        alert.details = json.dumps(details, sort_keys=True)


def notify_new_alerts(
    session: Session,
    mailer: Mailer,
    base_url: str,
    now: datetime,
    report: AlertReport,
    *,
    only: str | None = None,
) -> None:
    """E-mail every alert not yet notified (or only the alert *only*) to the security officers
    whose scope covers it.

    Each officer is mailed once per alert: those already mailed are remembered in the alert's
    details, so a failed delivery is retried for its recipient only, at most
    `MAIL_MAX_ATTEMPTS` times. The alert is notified once every officer is mailed or given up on.
    """
    from portal.securite.permissions import can_see_alert
    from portal.securite.services import scope_for

    query = sa.select(SecurityAlert).where(
        SecurityAlert.notified_at.is_(None), SecurityAlert.status == AlertStatus.NEW
    )
    if only is not None:
        query = query.where(SecurityAlert.id == only)
    pending = list(session.execute(query.order_by(SecurityAlert.created_at)).scalars())
    if not pending:
        return
    officers = [(o.id, o.email, scope_for(session, o)) for o in security_officers(session)]
    operators = [(o.id, o.email) for o in platform_operators(session)]
    session.commit()  # no transaction is held while the relay is slow

    def recipients(alert: SecurityAlert) -> list[tuple[str, str]]:
        chosen = [(i, email) for i, email, scope in officers if can_see_alert(scope, alert)]
        if AlertKind(alert.kind) in OPERATOR_ALERT_KINDS:
            known = {i for i, _ in chosen}
            chosen += [(i, email) for i, email in operators if i not in known]
        return chosen

    for alert in pending:
        subject, body = alert_mail(alert, base_url)
        notification = _Notification.of(alert)
        mailed: set[str] = set()
        failed: set[str] = set()
        for officer_id, email in recipients(alert):
            if notification.is_done_for(officer_id):
                continue
            try:
                mailer.send(email, subject, body)
            except MailError:
                log.warning("alert e-mail not delivered (alert %s)", alert.id)
                report.mails_failed += 1
                failed.add(officer_id)
            else:
                report.mails_sent += 1
                mailed.add(officer_id)
        # Re-read the alert: a concurrent scan may have folded a detection into its details.
        session.refresh(alert)
        notification = _Notification.of(alert)
        notification.mailed |= mailed
        for officer_id in failed - notification.mailed:
            notification.attempts[officer_id] = notification.attempts.get(officer_id, 0) + 1
        if mailed or failed:
            notification.store(alert)
        if all(notification.is_done_for(officer_id) for officer_id, _email in recipients(alert)):
            alert.notified_at = now
        session.commit()


def alert_at_once(
    session: Session, mailer: Mailer, base_url: str, hit: Hit, ctx: audit.Context
) -> SecurityAlert:
    """Raise *hit* now, outside the job, commit it, and e-mail it to its officers at once.

    For what cannot wait a minute for the job (damaged stored data: tampering or a failing
    store). The alert is committed before any e-mail is tried: a relay that is down leaves it
    pending, and the job's next run retries the e-mail.
    """
    alert, _is_new = raise_alert(session, hit, ctx)
    alert_id = alert.id
    session.commit()
    notify_new_alerts(session, mailer, base_url, hit.last_at, AlertReport(), only=alert_id)
    return alert


def run_alert_job(
    session: Session,
    settings: Settings,
    mailer: Mailer,
    now: datetime,
    ctx: audit.Context,
    *,
    verify_chain: bool = False,
    dry_run: bool = False,
) -> AlertReport:
    """One run of `filr jobs alerts`: scan, raise, e-mail, and audit what was done."""
    report = scan(session, settings, now, ctx, verify_chain=verify_chain, dry_run=dry_run)
    if dry_run:
        return report
    notify_new_alerts(session, mailer, settings.base_url, now, report)
    # A run every minute that found nothing leaves no row: the trail records work, not ticks.
    if report.raised or report.updated or report.mails_sent or report.mails_failed:
        audit.record(session, AuditAction.JOB_RUN, context=ctx, details={
            "job": "alerts", "scanned": report.scanned, "raised": report.raised,
            "updated": report.updated, "mails_sent": report.mails_sent,
            "mails_failed": report.mails_failed, "last_seq": report.last_seq,
        })  # fmt: skip
    elif report.chain_checked:
        audit.record(session, AuditAction.JOB_RUN, context=ctx, details={
            "job": "alerts", "chain_valid": report.chain_valid, "last_seq": report.last_seq,
        })  # fmt: skip
    session.commit()
    return report
