"""The inbox for every scope: one département, a territory of several, the whole country.

Pages follow the isolation rule, in order, page after page, whatever the scope; a page costs the
same statements whatever the scope; on PostgreSQL a page of several spaces is read in the order
of an index instead of sorting every deposit of the spaces (issue #10, item 6).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from portal.accounts.models import Role, User
from portal.db import db, new_id, utcnow
from portal.deposits import listing
from portal.deposits.listing import Filters, list_deposits
from portal.deposits.models import Deposit, DepositRecipient, DepositStatus
from portal.deposits.permissions import can_see_deposit, is_recipient, is_sender_side
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import OrgKind
from portal.settings import Settings
from portal.text import fold
from tests.conftest import make_settings
from tests.factories import Factory
from tests.support.services import SmtpSink

SCOPES = {"one": ("62",), "several": ("02", "59", "62"), "national": tuple(DEPARTEMENTS)}
COMMUNES = ["Béthune", "Arras", "Lille", "Laon", "Lens", "Paris 11e"]
LISTS = [
    {},
    {"boite": "recus", "tri": "titre"},
    {"boite": "recus", "tri": "ancien", "categorie": "fiche_liaison"},
    {"boite": "recus", "statut": "expire"},
    {"boite": "tous"},
    {"boite": "tous", "tri": "titre"},
    {"boite": "envoyes"},
    {"boite": "recus", "q": "bethune"},
    {"boite": "recus", "q": "lille", "tri": "titre"},
    {"boite": "tous", "q": "Martin"},  # a sender (SQLite lowers ASCII only)
    {"boite": "tous", "q": "cgpem"},
    {"boite": "recus", "q": "introuvable"},
    {"boite": "tous", "q": "semaine 1", "tri": "ancien"},
]


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp: SmtpSink) -> Settings:
    """Local storage on both backends: these tests read lists, never a file."""
    return make_settings(database_url, tmp_path, smtp)


@dataclass
class Scoped:
    """France Travail agents of one, three and every département, over one set of deposits."""

    app: Flask
    viewers: dict[str, str]  # scope (or "technicien") -> user id


def seed(factory: Factory, count: int, rng_seed: int = 10) -> Scoped:
    """*count* deposits in four spaces, addressed to France Travail structures of three scopes,
    to named people and to départements, in every state; created in bulk."""
    rng = random.Random(rng_seed)
    ft = {
        scope: factory.org(OrgKind.FRANCE_TRAVAIL, None, codes) for scope, codes in SCOPES.items()
    }
    viewers = {scope: factory.user(org, (Role.AGENT,)).id for scope, org in ft.items()}
    viewers["technicien"] = factory.user(ft["several"], (Role.AGENT, Role.TECHNICIEN)).id
    councils = {code: factory.org(OrgKind.DEPARTEMENT, code) for code in ("62", "59", "02", "75")}
    senders = {
        code: factory.user(org, name=name).id
        for (code, org), name in zip(
            councils.items(),
            ["Émilie Martin", "Paul Durand", "Léa Petit", "Marc Leroy"],
            strict=True,
        )
    }
    now = utcnow()
    deposits: list[dict[str, Any]] = []
    recipients: list[dict[str, Any]] = []
    for n in range(count):
        code = rng.choice(["62", "62", "59", "02", "75"])
        category = rng.choice(["fiche_liaison", "document", "flux_xml"])
        # Whole hours: ties on created_at, which the keyset breaks on the id.
        created = now - timedelta(hours=rng.randint(1, count // 3 + 2))
        if category == "flux_xml":
            title = f"Flux XML CGPEM {created:%Y}-S{n % 52 + 1:02d}"
        else:
            title = f"Fiche {rng.choice(COMMUNES)} — semaine {rng.randint(1, 52)}"
        from_ft = rng.random() < 0.3
        covering = [s for s, codes in SCOPES.items() if code in codes]
        scope = rng.choice(covering)
        sender_org = ft[scope] if from_ft else councils[code]
        sender = viewers[scope] if from_ft else senders[code]
        state = rng.random()
        status = DepositStatus.AVAILABLE
        published: Any = created + timedelta(minutes=5)
        withdrawn = None
        if state < 0.05:
            status, published = DepositStatus.DRAFT, None
        elif state < 0.1:
            status, withdrawn = DepositStatus.DESTROYED, created + timedelta(hours=1)
        elif state < 0.3:
            status = DepositStatus.DESTROYED
        deposit_id = new_id()
        deposits.append(
            {
                "id": deposit_id,
                "departement_code": code,
                "category": category,
                "title": title,
                "title_sort": fold(title),
                "sender_id": sender,
                "sender_org_id": sender_org,
                "status": status,
                "created_at": created,
                "published_at": published,
                "expires_at": created + timedelta(days=rng.choice([7, 90])),
                "withdrawn_at": withdrawn,
            }
        )
        to = rng.random()
        if from_ft:
            targets = [(councils[code], None)]
        elif to < 0.6:  # the structure of one of the scopes that covers the space
            targets = [(ft[rng.choice(covering)], None)]
        elif to < 0.75:  # every structure that covers it
            targets = [(ft[s], None) for s, codes in SCOPES.items() if code in codes]
        elif to < 0.9:  # a named person
            targets = [(None, viewers[rng.choice(["several", "national", "technicien"])])]
        else:  # none of France Travail's business
            targets = [(councils[code], None)]
        recipients += [
            {"id": new_id(), "deposit_id": deposit_id, "organisation_id": org, "user_id": user}
            for org, user in targets
        ]
    with factory.app.app_context():
        db.session.execute(sa.insert(Deposit), deposits)
        db.session.execute(sa.insert(DepositRecipient), recipients)
        db.session.commit()
    if db.bound(factory.app).engine.dialect.name == "postgresql":
        # As autovacuum leaves a live table: statistics, and the trigram indexes' pending
        # entries merged (until then a GIN index reads its pending list whole).
        engine = db.bound(factory.app).engine.execution_options(isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE deposit")
            conn.exec_driver_sql("VACUUM ANALYZE deposit_recipient")
    return Scoped(factory.app, viewers)


@pytest.fixture
def scoped(factory: Factory) -> Scoped:
    return seed(factory, 300)


def walk(user: User, args: dict[str, str], limit: int) -> Iterator[list[str]]:
    """Each page of a list, following its keyset cursor."""
    after: str | None = None
    for _ in range(1000):
        filters = Filters.from_args({**args, **({"apres": after} if after else {})}, user)
        page = list_deposits(db.session, user, filters, limit=limit)
        yield [d.id for d in page.deposits]
        if page.next_cursor is None:
            return
        after = page.next_cursor
    raise AssertionError("the cursor never ends")


def expected(user: User, args: dict[str, str]) -> list[str]:
    """The list as the isolation rule and the filters define it, in the list's order."""
    filters = Filters.from_args(args, user)
    now = utcnow()
    names = {u.id: u.full_name for u in db.session.execute(sa.select(User)).scalars()}

    def listed(d: Deposit) -> bool:
        if not can_see_deposit(user, d):
            return False
        if filters.box == "recus" and not (
            d.status != DepositStatus.DRAFT and d.published_at is not None and is_recipient(user, d)
        ):
            return False
        if filters.box == "envoyes" and not is_sender_side(user, d):
            return False
        if filters.category and d.category != filters.category:
            return False
        expired = d.status == DepositStatus.DESTROYED or (
            d.status == DepositStatus.AVAILABLE and d.expires_at <= now
        )
        if filters.status == "expire" and not (expired and d.withdrawn_at is None):
            return False
        q = filters.query
        return not q or fold(q) in d.title_sort or q.lower() in names[d.sender_id].lower()

    ids = [d.id for d in db.session.execute(sa.select(Deposit)).scalars() if listed(d)]
    # The order of the database (its collation for titles), as the list's.
    if filters.sort == "titre":
        order: tuple[Any, ...] = (Deposit.title_sort, Deposit.id)
    elif filters.sort == "ancien":
        order = (Deposit.created_at, Deposit.id)
    else:
        order = (Deposit.created_at.desc(), Deposit.id.desc())
    return list(
        db.session.execute(
            sa.select(Deposit.id).where(Deposit.id.in_(ids)).order_by(*order)
        ).scalars()
    )


