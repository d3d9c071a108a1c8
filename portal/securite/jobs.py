"""Jobs of the audit trail that need the portal's accounts: the daily head hash by e-mail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction
from audit.retention import DayHead, head_of_day
from portal.accounts.models import AccountStatus, Role, User, UserRole
from portal.mail import Mailer, MailError
from portal.orgs.models import Organisation, OrgKind


def head_recipients(session: Session) -> list[User]:
    """Active security officers of the national France Travail structure and of the platform.

    They are the people able to compare a head hash with the trail at any later date (the
    national officer sees the whole trail; the platform runs `filr audit head`); their
    mailboxes lie outside the database, so a rewrite of the whole chain no longer matches.
    """
    national = sa.and_(Organisation.kind == OrgKind.FRANCE_TRAVAIL, Organisation.is_national)
    stmt = (
        sa.select(User)
        .join(Organisation, User.organisation_id == Organisation.id)
        .join(UserRole, UserRole.user_id == User.id)
        .where(
            User.status == AccountStatus.ACTIVE,
            UserRole.role == Role.SECURITE,
            sa.or_(national, Organisation.kind == OrgKind.PLATEFORME),
        )
        .order_by(User.email)
    )
    return list(session.execute(stmt).scalars().unique())


@dataclass(frozen=True)
class HeadReport:
    """What the daily head job did."""

    head: DayHead | None
    recipients: int
    sent: int
    failed: int


def head_mail(head: DayHead) -> tuple[str, str]:
    """Subject and body of the daily head message (hashes and counters only)."""
    day = head.day.isoformat()
    subject = f"Fil'R — empreinte du journal d'audit du {day}"
    body = (
        "Bonjour,\n\n"
        f"Voici l'empreinte (tête de chaîne) du journal d'audit de Fil'R à la fin du {day} "
        "(minuit UTC) :\n\n"
        f"  entrée n° {head.seq}\n"
        f"  empreinte SHA-256 : {head.hash}\n\n"
        "Conservez ce message : si le journal était réécrit, même en entier, l'empreinte "
        "affichée par la plateforme pour ce jour (commande « filr audit head --date "
        f"{day} ») ne correspondrait plus à celle-ci.\n\n"
        "Ce message ne contient aucune donnée personnelle.\n"
    )
    return subject, body


def send_daily_head(
    session: Session,
    mailer: Mailer,
    day: date,
    ctx: audit.Context,
    *,
    dry_run: bool = False,
) -> HeadReport:
    """E-mail the head hash of *day* to `head_recipients` and audit it."""
    head = head_of_day(session, day)
    recipients = head_recipients(session)
    if head is None or dry_run:
        session.rollback()
        return HeadReport(head, len(recipients), 0, 0)
    subject, body = head_mail(head)
    emails = [user.email for user in recipients]
    session.rollback()  # no transaction held while talking to the SMTP relay
    sent = failed = 0
    for email in emails:
        try:
            mailer.send(email, subject, body)
            sent += 1
        except MailError:
            failed += 1
    audit.record(
        session,
        AuditAction.AUDIT_HEAD_SENT,
        context=ctx,
        outcome=audit.Outcome.SUCCESS if sent and not failed else audit.Outcome.FAILURE,
        details={
            "day": day.isoformat(),
            "head_seq": head.seq,
            "head_hash": head.hash,
            "recipients": len(emails),
            "sent": sent,
            "failed": failed,
        },
    )
    session.commit()
    return HeadReport(head, len(emails), sent, failed)
