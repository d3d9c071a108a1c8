"""Calendar reminders of the flows: the job behind `filr jobs flow-reminders`.

- N working days before the CGPEM deadline, the département's technicians, if no valid CGPEM
  of the month was deposited;
- once a deadline passed (CGPEM, PECGM, a PECDH week) without a valid file, the technicians of
  both sides.

The same daily run drops the sealed validation reports older than 90 days.

One reminder per département, flow, period and kind: the row of `flow_reminder` is inserted
and committed before any mail leaves (a unique constraint), so that two runs, or two servers,
never send it twice. Mails carry no personal data: a flow, a period, a date and a link.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, Role, User
from portal.container import Services
from portal.deposits.models import Deposit
from portal.flows import calendar
from portal.flows.follow_up import active_departements, expected_periods
from portal.flows.models import FlowDeposit, FlowReminder, FlowStatus, ReminderKind
from portal.flows.permissions import SENDER_SIDE
from portal.flows.services import forget_old_reports, period_label
from portal.flows.types import FlowType
from portal.formats import datetime_fr
from portal.mail import deliver
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.permissions import is_national, spaces_of_organisation

# A deadline that passed longer ago than this is not announced any more (first run, outage).
PASSED_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class DueReminder:
    """A reminder the calendar calls for now."""

    departement: str
    flow_type: FlowType
    period_start: date
    kind: ReminderKind
    due_at: datetime


@dataclass
class FlowReminderReport:
    """What the job did (or would do, with --dry-run)."""

    dry_run: bool = False
    reminders: int = 0
    mails_sent: int = 0
    mails_failed: int = 0
    already_sent: int = 0
    reports_forgotten: int = 0
    keys: list[str] = field(default_factory=list)


def _months(today: date) -> list[tuple[int, int]]:
    previous = today.replace(day=1) - timedelta(days=1)
    return [(previous.year, previous.month), (today.year, today.month)]


def due_reminders(
    session: Session, departements: list[str], now: datetime, working_days: int
) -> Iterator[DueReminder]:
    """Reminders the calendar calls for at *now* for flows without a valid file."""
    today = now.astimezone(calendar.PARIS).date()
    valid = {
        (d, t, p)
        for d, t, p in session.execute(
            sa.select(FlowDeposit.departement_code, FlowDeposit.flow_type, FlowDeposit.period_start)
            .join(Deposit, Deposit.id == FlowDeposit.deposit_id)
            .where(
                FlowDeposit.status == FlowStatus.VALID,
                Deposit.withdrawn_at.is_(None),
                FlowDeposit.departement_code.in_(departements),
                FlowDeposit.period_start >= today.replace(day=1) - timedelta(days=45),
            )
        ).all()
    }
    for departement in departements:
        for year, month in _months(today):
            for flow_type, period, due_at in expected_periods(departement, year, month):
                if due_at is None or (departement, str(flow_type), period) in valid:
                    continue
                if now >= due_at:
                    if now - due_at <= PASSED_WINDOW:
                        yield DueReminder(
                            departement, flow_type, period, ReminderKind.DEADLINE_PASSED, due_at
                        )
                elif flow_type is FlowType.CGPEM:
                    start = calendar.working_days_before(departement, due_at.date(), working_days)
                    if today >= start:
                        yield DueReminder(
                            departement, flow_type, period, ReminderKind.BEFORE_DEADLINE, due_at
                        )


def technicians_of(session: Session, departement: str, kind: OrgKind) -> list[User]:
    """Active technicians of the organisations of *kind* habilitated for *departement*."""
    orgs = [
        o
        for o in session.execute(sa.select(Organisation).where(Organisation.kind == kind)).scalars()
        if departement in spaces_of_organisation(o) and not is_national(o)
    ]
    if not orgs:
        return []
    users = session.execute(
        sa.select(User).where(
            User.organisation_id.in_([o.id for o in orgs]), User.status == AccountStatus.ACTIVE
        )
    ).scalars()
    return [u for u in users if u.has_role(Role.TECHNICIEN)]


def reminder_mail(svc: Services, reminder: DueReminder) -> tuple[str, str]:
    """Subject and body: flow, period, date, link; nothing about any person."""
    flow = str(reminder.flow_type)
    period = period_label(reminder.flow_type, reminder.period_start)
    when = datetime_fr(reminder.due_at)
    space = f"{reminder.departement} — {DEPARTEMENTS[reminder.departement]}"
    if reminder.kind is ReminderKind.BEFORE_DEADLINE:
        subject = f"Fil'R : flux {flow} de {period} à déposer avant le {when[:10]}"
        intro = (
            f"Aucun flux {flow} valide n'a encore été déposé pour {period} dans l'espace {space}. "
            f"L'échéance de la convention est le {when}."
        )
    else:
        subject = f"Fil'R : échéance dépassée pour le flux {flow} ({period})"
        intro = (
            f"L'échéance du flux {flow} ({period}) de l'espace {space} était le {when} : "
            "aucun fichier valide n'a été déposé."
        )
    body = (
        f"Bonjour,\n\n{intro}\n\n"
        f"Tableau de suivi des flux :\n{svc.settings.base_url}/flux/suivi"
        f"?mois={reminder.period_start.strftime('%Y-%m')}\n\n"
        "-- \nFil'R, échanges sécurisés RSA / France Travail\n"
    )
    return subject, body


def _recipients(session: Session, reminder: DueReminder) -> list[User]:
    sender_kind = SENDER_SIDE[reminder.flow_type]
    users = technicians_of(session, reminder.departement, sender_kind)
    if reminder.kind is ReminderKind.DEADLINE_PASSED:
        other = (
            OrgKind.FRANCE_TRAVAIL if sender_kind is OrgKind.DEPARTEMENT else OrgKind.DEPARTEMENT
        )
        users += technicians_of(session, reminder.departement, other)
    return users


def _already_sent(session: Session, reminder: DueReminder) -> bool:
    return (
        session.execute(
            sa.select(FlowReminder.id).where(
                FlowReminder.departement_code == reminder.departement,
                FlowReminder.flow_type == str(reminder.flow_type),
                FlowReminder.period_start == reminder.period_start,
                FlowReminder.kind == reminder.kind,
            )
        ).first()
        is not None
    )


def _claim(session: Session, reminder: DueReminder, now: datetime) -> str | None:
    """Insert the reminder's row; its id only for the run that inserted it."""
    row = FlowReminder(
        departement_code=reminder.departement,
        flow_type=str(reminder.flow_type),
        period_start=reminder.period_start,
        kind=str(reminder.kind),
        sent_at=now,
        recipients=0,
    )
    session.add(row)
    try:
        session.commit()
    except sa.exc.IntegrityError:
        session.rollback()
        return None
    return row.id


