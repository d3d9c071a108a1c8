"""Suspensions decided by a job (end of habilitation, non-use) and the mails around them.

A job's suspension is one conditional UPDATE (the account is still active or pending and the
reason still holds): of two servers running the same job, exactly one changes the row, writes
the `account:suspended` row and sends the mails. No Flask here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction
from portal.accounts.models import (
    SUSPENSION_LABELS,
    AccountStatus,
    Role,
    SuspensionReason,
    User,
    UserRole,
)
from portal.auth.sessions import revoke_user_sessions
from portal.container import Services
from portal.mail import deliver

SIGNATURE = "\n-- \nFil'R, échanges sécurisés RSA / France Travail\n"


def managers_of(session: Session, user: User) -> list[str]:
    """E-mail addresses of the active account managers of *user*'s organisation, but *user*."""
    return list(
        session.execute(
            sa.select(User.email)
            .join(UserRole, UserRole.user_id == User.id)
            .where(
                User.organisation_id == user.organisation_id,
                User.id != user.id,
                User.status == AccountStatus.ACTIVE,
                UserRole.role == Role.GESTIONNAIRE,
            )
            .order_by(User.email)
        ).scalars()
    )


def notify(svc: Services, mails: Iterable[tuple[str, str]], subject: str) -> tuple[int, int]:
    """Send each (address, body) of *mails*; (sent, failed). A lost mail is logged by count."""
    sent = failed = 0
    for to, body in mails:
        if deliver(svc.mailer, to, subject, body, what="account notice", about="account"):
            sent += 1
        else:
            failed += 1
    return sent, failed


@dataclass(frozen=True)
class JobSuspension:
    """A suspension a job carried out, and its mails."""

    user: User
    mails_sent: int
    mails_failed: int


def _suspension_mails(user: User, reason: SuspensionReason) -> tuple[str, str, str]:
    why = SUSPENSION_LABELS[reason]
    subject = "Fil'R : compte suspendu"
    to_person = (
        f"Bonjour,\n\nVotre compte Fil'R ({user.organisation.name}) a été suspendu {why}.\n\n"
        "Seul le gestionnaire de comptes de votre organisation peut le réactiver ; vous "
        "choisirez alors un nouveau mot de passe.\n" + SIGNATURE
    )
    to_manager = (
        f"Bonjour,\n\nLe compte Fil'R de {user.full_name} ({user.organisation.name}) a été "
        f"suspendu {why}.\n\nSi cette personne doit continuer à utiliser Fil'R, réactivez son "
        "compte depuis la page Gestion des comptes : elle choisira un nouveau mot de passe.\n"
        + SIGNATURE
    )
    return subject, to_person, to_manager


def suspend_by_job(
    session: Session,
    svc: Services,
    user_id: str,
    reason: SuspensionReason,
    ctx: audit.Context,
    now: datetime,
    *,
    still_due: sa.ColumnElement[bool] | None = None,
    tell_managers: bool = True,
) -> JobSuspension | None:
    """Suspend the account *user_id* for *reason* if it is active or pending and *still_due*
    holds; None when another run (or a person) changed it first. Commits, then mails the
    person and (unless *tell_managers* is False) the organisation's account managers."""
    conditions = [
        User.id == user_id,
        User.status.in_((AccountStatus.ACTIVE, AccountStatus.PENDING)),
    ]
    if still_due is not None:
        conditions.append(still_due)
    result = session.execute(
        sa.update(User)
        .where(*conditions)
        .values(status=AccountStatus.SUSPENDED, suspension_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.rollback()
        return None
    revoke_user_sessions(session, user_id)  # at once, not at the next idle timeout
    user = session.get(User, user_id, populate_existing=True)
    assert user is not None  # noqa: S101 - the UPDATE just changed it
    audit.record(
        session,
        AuditAction.ACCOUNT_SUSPENDED,
        context=ctx,
        target=audit.Target("user", user.id, user.organisation.departement_code),
        details={"reason": str(reason)},
        at=now,
    )
    session.commit()
    subject, to_person, to_manager = _suspension_mails(user, reason)
    recipients = [(m, to_manager) for m in managers_of(session, user)] if tell_managers else []
    if user.status == AccountStatus.SUSPENDED and user.activated_at is not None:
        recipients.insert(0, (user.email, to_person))
    sent, failed = notify(svc, recipients, subject)
    return JobSuspension(user, sent, failed)
