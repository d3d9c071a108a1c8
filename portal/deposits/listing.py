"""Inbox and outbox: filters, accent-blind search, French sorting, keyset pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.util import ClauseAdapter

from portal.accounts.models import User
from portal.db import utcnow
from portal.deposits.models import Category, Deposit, DepositRecipient, DepositStatus
from portal.deposits.permissions import categories_of, visible_deposits
from portal.orgs.permissions import spaces_of
from portal.text import fold

PAGE_SIZE = 25
# A search first looks at this many rows in list order (see _searched_page).
SEARCH_WINDOW = 2000
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


def _sort_keys(filters: Filters) -> tuple[tuple[str, str], bool]:
    """Names of the columns the list is sorted on, and whether it runs newest first."""
    if filters.sort == "titre":
        return ("title_sort", "id"), False
    return ("created_at", "id"), filters.sort == "recent"


def _ordering(columns: Sequence[Any], descending: bool) -> list[sa.UnaryExpression[Any]]:
    return [c.desc() if descending else c.asc() for c in columns]


def _after_cursor(filters: Filters) -> list[sa.ColumnElement[bool]]:
    """Rows after the keyset cursor of *filters*, in its order (none for the first page)."""
    cursor = decode_cursor(filters.after) if filters.after else None
    if not cursor:
        return []
    if filters.sort == "titre":
        return [
            sa.or_(
                Deposit.title_sort > str(cursor[0]),
                sa.and_(Deposit.title_sort == str(cursor[0]), Deposit.id > str(cursor[1])),
            )
        ]
    try:
        at = datetime.fromisoformat(str(cursor[0]))
    except ValueError:
        return []
    if at.tzinfo is None:
        return []  # ours always carry their offset; a naive one cannot be compared
    # Expanded row comparison: portable (SQLite has no tuple comparison on dates stored as
    # text with time zones) and still served by the composite indexes.
    if filters.sort == "recent":
        return [
            sa.or_(
                Deposit.created_at < at,
                sa.and_(Deposit.created_at == at, Deposit.id < str(cursor[1])),
            )
        ]
    return [
        sa.or_(
            Deposit.created_at > at,
            sa.and_(Deposit.created_at == at, Deposit.id > str(cursor[1])),
        )
    ]


def _conditions(
    user: User, filters: Filters, now: datetime
) -> tuple[list[sa.ColumnElement[bool]], sa.ColumnElement[bool]]:
    """What a deposit of the list must satisfy, without the search: conditions on the row
    itself, and the one that asks other tables (read only for rows the others let through)."""
    spaces = sorted(spaces_of(user))
    categories = sorted(str(c) for c in categories_of(user))
    where: list[sa.ColumnElement[bool]] = [
        Deposit.departement_code.in_(spaces),
        Deposit.category.in_(categories),
    ]
    gate: sa.ColumnElement[bool]
    if filters.box == "recus":
        where += [
            Deposit.status != DepositStatus.DRAFT,
            # Never published (a draft withdrawn, purged or refused): no recipient sees it (see
            # can_see_deposit), so it must not take a place on the page either.
            Deposit.published_at.is_not(None),
        ]
        # A LIMIT 1 lookup per row, as in visible_deposits: as an EXISTS, PostgreSQL may hash
        # every recipient row of the organisation (23 ms at 100,000 deposits) to check the
        # few rows a search found.
        gate = (
            sa.select(sa.literal(1))
            .where(
                DepositRecipient.deposit_id == Deposit.id,
                sa.or_(
                    DepositRecipient.user_id == user.id,
                    DepositRecipient.organisation_id == user.organisation_id,
                ),
            )
            .limit(1)
            .scalar_subquery()
            .is_not(None)
        )
    else:
        if filters.box == "envoyes":
            where.append(
                sa.or_(Deposit.sender_id == user.id, Deposit.sender_org_id == user.organisation_id)
            )
        gate = visible_deposits(user)
    if filters.space:
        where.append(Deposit.departement_code == filters.space)
    if filters.category:
        where.append(Deposit.category == filters.category)
    if filters.status == "disponible":
        where += [Deposit.status == DepositStatus.AVAILABLE, Deposit.expires_at > now]
    elif filters.status == "expire":
        where += [
            sa.or_(
                Deposit.status == DepositStatus.DESTROYED,
                sa.and_(Deposit.status == DepositStatus.AVAILABLE, Deposit.expires_at <= now),
            ),
            Deposit.withdrawn_at.is_(None),
        ]
    elif filters.status == "retire":
        where.append(Deposit.withdrawn_at.is_not(None))
    elif filters.status == "brouillon":
        where.append(Deposit.status == DepositStatus.DRAFT)
    if filters.sender_org:
        where.append(Deposit.sender_org_id == filters.sender_org)
    if filters.since:
        where.append(Deposit.created_at >= filters.since)
    if filters.until:
        where.append(Deposit.created_at <= filters.until)
    return where + _after_cursor(filters), gate


def _senders_named(query: str) -> sa.Select[str]:
    return sa.select(User.id).where(
        sa.func.lower(User.full_name).contains(query.lower(), autoescape=True)
    )


def _searched_page(
    user: User,
    filters: Filters,
    where: list[sa.ColumnElement[bool]],
    gate: sa.ColumnElement[bool],
    limit: int,
) -> sa.Select[str]:
    """The ids of a page of search results on PostgreSQL, whatever the scope and the word.

    Read in list order, a frequent word (a commune, a sender) fills the page within a few
    rows; a rare one would make that read go through the whole scope (every flow for an agent
    searching "cgpem", nine months back for "semaine 12"). So the first SEARCH_WINDOW rows in
    list order are searched first; only when they hold less than the page and there are more
    rows are all the matches fetched through the trigram indexes (as many as the word has),
    sorted, and checked against the gate in that order until the page is full. Either way the
    result is the page the plain query would give.
    """
    assert filters.query  # noqa: S101 - called for searches only
    needle = fold(filters.query)
    names, descending = _sort_keys(filters)

    def ordered(table: Any) -> list[sa.UnaryExpression[Any]]:
        return _ordering([table.c[n] for n in names], descending)

    listed = (Deposit.id, Deposit.created_at, Deposit.title_sort)
    # The rows searched carry what the gate reads, so that the gate is asked of them directly:
    # joined back to `deposit`, the planner may loop over the window for each deposit row.
    carried = (
        *listed,
        Deposit.sender_id,
        Deposit.sender_org_id,
        Deposit.status,
        Deposit.published_at,
        Deposit.departement_code,
        Deposit.category,
    )
    window = (
        sa.select(*carried)
        .where(*where)
        .order_by(*_ordering([getattr(Deposit, n) for n in names], descending))
        .limit(SEARCH_WINDOW)
        .cte("search_window")
        .prefix_with("MATERIALIZED")
    )
    hits = (
        sa.select(*(window.c[c.key] for c in listed))
        .where(
            sa.or_(
                window.c.title_sort.contains(needle, autoescape=True),
                window.c.sender_id.in_(_senders_named(filters.query)),
            ),
            ClauseAdapter(window).traverse(gate),
        )
        .order_by(*ordered(window))
        .limit(limit + 1)
        .cte("search_hits")
        .prefix_with("MATERIALIZED")
    )
    # One arm per category the list may show, each served by that category's partial
    # trigram index (the category is a planning-time value: see list_deposits).
    categories = sorted(
        str(c)
        for c in categories_of(user)
        if filters.category is None or str(c) == filters.category
    )
    by_title = sa.select(*carried).where(
        *where,
        sa.or_(
            *(
                sa.and_(Deposit.category == c, Deposit.title_sort.contains(needle, autoescape=True))
                for c in categories
            ),
            sa.false(),
        ),
    )
    sender = aliased(User)
    by_sender = (
        sa.select(*carried)
        .join(sender, sender.id == Deposit.sender_id)
        .where(
            *where,
            sa.func.lower(sender.full_name).contains(filters.query.lower(), autoescape=True),
            # Found by its title already: no duplicate to remove from thousands of matches.
            sa.not_(Deposit.title_sort.contains(needle, autoescape=True)),
        )
    )
    matches = sa.union_all(by_title, by_sender).subquery("search_matches")
    # Sorted first, the gate then asked in list order of as few matches as the page needs
    # (OFFSET 0 keeps PostgreSQL from asking it of every match before the sort).
    in_order = sa.select(matches).order_by(*ordered(matches)).offset(0).subquery("in_order")
    window_has_page = sa.or_(
        sa.select(sa.func.count()).select_from(hits).scalar_subquery() > limit,
        sa.select(sa.func.count()).select_from(window).scalar_subquery() < SEARCH_WINDOW,
    )
    from_index = (
        sa.select(*(in_order.c[c.key] for c in listed))
        .where(sa.not_(window_has_page), ClauseAdapter(in_order).traverse(gate))
        .order_by(*ordered(in_order))
        .limit(limit + 1)
        .subquery()
    )
    both = sa.union_all(sa.select(hits).where(window_has_page), sa.select(from_index)).subquery()
    return sa.select(both.c.id).order_by(*ordered(both)).limit(limit + 1)


def list_deposits(session: Session, user: User, filters: Filters, limit: int = PAGE_SIZE) -> Page:
    """The deposits *user* may see that match *filters*, one keyset page at a time.

    Whatever the scope (one département, a territory, the whole country), a page is read in
    the order of an index (ix_deposit_created, ix_deposit_title, or the per-space ones) and
    costs the same statements.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # psycopg prepares a statement run five times on a connection, and PostgreSQL may then
        # plan it blind to its values: the number of spaces decides between an index order and
        # a sort, and a search's category decides which trigram index serves it. As for the
        # audit search (audit/query.py), each page is planned for its own values. No JIT and
        # no parallel workers: a search's estimate counts its fallback branch as if it ran on
        # every match of a common word, and compiling that plan took 0.5 s, starting workers a
        # few milliseconds, for a page read in a few milliseconds.
        session.execute(
            sa.text(
                "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
                " set_config('jit', 'off', true),"
                " set_config('max_parallel_workers_per_gather', '0', true)"
            )
        )
    where, gate = _conditions(user, filters, utcnow())
    names, descending = _sort_keys(filters)
    order = _ordering([getattr(Deposit, n) for n in names], descending)
    received = filters.box == "recus"
    if filters.query and postgres:
        page = _searched_page(user, filters, where, gate, limit).subquery()
        stmt = sa.select(Deposit).join(page, page.c.id == Deposit.id).order_by(*order)
    else:
        if filters.query:
            where.append(
                sa.or_(
                    Deposit.title_sort.contains(fold(filters.query), autoescape=True),
                    Deposit.sender_id.in_(_senders_named(filters.query)),
                )
            )
        stmt = sa.select(Deposit).where(*where, gate).order_by(*order).limit(limit + 1)
        if received:
            page = stmt.with_only_columns(Deposit.id).subquery()
            stmt = sa.select(Deposit).join(page, page.c.id == Deposit.id).order_by(*order)
    if received:
        # What is received (published, addressed to the user or its organisation, in one of
        # its spaces and categories) is always visible, so the page is chosen without the
        # visibility rule, and the rule then filters that page: it can only ever remove rows.
        # In one query, PostgreSQL evaluates the rule's EXISTS (behind an OR) by hashing every
        # recipient row of the organisation, some 20 ms at 100,000 deposits and growing with
        # them, where the page needs only a few dozen index probes.
        stmt = stmt.where(visible_deposits(user))
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
