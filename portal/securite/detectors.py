"""Alert detectors: the rules that read new audit rows and say which alerts they give rise to.

Each rule (log-in failures by account and by IP, MFA replays, foreign-département accesses,
unknown ids, download surges, log-ins from a new network, failed chain verifications) turns a
batch of rows into `Hit`s; it reads only. Raising, folding, storing and e-mailing the alerts is
`portal.securite.alerts`'s.
"""

from __future__ import annotations

import ipaddress
import json
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent, Outcome
from portal.accounts.models import Role, UserRole
from portal.orgs.models import Organisation
from portal.orgs.permissions import spaces_of_organisation
from portal.securite.models import AlertKind
from portal.settings import Settings

# Roles whose log-in from an unseen network is worth a look: they manage accounts, read the
# trail, operate the platform, or fetch whole XML flows (techniciens).
WATCHED_ROLES = frozenset({Role.GESTIONNAIRE, Role.SECURITE, Role.ADMIN, Role.TECHNICIEN})
LOGIN_FAILURES = (str(AuditAction.AUTH_LOGIN_FAILURE), str(AuditAction.AUTH_MFA_FAILURE))
SCANNED_ACTIONS = (
    *LOGIN_FAILURES,
    str(AuditAction.AUTH_MFA_REPLAY),
    str(AuditAction.ACCESS_DENIED),
    str(AuditAction.DEPOSIT_DOWNLOADED),
    str(AuditAction.AUTH_LOGIN_SUCCESS),
    str(AuditAction.AUDIT_VERIFIED),
)
CHAIN_SUBJECT = ("chain", "audit")
# A refused id of a deposit or a flow that exists nowhere carries no département (a real one
# always has one): many from one account is someone walking the id space, the first step of an
# enumeration. Real ids of another département are the foreign-access alert's.
UNKNOWN_ID_TARGETS = ("deposit", "flow")


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
        if e.action == AuditAction.AUTH_MFA_REPLAY and e.actor_id
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
    logins = [e for e in events if e.action == AuditAction.AUTH_LOGIN_SUCCESS and e.actor_id]
    watched = _watched_among(session, {e.actor_id for e in logins if e.actor_id})
    logins = [e for e in logins if e.actor_id in watched]
    if not logins:
        return []
    # When each watched account first logged in from each address: one grouped query.
    first_seen: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for actor_id, ip, first_seq in session.execute(
        sa.select(AuditEvent.actor_id, AuditEvent.source_ip, sa.func.min(AuditEvent.seq))
        .where(
            AuditEvent.action == AuditAction.AUTH_LOGIN_SUCCESS,
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
        hits.append(chain_hit(e.occurred_at, e.seq, details.get("first_broken_seq")))
    return hits


def chain_hit(at: datetime, seq: int | None, broken_seq: object, reason: object = None) -> Hit:
    """The hit of a broken audit chain, found at *at* (first broken row, reason if known)."""
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
            # A download that failed (interrupted, store unavailable) handed over no file.
            [e for e in events if e.outcome == Outcome.SUCCESS],
            kind=AlertKind.DOWNLOAD_SURGE,
            actions=(str(AuditAction.DEPOSIT_DOWNLOADED),),
            key="actor_id",
            window=timedelta(minutes=settings.alert_downloads_window_minutes),
            # "More than N files in the window": the alert starts at N + 1.
            threshold=settings.alert_downloads_max + 1,
            until_seq=until,
            where=AuditEvent.outcome == str(Outcome.SUCCESS),
        ),
        *_new_networks(session, events),
        *_failed_verifications(events),
    ]