@pytest.mark.parametrize("window", [3, 40, listing.SEARCH_WINDOW])
def test_every_scope_lists_what_the_isolation_rule_allows_in_order_page_after_page(
    scoped: Scoped, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given agents of one, three and every département, and a technician (flows too)
    # When each walks every list page after page (the search's first look at `window` rows:
    # a small one makes words go through the trigram indexes on PostgreSQL)
    monkeypatch.setattr(listing, "SEARCH_WINDOW", window)
    seen: dict[str, int] = {}
    with scoped.app.app_context():
        for who, user_id in scoped.viewers.items():
            user = db.session.get(User, user_id)
            assert user is not None
            for args in LISTS:
                pages = list(walk(user, args, limit=7))
                # Then the pages hold exactly the deposits the rule lets it see, in order,
                # each once, and every page but the last is full
                assert [i for p in pages for i in p] == expected(user, args), (who, args)
                assert all(len(p) == 7 for p in pages[:-1]), (who, args)
                seen[f"{who} {json.dumps(args)}"] = sum(map(len, pages))
    # The comparison is not vacuous: wider scopes see more, and searches find something
    assert seen["one {}"] < seen["several {}"] < seen["national {}"]
    assert seen['national {"boite": "recus", "q": "bethune"}'] > 7
    assert seen['technicien {"boite": "tous", "q": "cgpem"}'] > 7
    assert seen['several {"boite": "tous", "q": "cgpem"}'] == 0


def statements_of(user: User, args: dict[str, str]) -> int:
    """SQL statements one page of the list costs."""
    count = 0

    def counted(*_: Any) -> None:
        nonlocal count
        count += 1

    engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", counted)
    try:
        page = list_deposits(db.session, user, Filters.from_args(args, user), limit=5)
    finally:
        sa.event.remove(engine, "before_cursor_execute", counted)
    assert len(page.deposits) == 5, args  # full pages only: an empty one loads nothing more
    return count


def test_a_page_costs_the_same_statements_whatever_the_scope(scoped: Scoped) -> None:
    lists = [{}, {"boite": "recus", "tri": "titre"}, {"boite": "tous"}, {"boite": "envoyes"},
             {"boite": "tous", "q": "fiche"}, {"boite": "recus", "q": "semaine"}]  # fmt: skip
    with scoped.app.app_context():
        for args in lists:
            counts = {}
            for scope in SCOPES:
                # As in a request: the user (its organisation, territory, roles) is loaded
                # first, afresh, then the page
                db.session.expunge_all()
                user = db.session.get(User, scoped.viewers[scope])
                assert user is not None
                counts[scope] = statements_of(user, args)
            assert len(set(counts.values())) == 1, (args, counts)


# --- PostgreSQL: pages read in index order ---------------------------------------------------


def page_query(user: User, args: dict[str, str]) -> tuple[str, Any]:
    """The statement and parameters that choose the page."""
    captured: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        list_deposits(db.session, user, Filters.from_args(args, user))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    return next((s, p) for s, p in captured if "FROM deposit" in s and "ORDER BY" in s)


def deposit_rows_read(plan: dict[str, Any]) -> int:
    """Rows of `deposit` an EXPLAIN ANALYZE plan read (returned or filtered out), all nodes."""
    total = 0
    if plan.get("Relation Name") == "deposit":
        loops = plan.get("Actual Loops", 1)
        total += loops * (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0))
        total += plan.get("Rows Removed by Index Recheck", 0)
    for child in plan.get("Plans", []):
        total += deposit_rows_read(child)
    return total