def send_flow_reminders(
    session: Session,
    svc: Services,
    now: datetime,
    ctx: audit.Context,
    dry_run: bool = False,
) -> FlowReminderReport:
    """Send the calendar reminders due at *now*, each once."""
    report = FlowReminderReport(dry_run=dry_run)
    report.reports_forgotten = forget_old_reports(session, now, dry_run=dry_run)
    departements = active_departements(session, DEPARTEMENTS)
    due = list(due_reminders(session, departements, now, svc.settings.flow_reminder_working_days))
    session.commit()
    for reminder in due:
        key = f"{reminder.departement}:{reminder.flow_type}:{reminder.period_start}:{reminder.kind}"
        if _already_sent(session, reminder):
            session.commit()
            report.already_sent += 1
            continue
        users = _recipients(session, reminder)
        session.commit()
        if dry_run:
            report.reminders += 1
            report.mails_sent += len(users)
            report.keys.append(key)
            continue
        row_id = _claim(session, reminder, now)
        if row_id is None:
            report.already_sent += 1
            continue
        subject, body = reminder_mail(svc, reminder)
        sent = failed = 0
        for user in users:  # no transaction is held while the SMTP relay answers
            if deliver(
                svc.mailer, user.email, subject, body,
                what="flow reminder", about=f"user {user.id}",
            ):  # fmt: skip
                sent += 1
            else:
                failed += 1
        if failed and not sent:
            # Nobody was told: give the claim back so that the next run tries again.
            session.execute(sa.delete(FlowReminder).where(FlowReminder.id == row_id))
        else:
            session.execute(
                sa.update(FlowReminder).where(FlowReminder.id == row_id).values(recipients=sent)
            )
        audit.record(
            session,
            AuditAction.FLOW_REMINDER_SENT,
            context=ctx,
            outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
            target=audit.Target(
                "flow-period",
                f"{reminder.flow_type}:{reminder.period_start.isoformat()}",
                reminder.departement,
            ),
            details={"kind": str(reminder.kind), "sent": sent, "failed": failed},
        )
        session.commit()
        report.reminders += 1
        report.mails_sent += sent
        report.mails_failed += failed
        report.keys.append(key)
    return report
