"""Expiry reminders and the daily digest: the jobs behind `filr jobs reminders` and `digest`.

No Flask here: callers pass the session, the services, the current time and the audit context.
Both jobs are safe to run twice or on two servers at once: each deposit (each digest user) is
claimed by a conditional UPDATE, committed before any mail leaves, and only the run whose UPDATE
changed the row sends (SecureDrop `source_deleter`, Indico `delete_unclaimed_files`).
Mails carry no personal data: no title, no name, no file name.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, User
from portal.container import Services
from portal.deposits.models import (
    CATEGORY_LABELS,
    Category,
    Deposit,
    DepositRecipient,
    DepositStatus,
    DownloadReceipt,
)
from portal.deposits.notifications import deposit_mail
from portal.deposits.permissions import visible_deposits
from portal.deposits.services import recipient_users
from portal.formats import datetime_fr
from portal.mail import deliver
from portal.orgs.departements import DEPARTEMENTS

DIGEST_DEFAULT_WINDOW = timedelta(hours=24)


# --- expiry reminders ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    """One reminder: sent once a deposit has at most `days` left (and more than `floor`)."""

    days: int
    floor: timedelta
    column: InstrumentedAttribute[datetime | None]

    @property
    def span(self) -> timedelta:
        return timedelta(days=self.days)


# The 1-day window starts where the 7-day one ends: a deposit first seen with less than a day
# left gets the 1-day reminder only, not both at once.
WINDOWS: tuple[_Window, ...] = (
    _Window(7, timedelta(days=1), Deposit.reminded_7_at),
    _Window(1, timedelta(0), Deposit.reminded_1_at),
)


@dataclass
class ReminderReport:
    """What the reminder job did (or would do, with --dry-run)."""

    dry_run: bool = False
    deposits: dict[int, int] = field(default_factory=lambda: {w.days: 0 for w in WINDOWS})
    mails_sent: int = 0
    mails_failed: int = 0
    already_downloaded: int = 0
    deposit_ids: list[str] = field(default_factory=list)


def _due_deposit_ids(session: Session, window: _Window, now: datetime) -> list[str]:
    rows = session.execute(
        sa.select(Deposit.id, Deposit.published_at, Deposit.created_at, Deposit.expires_at)
        .where(
            Deposit.status == DepositStatus.AVAILABLE,
            Deposit.expires_at > now + window.floor,
            Deposit.expires_at <= now + window.span,
            window.column.is_(None),
        )
        .order_by(Deposit.expires_at, Deposit.id)
    ).all()
    session.commit()
    # A deposit published inside the window (a 7-day weekly file) was just announced: a
    # reminder right after the announcement would only be noise.
    return [
        deposit_id
        for deposit_id, published_at, created_at, expires_at in rows
        if (published_at or created_at) <= expires_at - window.span
    ]


def _claim(session: Session, window: _Window, deposit_id: str, now: datetime) -> bool:
    """Mark the reminder as sent; True only for the one run whose UPDATE changed the row."""
    result = session.execute(
        sa.update(Deposit)
        .where(
            Deposit.id == deposit_id,
            Deposit.status == DepositStatus.AVAILABLE,
            window.column.is_(None),
        )
        .values({window.column.key: now})
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined] # DML returns a CursorResult


def _release(session: Session, window: _Window, deposit_id: str, now: datetime) -> None:
    """Give the claim back (no mail could be sent), so that the next run tries again."""
    session.execute(
        sa.update(Deposit)
        .where(Deposit.id == deposit_id, window.column == now)
        .values({window.column.key: None})
    )


def _users_without_download(session: Session, deposit: Deposit) -> tuple[list[User], int]:
    """Recipient users still waiting for *deposit*, and how many recipients are served.

    A named recipient is served once they downloaded a file. A recipient organisation is a
    shared inbox: once one of its members downloaded the deposit, it is handled for the whole
    team, and reminding the colleagues that it was "not yet downloaded" would be false.
    """
    downloaders = set(
        session.execute(
            sa.select(DownloadReceipt.user_id).where(DownloadReceipt.deposit_id == deposit.id)
        ).scalars()
    )
    named = {r.user_id for r in deposit.recipients if r.user_id}
    shared_inboxes = {r.organisation_id for r in deposit.recipients if r.organisation_id}
    users = recipient_users(session, deposit)
    served_inboxes = {
        u.organisation_id
        for u in users
        if u.id in downloaders and u.organisation_id in shared_inboxes
    }
    if downloaders and shared_inboxes:
        # A member who downloaded and has since left the account list still served the inbox.
        served_inboxes |= set(
            session.execute(
                sa.select(User.organisation_id).where(
                    User.id.in_(downloaders), User.organisation_id.in_(shared_inboxes)
                )
            ).scalars()
        )
    waiting = [
        u
        for u in users
        if u.id not in downloaders and (u.id in named or u.organisation_id not in served_inboxes)
    ]
    return waiting, len(users) - len(waiting)


def _days_left(deposit: Deposit, now: datetime) -> int:
    # "expire dans 7 jours" for 6 days and 20 hours: whole days, rounded up.
    return max(1, math.ceil((deposit.expires_at - now) / timedelta(days=1)))


def send_expiry_reminders(
    session: Session, svc: Services, now: datetime, ctx: audit.Context, dry_run: bool = False
) -> ReminderReport:
    """Remind recipients who have not downloaded a deposit 7 days, then 1 day, before expiry."""
    report = ReminderReport(dry_run=dry_run)
    for window in WINDOWS:
        for deposit_id in _due_deposit_ids(session, window, now):
            if not dry_run and not _claim(session, window, deposit_id, now):
                continue  # another run reminded it first
            deposit = session.get(Deposit, deposit_id, populate_existing=True)
            if deposit is None:  # pragma: no cover - deposits are never deleted
                continue
            users, downloaded = _users_without_download(session, deposit)
            report.deposits[window.days] += 1
            report.deposit_ids.append(deposit_id)
            report.already_downloaded += downloaded
            if dry_run:
                report.mails_sent += len(users)
                session.commit()
                continue
            subject, body = deposit_mail(svc, deposit, reminder_days=_days_left(deposit, now))
            session.commit()  # no transaction is held while the SMTP relay answers
            sent = failed = 0
            for user in users:
                if deliver(
                    svc.mailer,
                    user.email,
                    subject,
                    body,
                    what="reminder mail",
                    about=f"user {user.id}",
                ):
                    sent += 1
                else:
                    failed += 1
            if failed and not sent:
                _release(session, window, deposit_id, now)
            report.mails_sent += sent
            report.mails_failed += failed
            audit.record(
                session,
                AuditAction.DEPOSIT_REMINDER_SENT,
                context=ctx,
                outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
                target=audit.Target("deposit", deposit_id, deposit.departement_code),
                details={
                    "days": window.days,
                    "sent": sent,
                    "failed": failed,
                    "already_downloaded": downloaded,
                },
            )
            session.commit()
    return report


# --- daily digest --------------------------------------------------------------------------


@dataclass
class DigestReport:
    """What the digest job did (or would do, with --dry-run)."""

    dry_run: bool = False
    users: int = 0
    mails_sent: int = 0
    mails_failed: int = 0
    deposits: int = 0


@dataclass(frozen=True)
class DigestLine:
    """How many deposits of one category arrived in one space."""

    departement: str
    category: Category
    count: int


def received_since(
    session: Session, user: User, since: datetime, until: datetime
) -> list[DigestLine]:
    """Deposits addressed to *user* (or its organisation) published in (since, until]."""
    rows = session.execute(
        sa.select(Deposit.departement_code, Deposit.category, sa.func.count())
        .where(
            visible_deposits(user),
            sa.exists().where(
                DepositRecipient.deposit_id == Deposit.id,
                sa.or_(
                    DepositRecipient.user_id == user.id,
                    DepositRecipient.organisation_id == user.organisation_id,
                ),
            ),
            Deposit.status == DepositStatus.AVAILABLE,
            Deposit.expires_at > until,
            Deposit.published_at > since,
            Deposit.published_at <= until,
        )
        .group_by(Deposit.departement_code, Deposit.category)
    ).all()
    counts: Counter[tuple[str, str]] = Counter({(d, c): n for d, c, n in rows})
    return [
        DigestLine(departement, Category(category), count)
        for (departement, category), count in sorted(counts.items())
    ]


def digest_mail(svc: Services, lines: Sequence[DigestLine], since: datetime) -> tuple[str, str]:
    """Subject and body of a digest: counts by space and category and a link, nothing else."""
    total = sum(line.count for line in lines)
    plural = "s" if total > 1 else ""
    subject = f"Fil'R : résumé quotidien, {total} nouveau{'x' if total > 1 else ''} dépôt{plural}"
    since_text = datetime_fr(since)
    listing = "\n".join(
        f"- Espace {line.departement} — {DEPARTEMENTS[line.departement]}, "
        f"{CATEGORY_LABELS[line.category]} : {line.count}"
        for line in lines
    )
    base = svc.settings.base_url
    body = (
        "Bonjour,\n\n"
        f"Depuis le {since_text}, {total} dépôt{plural} vous "
        f"{'ont' if total > 1 else 'a'} été adressé{plural} sur Fil'R :\n\n"
        f"{listing}\n\n"
        f"Pour les consulter, connectez-vous au portail :\n{base}/depots\n\n"
        "Ce message ne contient volontairement aucune information sur le contenu des dépôts.\n"
        "Vous recevez ce résumé quotidien à la place d'un e-mail par dépôt ; pour changer ce "
        f"choix :\n{base}/compte/notifications\n\n"
        "-- \nFil'R, échanges sécurisés RSA / France Travail\n"
    )
    return subject, body


def _claim_digest(session: Session, user_id: str, previous: datetime | None, now: datetime) -> bool:
    """Move the user's digest mark to *now*; True only for the run whose UPDATE changed it."""
    same = User.last_digest_at.is_(None) if previous is None else User.last_digest_at == previous
    result = session.execute(
        sa.update(User).where(User.id == user_id, same).values(last_digest_at=now)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined] # DML returns a CursorResult


