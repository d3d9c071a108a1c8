"""Usage statistics per month and per organisation, for the conventions' monthly reporting.

Computed from what the portal already keeps (no table of its own): the audit trail for the
log-ins and the accounts that acted, the API tokens' last use, the deposits and their
recipients, the download receipts, and the flows' follow-up table for on time / late / refused.
Months run on the convention's clock, Europe/Paris: an event at 23:30 UTC on 31 January
belongs to February. Counts only: nothing here reads a file or names a person.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit import AuditAction, AuditEvent
from audit.export import iter_rows_csv
from portal.accounts.models import User
from portal.api.models import ApiToken
from portal.deposits.models import Deposit, DepositRecipient, DownloadReceipt
from portal.flows.follow_up import FollowUpRow, FollowUpStatus, active_departements, follow_up
from portal.flows.permissions import SENDER_SIDE
from portal.formats import PARIS
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.permissions import spaces_of_organisation


class MonthError(ValueError):
    """A month that is not `AAAA-MM` (French message for people)."""


@dataclass(frozen=True)
class Month:
    """One calendar month on the Paris clock."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """`2026-11` → Month(2026, 11)."""
        try:
            year, month = (int(part) for part in text.strip().split("-"))
            date(year, month, 1)
        except ValueError:
            raise MonthError(f"mois invalide : {text!r} (attendu : AAAA-MM)") from None
        if not 2020 <= year <= 2100:
            raise MonthError(f"mois hors limites : {text!r}")
        return cls(year, month)

    @classmethod
    def last_complete(cls, now: datetime) -> Month:
        """The month before the one *now* falls in, in Paris."""
        first = now.astimezone(PARIS).date().replace(day=1)
        previous = first - timedelta(days=1)
        return cls(previous.year, previous.month)

    def shift(self, delta: int) -> Month:
        """The month *delta* months later (earlier when negative)."""
        index = self.year * 12 + self.month - 1 + delta
        return Month(index // 12, index % 12 + 1)

    @property
    def first_day(self) -> date:
        """Its first day."""
        return date(self.year, self.month, 1)

    @property
    def starts_at(self) -> datetime:
        """Midnight in Paris on its first day, as UTC."""
        return datetime(self.year, self.month, 1, tzinfo=PARIS).astimezone(UTC)

    @property
    def ends_at(self) -> datetime:
        """Midnight in Paris on the first day of the next month, as UTC (excluded)."""
        return self.shift(1).starts_at

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class UsageRow:
    """The figures of one organisation for one month."""

    organisation: Organisation
    active_accounts: int = 0
    logins: int = 0
    deposits_sent: int = 0
    deposits_received: int = 0
    downloads: int = 0
    flows_on_time: int = 0
    flows_late: int = 0
    flows_refused: int = 0


def _in_month(column: Any, month: Month) -> sa.ColumnElement[bool]:
    return sa.and_(column >= month.starts_at, column < month.ends_at)


def _flow_counts(rows: Iterable[FollowUpRow], now: datetime) -> tuple[int, int, int]:
    """(on time, late, refused attempts) of the follow-up rows of one sender."""
    on_time = late = refused = 0
    delivered = (
        FollowUpStatus.ON_TIME,
        FollowUpStatus.DEPOSITED_LATE,
        FollowUpStatus.DOWNLOADED,
        FollowUpStatus.EXPIRED,
    )
    for row in rows:
        refused += row.rejected_attempts
        if row.status in delivered and row.deposited_at is not None:
            if row.due_at is None or row.deposited_at <= row.due_at:
                on_time += 1
            else:
                late += 1
        elif row.due_at is not None and now > row.due_at:
            late += 1  # never delivered (or only refused) and past its due date
    return on_time, late, refused


def _flows_by_org(
    session: Session, organisations: Sequence[Organisation], month: Month, now: datetime
) -> dict[str, tuple[int, int, int]]:
    """The follow-up table's figures for each organisation that sends flows."""
    senders = [o for o in organisations if OrgKind(o.kind) in SENDER_SIDE.values()]
    if not senders:
        return {}
    spaces = set().union(*(spaces_of_organisation(o) for o in senders))
    table = follow_up(
        session, active_departements(session, spaces), month.year, month.month, now=now
    )
    found: dict[str, tuple[int, int, int]] = {}
    for org in senders:
        mine = spaces_of_organisation(org)
        rows = [
            r
            for r in table
            if r.departement in mine and SENDER_SIDE[r.flow_type] is OrgKind(org.kind)
        ]
        found[org.id] = _flow_counts(rows, now)
    return found