def analyse(user: User, args: dict[str, str]) -> tuple[str, int]:
    """The page query's plan (text) and the rows of `deposit` it read."""
    statement, parameters = page_query(user, args)
    conn = db.session.connection()  # the list's transaction: its plan settings hold
    text = "\n".join(conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars())
    (analysed,) = conn.exec_driver_sql(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
    ).scalar_one()
    return text, deposit_rows_read(analysed["Plan"])


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_page_of_several_spaces_is_read_in_index_order_not_sorted(factory: Factory) -> None:
    # Given 3,000 deposits in four spaces, analysed, and the planner left to its defaults
    scoped = seed(factory, 3000)
    in_order = [{}, {"boite": "recus", "tri": "titre"}, {"boite": "tous"},
                {"boite": "tous", "tri": "ancien"}]  # fmt: skip
    with scoped.app.app_context():
        for scope in ("several", "national"):
            user = db.session.get(User, scoped.viewers[scope])
            assert user is not None
            for args in [*in_order, {"boite": "envoyes"}]:
                # When a page of several départements is chosen
                plan, read = analyse(user, args)
                # Then no sequential scan of the deposits, and the rows read are a few pages'
                # worth, not the spaces' thousands: an index gives the order (the sent box,
                # a few hundred rows here, may as well sort what its sender indexes give)
                assert "Seq Scan on deposit " not in plan, (scope, args, plan)
                assert read < 300, (scope, args, read, plan)
                if args in in_order:
                    assert "ix_deposit_created" in plan or "ix_deposit_title" in plan, plan


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_rare_word_is_searched_through_the_trigram_index_of_the_visible_categories(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 3,000 deposits, a third of them flows titled "Flux XML CGPEM …", and searches
    # that first look at the newest 60 rows (2,000 in production: most of this table)
    scoped = seed(factory, 3000)
    monkeypatch.setattr(listing, "SEARCH_WINDOW", 60)
    with scoped.app.app_context():
        user = db.session.get(User, scoped.viewers["national"])
        assert user is not None
        for args in ({"boite": "tous", "q": "cgpem"}, {"boite": "recus", "q": "introuvable"}):
            # When an agent (who may not see flows) searches a word found in none of its
            # deposits
            plan, read = analyse(user, args)
            # Then after those rows the trigram indexes of its categories answer: neither its
            # whole scope nor the flows are read
            assert "ix_deposit_title_trgm_document" in plan, plan
            assert "ix_deposit_title_trgm_flux_xml" not in plan, plan
            assert read < 300, (args, read, plan)