def send_daily_digests(
    session: Session, svc: Services, now: datetime, ctx: audit.Context, dry_run: bool = False
) -> DigestReport:
    """Send each digest subscriber one mail counting the deposits received since the last one."""
    report = DigestReport(dry_run=dry_run)
    user_ids = list(
        session.execute(
            sa.select(User.id)
            .where(User.daily_digest.is_(True), User.status == AccountStatus.ACTIVE)
            .order_by(User.id)
        ).scalars()
    )
    session.commit()
    for user_id in user_ids:
        user = session.get(User, user_id, populate_existing=True)
        if user is None or not user.daily_digest or user.status != AccountStatus.ACTIVE:
            continue
        previous = user.last_digest_at
        since = previous or now - DIGEST_DEFAULT_WINDOW
        lines = received_since(session, user, since, now)
        session.commit()
        total = sum(line.count for line in lines)
        if dry_run:
            if total:
                report.users += 1
                report.deposits += total
                report.mails_sent += 1
            continue
        # The mark moves even when nothing arrived, so each digest counts from the last run.
        if not _claim_digest(session, user_id, previous, now) or not total:
            continue
        subject, body = digest_mail(svc, lines, since)
        report.users += 1
        report.deposits += total
        if deliver(
            svc.mailer, user.email, subject, body, what="reminder mail", about=f"user {user.id}"
        ):
            report.mails_sent += 1
            outcome = Outcome.SUCCESS
        else:
            report.mails_failed += 1
            outcome = Outcome.FAILURE
            # Undelivered: the next run counts these deposits again.
            session.execute(
                sa.update(User)
                .where(User.id == user_id, User.last_digest_at == now)
                .values(last_digest_at=previous)
            )
        audit.record(
            session,
            AuditAction.DEPOSIT_DIGEST_SENT,
            context=ctx,
            outcome=outcome,
            target=audit.Target("user", user_id),
            details={"deposits": total, "spaces": len({line.departement for line in lines})},
        )
        session.commit()
    return report