def usage(
    session: Session,
    organisations: Sequence[Organisation],
    month: Month,
    *,
    now: datetime,
) -> list[UsageRow]:
    """The figures of *organisations* (already filtered by the caller's scope) for *month*."""
    ids = [o.id for o in organisations]
    if not ids:
        return []
    login_counts = session.execute(
        sa.select(AuditEvent.actor_org_id, sa.func.count())
        .where(
            AuditEvent.action == str(AuditAction.AUTH_LOGIN_SUCCESS),
            AuditEvent.outcome == "success",
            AuditEvent.actor_org_id.in_(ids),
            _in_month(AuditEvent.occurred_at, month),
        )
        .group_by(AuditEvent.actor_org_id)
    ).all()
    logins = {org_id: count for org_id, count in login_counts if org_id is not None}
    # Active: the account logged in, or acted (through the pages or the API: every change is
    # audited with its actor), or used an API token, during the month.
    active: dict[str, set[str]] = defaultdict(set)
    acted = session.execute(
        sa.select(AuditEvent.actor_org_id, AuditEvent.actor_id)
        .where(
            AuditEvent.outcome == "success",
            AuditEvent.actor_id.is_not(None),
            AuditEvent.actor_org_id.in_(ids),
            _in_month(AuditEvent.occurred_at, month),
        )
        .distinct()
    ).all()
    token_users = session.execute(
        sa.select(User.organisation_id, User.id)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(User.organisation_id.in_(ids), _in_month(ApiToken.last_used_at, month))
        .distinct()
    ).all()
    for org_id, user_id in [*acted, *token_users]:
        if org_id is not None and user_id is not None:
            active[org_id].add(user_id)
    sent = dict(
        session.execute(
            sa.select(Deposit.sender_org_id, sa.func.count())
            .where(Deposit.sender_org_id.in_(ids), _in_month(Deposit.published_at, month))
            .group_by(Deposit.sender_org_id)
        ).all()
    )
    # A deposit addressed to the organisation, or to one of its accounts by name.
    recipient_org = sa.func.coalesce(DepositRecipient.organisation_id, User.organisation_id)
    received_pairs = session.execute(
        sa.select(recipient_org, Deposit.id)
        .select_from(DepositRecipient)
        .join(Deposit, Deposit.id == DepositRecipient.deposit_id)
        .outerjoin(User, User.id == DepositRecipient.user_id)
        .where(recipient_org.in_(ids), _in_month(Deposit.published_at, month))
        .distinct()
    ).all()
    received: dict[str, int] = defaultdict(int)
    for org_id, _deposit_id in received_pairs:
        received[org_id] += 1
    downloads = dict(
        session.execute(
            sa.select(User.organisation_id, sa.func.count())
            .select_from(DownloadReceipt)
            .join(User, User.id == DownloadReceipt.user_id)
            .where(User.organisation_id.in_(ids), _in_month(DownloadReceipt.downloaded_at, month))
            .group_by(User.organisation_id)
        ).all()
    )
    flows = _flows_by_org(session, organisations, month, now)
    rows = []
    for org in organisations:
        on_time, late, refused = flows.get(org.id, (0, 0, 0))
        rows.append(
            UsageRow(
                organisation=org,
                active_accounts=len(active.get(org.id, ())),
                logins=logins.get(org.id, 0),
                deposits_sent=sent.get(org.id, 0),
                deposits_received=received.get(org.id, 0),
                downloads=downloads.get(org.id, 0),
                flows_on_time=on_time,
                flows_late=late,
                flows_refused=refused,
            )
        )
    return rows


CSV_HEADERS = (
    "Mois",
    "Organisation",
    "Type",
    "Département",
    "Comptes actifs",
    "Connexions",
    "Dépôts envoyés",
    "Dépôts reçus",
    "Téléchargements",
    "Flux à temps",
    "Flux en retard",
    "Flux refusés",
)


def iter_usage_csv(rows: Iterable[UsageRow], month: Month) -> Iterator[str]:
    """The figures as French CSV lines (`;`, CRLF, formula-neutralised; the caller adds the
    byte-order mark)."""
    return iter_rows_csv(
        CSV_HEADERS,
        (
            (
                str(month),
                r.organisation.name,
                r.organisation.kind_label,
                r.organisation.departement_code or "",
                r.active_accounts,
                r.logins,
                r.deposits_sent,
                r.deposits_received,
                r.downloads,
                r.flows_on_time,
                r.flows_late,
                r.flows_refused,
            )
            for r in rows
        ),
        delimiter=";",
    )


def visible_organisations(session: Session, user: User) -> list[Organisation]:
    """The organisations whose figures *user* may see, by name (empty when none)."""
    from portal.accounts.permissions import can_see_usage, can_see_usage_of

    if not can_see_usage(user):
        return []
    every = session.execute(sa.select(Organisation).order_by(Organisation.name)).scalars()
    return [org for org in every if can_see_usage_of(user, org)]


def month_of(text: str | None, now: datetime) -> Month:
    """The month asked for in a page's `mois`, or the last complete one when none or invalid."""
    try:
        return Month.parse(text) if text else Month.last_complete(now)
    except MonthError:
        return Month.last_complete(now)


def usage_for(
    session: Session, user: User, month: Month, org_id: str | None, *, now: datetime
) -> list[UsageRow] | None:
    """The figures *user* may see for *month*, of one organisation when *org_id* is given;
    None when that organisation is unknown or outside the user's scope (a 404 alike)."""
    organisations = visible_organisations(session, user)
    if org_id is not None:
        organisations = [o for o in organisations if o.id == org_id]
        if not organisations:
            return None
    return usage(session, organisations, month, now=now)


def month_label(month: Month) -> str:
    """`novembre 2026`."""
    from portal.flows.services import period_label

    return period_label(None, month.first_day)
