"""Alert detection: a plain function that scans the new audit rows and raises alerts.

The job (`filr jobs alerts`, every minute) keeps a cursor on the audit sequence in
`alert_job_state`, so each row is looked at once; an alert still open for the same kind,
subject and scope is updated (occurrences, last seen) rather than raised again. E-mails carry no
personal data: the kind of alert and a link to the workspace.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

import audit
from audit import AuditAction, AuditEvent, Outcome
from portal.accounts.models import AccountStatus, Role, User, UserRole
from portal.mail import Mailer, MailError
from portal.orgs.models import Organisation
from portal.orgs.permissions import spaces_of_organisation
from portal.securite.models import (
    ALERT_KIND_LABELS,
    AlertJobState,
    AlertKind,
    AlertStatus,
    SecurityAlert,
)
from portal.settings import Settings

log = logging.getLogger("portal.securite")

# Roles whose log-in from an unseen network is worth a look: they manage accounts, read the
# trail, operate the platform, or fetch whole XML flows (techniciens).
WATCHED_ROLES = frozenset({Role.GESTIONNAIRE, Role.SECURITE, Role.ADMIN, Role.TECHNICIEN})
LOGIN_FAILURES = (str(AuditAction.LOGIN_FAILURE), str(AuditAction.MFA_FAILURE))
SCANNED_ACTIONS = (
    *LOGIN_FAILURES,
    str(AuditAction.MFA_REPLAY),
    str(AuditAction.ACCESS_DENIED),
    str(AuditAction.FILE_DOWNLOADED),
    str(AuditAction.LOGIN_SUCCESS),
    str(AuditAction.AUDIT_VERIFIED),
)
CHAIN_SUBJECT = ("chain", "audit")
# A refused id of a deposit or a flow that exists nowhere carries no département (a real one
# always has one): many from one account is someone walking the id space, the first step of an
# enumeration. Real ids of another département are the foreign-access alert's.
UNKNOWN_ID_TARGETS = ("deposit", "flow")
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


@dataclass(frozen=True)
class Hit:
    """One detection: the alert to raise or update."""

    kind: AlertKind
    subject_type: str
    subject_id: str
    first_at: datetime
    last_at: datetime
    first_seq: int | None
    last_seq: int | None
    departement: str | None = None
    organisation_id: str | None = None
    occurrences: int = 1
    details: dict[str, Any] = field(default_factory=dict)


def network_of(ip: str | None) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of *ip*; None when it is not an address."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


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


# --- detectors -------------------------------------------------------------------------


def _windows(
    new: Sequence[AuditEvent], times: list[datetime], window: timedelta, threshold: int
) -> tuple[list[AuditEvent], int]:
    """New events at which at least *threshold* events (*times*, sorted) fall in the *window*."""
    triggering: list[AuditEvent] = []
    worst = 0
    for event in new:
        start = event.occurred_at - window
        count = bisect_right(times, event.occurred_at) - bisect_right(times, start)
        worst = max(worst, count)
        if count >= threshold:
            triggering.append(event)
    return triggering, worst


@dataclass(frozen=True)
class _Past:
    """The few columns of an earlier row that the threshold detectors need."""

    occurred_at: datetime
    actor_org_id: str | None
    target_departement: str | None


def _history(
    session: Session,
    actions: tuple[str, ...],
    key: str,
    keys: set[str],
    since: datetime,
    until_seq: int,
    where: sa.ColumnElement[bool] | None = None,
) -> dict[str, list[_Past]]:
    """Rows of *actions* (and *where*) since *since*, by value of *key* (one query per batch)."""
    column = getattr(AuditEvent, key)
    rows = session.execute(
        sa.select(
            column, AuditEvent.occurred_at, AuditEvent.actor_org_id, AuditEvent.target_departement
        ).where(
            AuditEvent.action.in_(actions),
            AuditEvent.occurred_at > since,
            AuditEvent.seq <= until_seq,
            column.is_not(None),
            sa.true() if where is None else where,
        )
    )
    by_key: dict[str, list[_Past]] = defaultdict(list)
    for value, occurred_at, org, departement in rows:
        if value in keys:
            by_key[value].append(_Past(occurred_at, org, departement))
    return by_key


def _threshold_hits(
    session: Session,
    events: Sequence[AuditEvent],
    *,
    kind: AlertKind,
    actions: tuple[str, ...],
    key: str,
    window: timedelta,
    threshold: int,
    until_seq: int,
    where: sa.ColumnElement[bool] | None = None,
) -> list[Hit]:
    """Threshold alerts on *actions* by *key*; *where*, when given, narrows the counted rows
    in SQL and the caller passes only the *events* it matches."""
    groups: dict[str, list[AuditEvent]] = defaultdict(list)
    for event in events:
        value = getattr(event, key)
        if event.action in actions and value:
            groups[value].append(event)
    if not groups:
        return []
    since = min(e.occurred_at for group in groups.values() for e in group) - window
    past = _history(session, actions, key, set(groups), since, until_seq, where)
    hits = []
    for value, group in groups.items():
        history = past[value]
        times = sorted(p.occurred_at for p in history)
        triggering, worst = _windows(group, times, window, threshold)
        if not triggering:
            continue
        orgs = {e.actor_org_id for e in history}
        departements = {e.target_departement for e in history}
        hits.append(
            Hit(
                kind=kind,
                subject_type="user" if key == "actor_id" else "ip",
                subject_id=value,
                first_at=triggering[0].occurred_at,
                last_at=triggering[-1].occurred_at,
                first_seq=triggering[0].seq,
                last_seq=triggering[-1].seq,
                organisation_id=orgs.pop() if len(orgs) == 1 else None,
                departement=departements.pop() if len(departements) == 1 else None,
                occurrences=len(triggering),
                details={
                    "count_in_window": worst,
                    "threshold": threshold,
                    "window_minutes": int(window.total_seconds() // 60),
                },
            )
        )
    return hits


def _mfa_replays(events: Sequence[AuditEvent]) -> list[Hit]:
    return [
        Hit(
            kind=AlertKind.MFA_REPLAY,
            subject_type="user",
            subject_id=e.actor_id,
            first_at=e.occurred_at,
            last_at=e.occurred_at,
            first_seq=e.seq,
            last_seq=e.seq,
            organisation_id=e.actor_org_id,
        )
        for e in events
        if e.action == AuditAction.MFA_REPLAY and e.actor_id
    ]


def _foreign_accesses(session: Session, events: Sequence[AuditEvent]) -> list[Hit]:
    hits = []
    spaces: dict[str, frozenset[str]] = {}
    for e in events:
        # Any refusal on something of a département (a deposit, a flow): API token refusals
        # and probes of unknown ids carry no département and are left to the other detectors.
        if e.action != AuditAction.ACCESS_DENIED:
            continue
        if not e.actor_id or not e.actor_org_id or not e.target_departement:
            continue
        if e.actor_org_id not in spaces:
            org = session.get(Organisation, e.actor_org_id)
            spaces[e.actor_org_id] = spaces_of_organisation(org) if org else frozenset()
        if e.target_departement in spaces[e.actor_org_id]:
            continue  # refused inside one's own space: a recipient question, not an intrusion
        hits.append(
            Hit(
                kind=AlertKind.FOREIGN_ACCESS,
                subject_type="user",
                subject_id=e.actor_id,
                first_at=e.occurred_at,
                last_at=e.occurred_at,
                first_seq=e.seq,
                last_seq=e.seq,
                departement=e.target_departement,
                organisation_id=e.actor_org_id,
                details={"departement": e.target_departement},
            )
        )
    return hits


def _is_unknown_id(event: AuditEvent) -> bool:
    """A refusal of a deposit or flow id that exists nowhere (the SQL twin is just below)."""
    return (
        event.action == AuditAction.ACCESS_DENIED
        and event.target_type in UNKNOWN_ID_TARGETS
        and event.target_departement is None
    )


_UNKNOWN_ID_ROWS = sa.and_(
    AuditEvent.target_type.in_(UNKNOWN_ID_TARGETS), AuditEvent.target_departement.is_(None)
)


def _watched_among(session: Session, user_ids: set[str]) -> set[str]:
    """The accounts of *user_ids* that hold a watched role."""
    if not user_ids:
        return set()
    return set(
        session.execute(
            sa.select(UserRole.user_id).where(
                UserRole.user_id.in_(user_ids), UserRole.role.in_([str(r) for r in WATCHED_ROLES])
            )
        ).scalars()
    )


def _new_networks(session: Session, events: Sequence[AuditEvent]) -> list[Hit]:
    logins = [e for e in events if e.action == AuditAction.LOGIN_SUCCESS and e.actor_id]
    watched = _watched_among(session, {e.actor_id for e in logins if e.actor_id})
    logins = [e for e in logins if e.actor_id in watched]
    if not logins:
        return []
    # When each watched account first logged in from each address: one grouped query.
    first_seen: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for actor_id, ip, first_seq in session.execute(
        sa.select(AuditEvent.actor_id, AuditEvent.source_ip, sa.func.min(AuditEvent.seq))
        .where(
            AuditEvent.action == AuditAction.LOGIN_SUCCESS,
            AuditEvent.actor_id.in_(watched),
            AuditEvent.seq <= logins[-1].seq,
        )
        .group_by(AuditEvent.actor_id, AuditEvent.source_ip)
    ):
        if actor_id is not None:
            first_seen[actor_id].append((first_seq, network_of(ip)))
    hits = []
    for e in logins:
        network = network_of(e.source_ip)
        if network is None or e.actor_id is None:
            continue
        earlier = {net for seq, net in first_seen[e.actor_id] if seq < e.seq}
        # A first log-in has no history to compare with: activation is not an anomaly.
        if not earlier or network in earlier:
            continue
        # Scoped by organisation only, like an MFA replay: a log-in row has no département, so
        # officers of the organisation's département (France Travail's territorial ones) could
        # not see in their journal the rows the alert is about.
        hits.append(
            Hit(
                kind=AlertKind.NEW_NETWORK,
                subject_type="user",
                subject_id=e.actor_id,
                first_at=e.occurred_at,
                last_at=e.occurred_at,
                first_seq=e.seq,
                last_seq=e.seq,
                organisation_id=e.actor_org_id,
                details={"network": network},
            )
        )
    return hits


def _failed_verifications(events: Sequence[AuditEvent]) -> list[Hit]:
    hits = []
    for e in events:
        if e.action != AuditAction.AUDIT_VERIFIED or e.outcome == Outcome.SUCCESS:
            continue
        try:
            details = json.loads(e.details)
        except ValueError:
            details = {}
        hits.append(_chain_hit(e.occurred_at, e.seq, details.get("first_broken_seq")))
    return hits


def _chain_hit(at: datetime, seq: int | None, broken_seq: object, reason: object = None) -> Hit:
    details: dict[str, Any] = {}
    if isinstance(broken_seq, int):
        details["first_broken_seq"] = broken_seq
    if isinstance(reason, str):
        details["reason"] = reason[:64]
    return Hit(
        kind=AlertKind.CHAIN_BROKEN,
        subject_type=CHAIN_SUBJECT[0],
        subject_id=CHAIN_SUBJECT[1],
        first_at=at,
        last_at=at,
        first_seq=seq,
        last_seq=seq,
        details=details,
    )


def detect(session: Session, settings: Settings, events: Sequence[AuditEvent]) -> list[Hit]:
    """Every alert that *events* (new rows of the trail, in order) give rise to."""
    if not events:
        return []
    until = events[-1].seq
    login_window = timedelta(minutes=settings.alert_login_window_minutes)
    return [
        *_threshold_hits(
            session,
            events,
            kind=AlertKind.LOGIN_FAILURES_ACCOUNT,
            actions=LOGIN_FAILURES,
            key="actor_id",
            window=login_window,
            threshold=settings.alert_login_failures_account,
            until_seq=until,
        ),
        *_threshold_hits(
            session,
            events,
            kind=AlertKind.LOGIN_FAILURES_IP,
            actions=LOGIN_FAILURES,
            key="source_ip",
            window=login_window,
            threshold=settings.alert_login_failures_ip,
            until_seq=until,
        ),
        *_mfa_replays(events),
        *_foreign_accesses(session, events),
        *_threshold_hits(
            session,
            [e for e in events if _is_unknown_id(e)],
            kind=AlertKind.UNKNOWN_IDS,
            actions=(str(AuditAction.ACCESS_DENIED),),
            key="actor_id",
            window=timedelta(minutes=settings.alert_unknown_ids_window_minutes),
            threshold=settings.alert_unknown_ids,
            until_seq=until,
            where=_UNKNOWN_ID_ROWS,
        ),
        *_threshold_hits(
            session,
            events,
            kind=AlertKind.DOWNLOAD_SURGE,
            actions=(str(AuditAction.FILE_DOWNLOADED),),
            key="actor_id",
            window=timedelta(minutes=settings.alert_downloads_window_minutes),
            # "More than N files in the window": the alert starts at N + 1.
            threshold=settings.alert_downloads_max + 1,
            until_seq=until,
        ),
        *_new_networks(session, events),
        *_failed_verifications(events),
    ]


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
    return _chain_hit(now, None, broken, reason)


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
    session.commit()  # no transaction is held while the relay is slow
    for alert in pending:
        subject, body = alert_mail(alert, base_url)
        notification = _Notification.of(alert)
        mailed: set[str] = set()
        failed: set[str] = set()
        for officer_id, email, scope in officers:
            if not can_see_alert(scope, alert) or notification.is_done_for(officer_id):
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
        if all(
            notification.is_done_for(officer_id)
            for officer_id, _email, scope in officers
            if can_see_alert(scope, alert)
        ):
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
