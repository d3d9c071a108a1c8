"""Inbox and outbox: filters, accent-blind search, French sorting, keyset pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from portal.accounts.models import User
from portal.db import utcnow
from portal.deposits.models import Category, Deposit, DepositRecipient, DepositStatus
from portal.deposits.permissions import categories_of, visible_deposits
from portal.orgs.permissions import spaces_of
from portal.text import fold

PAGE_SIZE = 25
BOXES = ("recus", "envoyes", "tous")
STATUSES = ("disponible", "expire", "retire", "brouillon")
SORTS = ("recent", "ancien", "titre")


@dataclass(frozen=True)
class Filters:
    """What the list shows; parsed from the query string, unknown values ignored."""

    box: str = "recus"
    space: str | None = None
    category: str | None = None
    status: str | None = None
    sender_org: str | None = None
    query: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    sort: str = "recent"
    after: str | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str], user: User) -> Filters:
        """Parse request arguments (never trusted: each value is checked)."""

        def pick(
            name: str, allowed: tuple[str, ...] | frozenset[str], default: str | None
        ) -> str | None:
            value = args.get(name)
            return value if value in allowed else default

        def day(name: str, end: bool) -> datetime | None:
            try:
                value = datetime.strptime(args.get(name, ""), "%Y-%m-%d")
            except ValueError:
                return None
            return datetime.combine(value.date(), time.max if end else time.min, UTC)

        query = (args.get("q") or "").strip()[:100] or None
        sender = args.get("expediteur") or None
        return cls(
            box=pick("boite", BOXES, "recus") or "recus",
            space=pick("espace", spaces_of(user), None),
            category=pick("categorie", tuple(str(c) for c in Category), None),
            status=pick("statut", STATUSES, None),
            sender_org=sender if sender and len(sender) == 32 and sender.isalnum() else None,
            query=query,
            since=day("du", end=False),
            until=day("au", end=True),
            sort=pick("tri", SORTS, "recent") or "recent",
            after=(args.get("apres") or None),
        )

    def args(self, **changes: Any) -> dict[str, str]:
        """Query arguments for a link to this list with *changes*."""
        values = {
            "boite": self.box,
            "espace": self.space,
            "categorie": self.category,
            "statut": self.status,
            "expediteur": self.sender_org,
            "q": self.query,
            "du": self.since.date().isoformat() if self.since else None,
            "au": self.until.date().isoformat() if self.until else None,
            "tri": self.sort,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v}


@dataclass(frozen=True)
class Page:
    """One page of deposits and the cursor of the next one."""

    deposits: list[Deposit]
    senders: dict[str, User]
    next_cursor: str | None


def _encode(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(values, list) or len(values) != 2:
        return None
    # Both values go into SQL comparisons: strings only, and no NUL (PostgreSQL refuses it).
    if not all(isinstance(v, str) and "\x00" not in v for v in values):
        return None
    return values


def list_deposits(session: Session, user: User, filters: Filters, limit: int = PAGE_SIZE) -> Page:
    """The deposits *user* may see that match *filters*, one keyset page at a time."""
    now = utcnow()
    received = filters.box == "recus"
    # The received box applies the visibility rule to its page only: see the end.
    stmt = sa.select(Deposit) if received else sa.select(Deposit).where(visible_deposits(user))
    mine = sa.or_(Deposit.sender_id == user.id, Deposit.sender_org_id == user.organisation_id)
    if received:
        stmt = stmt.where(
            Deposit.departement_code.in_(sorted(spaces_of(user))),
            Deposit.category.in_(sorted(str(c) for c in categories_of(user))),
            sa.exists().where(
                DepositRecipient.deposit_id == Deposit.id,
                sa.or_(
                    DepositRecipient.user_id == user.id,
                    DepositRecipient.organisation_id == user.organisation_id,
                ),
            ),
            Deposit.status != DepositStatus.DRAFT,
            # Never published (a draft withdrawn, purged or refused): no recipient sees it (see
            # can_see_deposit), so it must not take a place on the page either.
            Deposit.published_at.is_not(None),
        )
    elif filters.box == "envoyes":
        stmt = stmt.where(mine)
    if filters.space:
        stmt = stmt.where(Deposit.departement_code == filters.space)
    if filters.category:
        stmt = stmt.where(Deposit.category == filters.category)
    if filters.status == "disponible":
        stmt = stmt.where(Deposit.status == DepositStatus.AVAILABLE, Deposit.expires_at > now)
    elif filters.status == "expire":
        stmt = stmt.where(
            sa.or_(
                Deposit.status == DepositStatus.DESTROYED,
                sa.and_(Deposit.status == DepositStatus.AVAILABLE, Deposit.expires_at <= now),
            ),
            Deposit.withdrawn_at.is_(None),
        )
    elif filters.status == "retire":
        stmt = stmt.where(Deposit.withdrawn_at.is_not(None))
    elif filters.status == "brouillon":
        stmt = stmt.where(Deposit.status == DepositStatus.DRAFT)
    if filters.sender_org:
        stmt = stmt.where(Deposit.sender_org_id == filters.sender_org)
    if filters.since:
        stmt = stmt.where(Deposit.created_at >= filters.since)
    if filters.until:
        stmt = stmt.where(Deposit.created_at <= filters.until)
    if filters.query:
        sender = aliased(User)
        needle = fold(filters.query)
        stmt = stmt.where(
            sa.or_(
                Deposit.title_sort.contains(needle, autoescape=True),
                sa.exists().where(
                    sender.id == Deposit.sender_id,
                    sa.func.lower(sender.full_name).contains(
                        filters.query.lower(), autoescape=True
                    ),
                ),
            )
        )
    order: tuple[sa.UnaryExpression[Any], ...]
    if filters.sort == "titre":
        order = (Deposit.title_sort.asc(), Deposit.id.asc())
        cursor = decode_cursor(filters.after) if filters.after else None
        if cursor:
            stmt = stmt.where(
                sa.or_(
                    Deposit.title_sort > str(cursor[0]),
                    sa.and_(Deposit.title_sort == str(cursor[0]), Deposit.id > str(cursor[1])),
                )
            )
    else:
        descending = filters.sort == "recent"
        order = (
            (Deposit.created_at.desc(), Deposit.id.desc())
            if descending
            else (Deposit.created_at.asc(), Deposit.id.asc())
        )
        cursor = decode_cursor(filters.after) if filters.after else None
        if cursor:
            try:
                at = datetime.fromisoformat(str(cursor[0]))
            except ValueError:
                at = None
            if at is not None and at.tzinfo is None:
                at = None  # ours always carry their offset; a naive one cannot be compared
            if at is not None:
                # Expanded row comparison: portable (SQLite has no tuple comparison on dates
                # stored as text with time zones) and still served by the composite index.
                if descending:
                    stmt = stmt.where(
                        sa.or_(
                            Deposit.created_at < at,
                            sa.and_(Deposit.created_at == at, Deposit.id < str(cursor[1])),
                        )
                    )
                else:
                    stmt = stmt.where(
                        sa.or_(
                            Deposit.created_at > at,
                            sa.and_(Deposit.created_at == at, Deposit.id > str(cursor[1])),
                        )
                    )
    stmt = stmt.order_by(*order).limit(limit + 1)
    if received:
        # What is received (published, addressed to the user or its organisation, in one of
        # its spaces and categories) is always visible, so the page is chosen without the
        # visibility rule, and the rule then filters that page: it can only ever remove rows.
        # In one query, PostgreSQL evaluates the rule's EXISTS (behind an OR) by hashing every
        # recipient row of the organisation, some 20 ms at 100,000 deposits and growing with
        # them, where the page needs only a few dozen index probes.
        page = stmt.with_only_columns(Deposit.id).subquery()
        stmt = (
            sa.select(Deposit)
            .join(page, page.c.id == Deposit.id)
            .where(visible_deposits(user))
            .order_by(*order)
        )
    rows = list(session.execute(stmt).scalars())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode(
            [last.title_sort, last.id]
            if filters.sort == "titre"
            else [last.created_at.isoformat(), last.id]
        )
    sender_ids = {d.sender_id for d in rows}
    senders = (
        {u.id: u for u in session.execute(sa.select(User).where(User.id.in_(sender_ids))).scalars()}
        if sender_ids
        else {}
    )
    return Page(rows, senders, next_cursor)
