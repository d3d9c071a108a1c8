"""Unused accounts: the job behind `filr jobs inactive-accounts`.

An active account with no log-in nor use of its API tokens for `FILR_ACCOUNT_INACTIVE_DAYS`
days (counted in French calendar days from its last log-in, the last use of one of its API
tokens, its activation or its last reactivation, whichever is latest) is suspended; a notice
goes to the person 7 days before, and no account is suspended without one sent at least 7
days earlier (an account found past the limit, on a first run or after a long stop of the
scheduler, is told first). Accounts never activated are left alone: they expire with
their activation link. Safe on two servers: the notice and the suspension are each claimed
by a conditional UPDATE that also checks the last use did not move, so that exactly one run
acts and a log-in (or a token's use) in between wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction
from portal.accounts.habilitations import today_in_paris
from portal.accounts.models import AccountStatus, SuspensionReason, User
from portal.accounts.suspensions import SIGNATURE, notify, suspend_by_job
from portal.api.models import ApiToken
from portal.container import Services

NOTICE_DAYS_BEFORE = 7


@dataclass
class InactivityReport:
    """What `filr jobs inactive-accounts` did (or would do, with --dry-run)."""

    notices: int = 0
    suspended: int = 0
    mails_sent: int = 0
    mails_failed: int = 0
    user_ids: list[str] = field(default_factory=list)


def last_use(
    last_login_at: datetime | None,
    activated_at: datetime | None,
    reactivated_at: datetime | None,
    token_used_at: datetime | None = None,
) -> datetime | None:
    """When the account was last in use: last log-in, last use of one of its API tokens (a
    script depositing every day uses it), activation or reactivation."""
    known = [
        t for t in (last_login_at, activated_at, reactivated_at, token_used_at) if t is not None
    ]
    return max(known) if known else None


def _token_use() -> sa.ScalarSelect[datetime | None]:
    """The last use of any API token of the account (correlated to `User`)."""
    return (
        sa.select(sa.func.max(ApiToken.last_used_at))
        .where(ApiToken.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )


def _unchanged(
    last_login_at: datetime | None,
    reactivated_at: datetime | None,
    token_used_at: datetime | None,
) -> sa.ColumnElement[bool]:
    return sa.and_(
        User.last_login_at.is_not_distinct_from(last_login_at),
        User.reactivated_at.is_not_distinct_from(reactivated_at),
        _token_use().is_not_distinct_from(token_used_at),
    )


def _notice_body(user: User, days: int, suspend_day: str) -> str:
    return (
        f"Bonjour,\n\nVotre compte Fil'R ({user.organisation.name}) n'a pas été utilisé depuis "
        f"{days} jours. Sans connexion de votre part, il sera suspendu le {suspend_day}.\n\n"
        "Pour le garder, il suffit de vous connecter à Fil'R avant cette date. Si vous n'en avez "
        "plus besoin, vous n'avez rien à faire.\n" + SIGNATURE
    )


def suspend_unused_accounts(
    session: Session,
    svc: Services,
    now: datetime,
    ctx: audit.Context,
    *,
    dry_run: bool = False,
) -> InactivityReport:
    """Notify the accounts unused for (limit - 7) days, suspend those unused for the limit."""
    limit = svc.settings.account_inactive_days
    today = today_in_paris(now)
    report = InactivityReport()
    rows = session.execute(
        sa.select(
            User.id,
            User.last_login_at,
            User.activated_at,
            User.reactivated_at,
            User.inactivity_notice_at,
            _token_use(),
        )
        .where(User.status == AccountStatus.ACTIVE)
        .order_by(User.id)
    ).all()
    session.commit()
    for user_id, last_login_at, activated_at, reactivated_at, notice_at, token_used in rows:
        since = last_use(last_login_at, activated_at, reactivated_at, token_used)
        unchanged = _unchanged(last_login_at, reactivated_at, token_used)
        if since is None:
            continue
        unused = (today - today_in_paris(since)).days
        told = notice_at is not None and notice_at >= since  # since the last use
        if unused >= limit and told:
            assert notice_at is not None  # noqa: S101 - told
            if (today - today_in_paris(notice_at)).days < NOTICE_DAYS_BEFORE:
                continue  # told less than 7 days ago: suspended once they have passed
            if dry_run:
                report.suspended += 1
                continue
            done = suspend_by_job(
                session,
                svc,
                user_id,
                SuspensionReason.INACTIVITY,
                ctx,
                now,
                still_due=sa.and_(
                    User.status == AccountStatus.ACTIVE,
                    unchanged,
                    User.inactivity_notice_at.is_not_distinct_from(notice_at),
                ),
            )
            if done is not None:
                report.suspended += 1
                report.user_ids.append(user_id)
                report.mails_sent += done.mails_sent
                report.mails_failed += done.mails_failed
            continue
        if unused < limit - NOTICE_DAYS_BEFORE:
            continue
        if told:
            continue  # already told since the last use
        # Past the limit but never told (first run, a scheduler down for days): the notice
        # goes now, the suspension 7 days later, never without it.
        if dry_run:
            report.notices += 1
            continue
        claimed = session.execute(
            sa.update(User)
            .where(
                User.id == user_id,
                User.status == AccountStatus.ACTIVE,
                User.inactivity_notice_at.is_not_distinct_from(notice_at),
                unchanged,
            )
            .values(inactivity_notice_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
            session.rollback()
            continue  # another run sent it, or the person logged in meanwhile
        user = session.get(User, user_id, populate_existing=True)
        assert user is not None  # noqa: S101 - the UPDATE just changed it
        audit.record(
            session,
            AuditAction.ACCOUNT_NOTICE_SENT,
            context=ctx,
            target=audit.Target("user", user.id, user.organisation.departement_code),
            details={"reason": "inactivity", "days_unused": unused},
            at=now,
        )
        session.commit()
        report.notices += 1
        report.user_ids.append(user_id)
        days_left = max(limit - unused, NOTICE_DAYS_BEFORE)
        suspend_day = today.fromordinal(today.toordinal() + days_left)
        sent, failed = notify(
            svc,
            [(user.email, _notice_body(user, unused, f"{suspend_day:%d/%m/%Y}"))],
            "Fil'R : votre compte sera bientôt suspendu",
        )
        report.mails_sent += sent
        report.mails_failed += failed
    return report
