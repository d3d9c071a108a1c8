"""The incident register: record, scope, link, deadlines, notices, reminders, export.

Deadlines count elapsed hours from the detection, nights, weekends and clock changes included
(RGPD article 33 speaks of 72 hours; the conventions of 36 or 48): they are computed in UTC and
shown in French time. Who sees an incident follows the audit scope of the officer: the
national officers see every incident, others those of their départements or organisation.
No Flask here.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, AuditEvent
from audit.query import Scope
from portal.accounts.models import AccountStatus, Role, User, UserRole
from portal.accounts.suspensions import SIGNATURE, notify
from portal.container import Services
from portal.formats import datetime_fr
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import Organisation
from portal.securite.incident_models import (
    INCIDENT_KIND_LABELS,
    Incident,
    IncidentKind,
    IncidentLink,
    IncidentNotice,
    IncidentScope,
    NoticeKind,
)
from portal.securite.models import SecurityAlert
from portal.securite.permissions import can_see_alert, can_see_event
from portal.securite.services import scope_for

PARIS = ZoneInfo("Europe/Paris")


class IncidentError(ValueError):
    """An incident request cannot be carried out (French message for people)."""


def can_see_incident(scope: Scope | None, incident: Incident) -> bool:
    """True when *incident* concerns *scope* (national officers see every incident)."""
    if scope is None:
        return False
    if scope.departements is None:
        return True
    return bool(
        incident.departements & scope.departements
        or incident.organisation_ids & scope.organisation_ids
    )


def visible_incidents(session: Session, scope: Scope) -> list[Incident]:
    """Incidents of *scope*, newest detection first."""
    rows = session.execute(
        sa.select(Incident).order_by(Incident.detected_at.desc(), Incident.number.desc())
    ).scalars()
    return [i for i in rows if can_see_incident(scope, i)]


@dataclass(frozen=True)
class NewIncident:
    """An incident as an officer describes it, before checks."""

    kind: str
    title: str
    description: str
    detected_at: datetime
    departements: frozenset[str]
    partner_notice_hours: int


def _check(officer: User, scope: Scope, given: NewIncident, now: datetime) -> NewIncident:
    if given.kind not in {str(k) for k in IncidentKind}:
        raise IncidentError("Type d'incident inconnu.")
    title = " ".join(given.title.split())
    if not 3 <= len(title) <= 120:
        raise IncidentError("L'intitulé doit contenir entre 3 et 120 caractères.")
    if len(given.description) > 5000:
        raise IncidentError("La description est limitée à 5 000 caractères.")
    if given.detected_at > now + timedelta(minutes=5):
        raise IncidentError("L'heure de détection ne peut pas être dans le futur.")
    unknown = given.departements - DEPARTEMENTS.keys()
    if unknown:
        raise IncidentError("Département inconnu : " + ", ".join(sorted(unknown)) + ".")
    if scope.departements is not None and not given.departements <= scope.departements:
        raise IncidentError("Vous ne pouvez déclarer un incident que pour vos départements.")
    if not 1 <= given.partner_notice_hours <= 168:
        raise IncidentError("Le délai de notification aux partenaires va de 1 à 168 heures.")
    return NewIncident(
        given.kind,
        title,
        given.description.strip(),
        given.detected_at,
        given.departements,
        given.partner_notice_hours,
    )


def _next_number(session: Session) -> int:
    return (
        int(
            session.execute(
                sa.select(sa.func.coalesce(sa.func.max(Incident.number), 0))
            ).scalar_one()
        )
        + 1
    )


def create_incident(
    session: Session,
    officer: User,
    given: NewIncident,
    *,
    ctx: audit.Context,
    now: datetime,
    links: Iterable[tuple[str, str]] = (),
) -> Incident:
    """Record an incident of *officer*'s scope (its organisation always concerned); commits.

    The number is the next free one; two officers recording at once both get one (the unique
    number makes the loser retry).
    """
    scope = scope_for(session, officer)
    if scope is None:
        raise IncidentError("Réservé aux responsables de la sécurité.")
    given = _check(officer, scope, given, now)
    for _attempt in range(5):
        incident = Incident(
            number=_next_number(session),
            kind=given.kind,
            title=given.title,
            description=given.description,
            detected_at=given.detected_at,
            partner_notice_hours=given.partner_notice_hours,
            created_at=now,
            created_by_id=officer.id,
        )
        incident.scopes = [IncidentScope(departement_code=d) for d in sorted(given.departements)]
        incident.scopes.append(IncidentScope(organisation_id=officer.organisation_id))
        incident.links = [IncidentLink(kind=k, ref=r) for k, r in links]
        session.add(incident)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            continue
        break
    else:  # pragma: no cover - five collisions in a row
        raise IncidentError("Réessayez dans un instant.")
    audit.record(
        session,
        AuditAction.INCIDENT_CREATED,
        actor=officer.audit_actor,
        context=ctx,
        target=audit.Target("incident", incident.id, _one_departement(given.departements)),
        details={
            "number": incident.number,
            "kind": given.kind,
            "departements": sorted(given.departements),
            "links": len(incident.links),
        },
    )
    session.commit()
    return incident


def _one_departement(codes: frozenset[str]) -> str | None:
    return next(iter(codes)) if len(codes) == 1 else None


def incident_from_alert(
    session: Session,
    officer: User,
    alert: SecurityAlert,
    *,
    partner_notice_hours: int,
    ctx: audit.Context,
    now: datetime,
) -> Incident:
    """Turn *alert* into a "suspicious activity" incident in one step: detected when the alert
    was first seen, in its département, linked to the alert and its audit rows; commits."""
    scope = scope_for(session, officer)
    if scope is None or not can_see_alert(scope, alert):
        raise IncidentError("Alerte inconnue.")
    # Once per alert (a double submit, two officers at once): the alert's row is locked until
    # the commit, and an incident already linked to it is the answer.
    session.execute(
        sa.select(SecurityAlert.id).where(SecurityAlert.id == alert.id).with_for_update()
    )
    existing = session.execute(
        sa.select(Incident)
        .join(IncidentLink, IncidentLink.incident_id == Incident.id)
        .where(IncidentLink.kind == "alert", IncidentLink.ref == alert.id)
        .order_by(Incident.number)
        .limit(1)
    ).scalar_one_or_none()
    if existing is not None:
        session.commit()
        return existing
    departements = frozenset({alert.departement_code}) if alert.departement_code else frozenset()
    if scope.departements is not None:
        departements &= scope.departements
    links = [("alert", alert.id)] + [
        ("event", str(seq))
        for seq in sorted({s for s in (alert.first_event_seq, alert.last_event_seq) if s})
    ]
    return create_incident(
        session,
        officer,
        NewIncident(
            kind=IncidentKind.SUSPICIOUS,
            title=f"Alerte : {alert.kind_label}"[:120],
            description="",
            detected_at=alert.first_seen_at,
            departements=departements,
            partner_notice_hours=partner_notice_hours,
        ),
        ctx=ctx,
        now=now,
        links=links,
    )


def link_event(
    session: Session, officer: User, incident: Incident, seq: int, *, ctx: audit.Context
) -> None:
    """Link the audit row *seq* (of the officer's scope) to *incident*; commits."""
    scope = scope_for(session, officer)
    event = session.execute(sa.select(AuditEvent).where(AuditEvent.seq == seq)).scalar_one_or_none()
    if event is None or not can_see_event(scope, event):
        raise IncidentError("Entrée du journal inconnue.")
    session.add(IncidentLink(incident_id=incident.id, kind="event", ref=str(seq)))
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise IncidentError("Cette entrée est déjà liée à l'incident.") from None
    audit.record(
        session,
        AuditAction.INCIDENT_LINKED,
        actor=officer.audit_actor,
        context=ctx,
        target=audit.Target("incident", incident.id),
        details={"seq": seq},
    )
    session.commit()


def linked_events(session: Session, scope: Scope, incident: Incident) -> list[AuditEvent]:
    """The audit rows linked to *incident* that *scope* may read."""
    seqs = [int(link.ref) for link in incident.links if link.kind == "event"]
    if not seqs:
        return []
    rows = session.execute(
        sa.select(AuditEvent).where(AuditEvent.seq.in_(seqs)).order_by(AuditEvent.seq)
    ).scalars()
    return [e for e in rows if can_see_event(scope, e)]


def record_notice(
    session: Session,
    officer: User,
    incident: Incident,
    kind: NoticeKind,
    *,
    sent_at: datetime,
    recipients: str,
    ctx: audit.Context,
    now: datetime,
) -> IncidentNotice:
    """Record that a notice went to *recipients* (partners or the CNIL) at *sent_at*; commits."""
    recipients = " ".join(recipients.split())
    if not 2 <= len(recipients) <= 500:
        raise IncidentError(
            "Indiquez à qui la notification a été adressée (500 caractères au plus)."
        )
    if kind is NoticeKind.CNIL and incident.kind != IncidentKind.BREACH:
        raise IncidentError("La notification à la CNIL concerne les violations de données.")
    if sent_at > now + timedelta(minutes=5) or sent_at < incident.detected_at:
        raise IncidentError("La date d'envoi doit suivre la détection et ne pas être future.")
    notice = IncidentNotice(
        incident_id=incident.id,
        kind=kind,
        sent_at=sent_at,
        recipients=recipients,
        recorded_by_id=officer.id,
        recorded_at=now,
    )
    session.add(notice)
    session.flush()
    deadline = incident.partner_deadline if kind is NoticeKind.PARTNER else incident.cnil_deadline
    audit.record(
        session,
        AuditAction.INCIDENT_NOTICE_RECORDED,
        actor=officer.audit_actor,
        context=ctx,
        target=audit.Target("incident", incident.id),
        details={
            "kind": str(kind),
            "sent_at": sent_at.isoformat(),
            "late": bool(deadline and sent_at > deadline),
        },
    )
    session.commit()
    session.refresh(incident)
    return notice


# --- the export for the CNIL notification ----------------------------------------------------


def _paris(value: datetime | None) -> str:
    return datetime_fr(value, at=" ") if value else ""


def incident_csv(
    incident: Incident, events: Sequence[AuditEvent], org_names: dict[str, str]
) -> str:
    """The incident's file for the CNIL notification (French CSV: `;`; the caller adds a BOM)."""
    buffer = io.StringIO()
    writer = audit.SafeCsvWriter(buffer)  # no cell runs as a formula
    partner = incident.notified(NoticeKind.PARTNER)
    cnil = incident.notified(NoticeKind.CNIL)
    for key, value in (
        ("incident", f"n° {incident.number}"),
        ("nature", INCIDENT_KIND_LABELS[IncidentKind(incident.kind)]),
        ("intitulé", incident.title),
        ("détecté le (heure de Paris)", _paris(incident.detected_at)),
        ("départements concernés", ", ".join(sorted(incident.departements))),
        (
            "organisations concernées",
            ", ".join(sorted(org_names.get(o, o) for o in incident.organisation_ids)),
        ),
        ("description", incident.description),
        ("échéance partenaires", _paris(incident.partner_deadline)),
        ("notifié aux partenaires le", _paris(partner.sent_at) if partner else "non"),
        ("échéance CNIL", _paris(incident.cnil_deadline) or "sans objet"),
        ("notifié à la CNIL le", _paris(cnil.sent_at) if cnil else "non"),
    ):
        writer.writerow([key, value])
    writer.writerow([])
    writer.writerow(["notification", "envoyée le", "destinataires"])
    for notice in incident.notices:
        writer.writerow([notice.kind_label, _paris(notice.sent_at), notice.recipients])
    writer.writerow([])
    writer.writerow(["entrée du journal", "horodatage", "action", "résultat"])
    for event in events:
        writer.writerow([event.seq, _paris(event.occurred_at), event.action, event.outcome])
    return buffer.getvalue()


# --- reminders (the job) ---------------------------------------------------------------------


@dataclass
class IncidentReminderReport:
    """What `filr jobs incidents` did."""

    reminders: int = 0
    mails_sent: int = 0
    mails_failed: int = 0
    keys: list[str] = field(default_factory=list)


def officers_for(session: Session, incident: Incident) -> list[str]:
    """E-mail addresses of the active security officers who see *incident*."""
    officers = session.execute(
        sa.select(User)
        .join(UserRole, UserRole.user_id == User.id)
        .where(User.status == AccountStatus.ACTIVE, UserRole.role == Role.SECURITE)
        .order_by(User.email)
    ).scalars()
    return [u.email for u in officers if can_see_incident(scope_for(session, u), incident)]


def send_incident_reminders(
    session: Session,
    svc: Services,
    now: datetime,
    ctx: audit.Context,
    *,
    dry_run: bool = False,
) -> IncidentReminderReport:
    """Remind the officers `FILR_INCIDENT_REMINDER_HOURS` before each deadline not yet met."""
    lead = timedelta(hours=svc.settings.incident_reminder_hours)
    report = IncidentReminderReport()
    incidents = list(
        session.execute(
            sa.select(Incident).where(Incident.closed_at.is_(None)).order_by(Incident.number)
        ).scalars()
    )
    session.commit()
    for incident in incidents:
        for kind, deadline, column in (
            (NoticeKind.PARTNER, incident.partner_deadline, Incident.partner_reminded_at),
            (NoticeKind.CNIL, incident.cnil_deadline, Incident.cnil_reminded_at),
        ):
            if deadline is None or incident.notified(kind) is not None:
                continue
            if not deadline - lead <= now:
                continue
            if getattr(incident, column.key) is not None:
                continue
            report.keys.append(f"{incident.number}:{kind}")
            if dry_run:
                report.reminders += 1
                continue
            claimed = session.execute(
                sa.update(Incident)
                .where(Incident.id == incident.id, column.is_(None))
                .values({column.key: now})
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
                session.rollback()
                continue
            audit.record(
                session,
                AuditAction.INCIDENT_REMINDER_SENT,
                context=ctx,
                target=audit.Target("incident", incident.id),
                details={"kind": str(kind), "deadline": deadline.isoformat()},
                at=now,
            )
            session.commit()
            report.reminders += 1
            whom = "aux partenaires de la convention" if kind is NoticeKind.PARTNER else "à la CNIL"
            passed = deadline <= now
            body = (
                f"Bonjour,\n\nIncident n° {incident.number} "
                f"({INCIDENT_KIND_LABELS[IncidentKind(incident.kind)].lower()}) : la notification "
                f"{whom} {'devait être faite' if passed else 'doit être faite'} au plus tard le "
                f"{_paris(deadline)} (heure de Paris), et aucun envoi n'est encore enregistré.\n\n"
                "Enregistrez-la dans Fil'R, espace Sécurité, registre des incidents, dès qu'elle "
                "est partie.\n" + SIGNATURE
            )
            sent, failed = notify(
                svc,
                [(m, body) for m in officers_for(session, incident)],
                f"Fil'R : échéance de notification, incident n° {incident.number}",
            )
            report.mails_sent += sent
            report.mails_failed += failed
    return report


def organisation_names(session: Session, ids: Iterable[str]) -> dict[str, str]:
    """Names of the organisations *ids*."""
    wanted = list(ids)
    if not wanted:
        return {}
    return dict(
        session.execute(
            sa.select(Organisation.id, Organisation.name).where(Organisation.id.in_(wanted))
        ).all()
    )
