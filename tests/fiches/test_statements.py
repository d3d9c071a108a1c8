"""What sending a fiche and reading the inbox ask of the database: the same statements whatever
the number of organisations, accounts and fiches (equal work proved by counting, not timing)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.db import db
from portal.fiches.models import Fiche
from portal.orgs.models import OrgKind
from tests.api.conftest import Api
from tests.factories import Factory
from tests.fiches.conftest import FicheWorld, bilaterale_values, csrf_of
from tests.support.statements import recorded_statements, without_session_upkeep

Clients = Callable[..., FlaskClient]

SEARCH = "search: POST /fiches boite=envoyees nom=Martin"


def _body(fw: FicheWorld) -> dict[str, Any]:
    return {
        "form": "liaison-bilaterale",
        "departement": "62",
        "recipient": fw.cd62,
        "values": bilaterale_values(fw),
    }


def _sending(app: Flask, api: Api, fw: FicheWorld) -> list[str]:
    with app.app_context():
        engine = db.engine
    with recorded_statements(engine) as seen:
        response = api.post("/api/v1/fiches", json=_body(fw))
    assert response.status_code == 201, response.get_json()
    return without_session_upkeep(seen)


def _crowd(factory: Factory, n: int) -> None:
    """*n* more organisations of every kind a bilatérale fiche may name, with their agents."""
    for i in range(n):
        provider = factory.org(OrgKind.PRESTATAIRE, "62", name=f"Prestataire foule {i}")
        ft = factory.org(OrgKind.FRANCE_TRAVAIL, None, territory=("62", "59"), name=f"FT foule {i}")
        cd = factory.org(OrgKind.DEPARTEMENT, "59", name=f"CD foule {i}")
        for org_id in (provider, ft, cd, cd):
            factory.user(org_id)


def test_sending_costs_the_same_statements_whatever_the_number_of_organisations(
    app: Flask, fw: FicheWorld, factory: Factory, api_for: Callable[..., Api]
) -> None:
    api = api_for(fw.adviser)
    _sending(app, api, fw)  # warm: the catalogue, the token's first use
    before = _sending(app, api, fw)
    _crowd(factory, 4)
    after = _sending(app, api, fw)
    assert len(after) == len(before), "\n".join(after)
    # Validated once, stored once, sent once (57 statements on PostgreSQL before: the
    # references read three times, the values written then read back, two audit events).
    # 39: the answer lists the fiche's attachments (one more SELECT since the API takes them).
    work = [s for s in before if not s.startswith("BEGIN")]  # SQLite says BEGIN, not PostgreSQL
    assert len(work) <= 39, f"{len(work)}\n" + "\n".join(work)


def test_an_inbox_page_costs_the_same_statements_whatever_the_number_of_fiches(
    app: Flask, fw: FicheWorld, api_for: Callable[..., Api], client_for: Clients
) -> None:
    api = api_for(fw.adviser)
    _sending(app, api, fw)
    slai = client_for(fw.slai62)
    with app.app_context():
        engine = db.engine

    def page(path: str) -> int:
        if path == SEARCH:  # the surname is posted, never in the URL
            token = csrf_of(slai, "/fiches")
            data = {"csrf_token": token, "boite": "envoyees", "nom": "Martin"}
            slai.post("/fiches", data=data)  # warm
            with recorded_statements(engine) as seen:
                response = slai.post("/fiches", data=data)
        else:
            slai.get(path)  # warm
            with recorded_statements(engine) as seen:
                response = slai.get(path)
        assert response.status_code == 200
        return len(without_session_upkeep(seen))

    paths = (
        "/fiches",
        "/fiches?boite=en-retard",
        SEARCH,
        "/fiches/suivi",  # the monthly counts: one aggregate query
    )
    few = {path: page(path) for path in paths}
    for _ in range(4):
        _sending(app, api, fw)
    many = {path: page(path) for path in paths}
    assert many == few


def test_the_inbox_pages_by_keyset_and_a_forged_cursor_shows_the_first_page(
    app: Flask, fw: FicheWorld, api_for: Callable[..., Api], client_for: Clients
) -> None:
    from portal.accounts.models import User
    from portal.container import services
    from portal.fiches import services as fiches

    api = api_for(fw.adviser)
    for _ in range(5):
        _sending(app, api, fw)
    with app.app_context():
        user = db.session.get(User, fw.slai62.id)
        assert user is not None
        svc = services()
        first = fiches.fiches_page(db.session, svc, user, "recues", limit=2)
        seen = [r.fiche.id for r in first.rows]
        cursor = first.next_cursor
        while cursor:
            page = fiches.fiches_page(db.session, svc, user, "recues", after=cursor, limit=2)
            seen += [r.fiche.id for r in page.rows]
            cursor = page.next_cursor
        everything = fiches.fiches_page(db.session, svc, user, "recues", limit=50)
        assert seen == [r.fiche.id for r in everything.rows] and len(seen) == 5
        assert everything.next_cursor is None
        for forged in ("x", "W10", "WyIyMDI2IiwgMV0"):  # garbage, [], ["2026", 1]
            again = fiches.fiches_page(db.session, svc, user, "recues", after=forged, limit=2)
            assert [r.fiche.id for r in again.rows] == seen[:2]
        # The overdue box pages on the deadline, both sides of it the same fiches.
        for fiche in db.session.execute(sa.select(Fiche)).scalars():
            assert fiche.sent_at is not None
            fiche.due_at = fiche.sent_at - timedelta(days=1)
        db.session.commit()
        for account in (fw.slai62, fw.adviser):
            side = db.session.get(User, account.id)
            assert side is not None
            pages, cursor = [], None
            while True:
                page = fiches.fiches_page(db.session, svc, side, "en-retard", after=cursor, limit=2)
                pages += [r.fiche.id for r in page.rows]
                if not (cursor := page.next_cursor):
                    break
            assert pages == seen, account  # deadline = sending + 21 days: the same order
        # The provider of 59 gets nothing from a cursor of 62's box.
        other = db.session.get(User, fw.referent59.id)
        assert other is not None
        leaked = fiches.fiches_page(db.session, svc, other, "recues", after=first.next_cursor)
        assert not leaked.rows
    # On the web: a page after the cursor, and the way back to the first.
    slai = client_for(fw.slai62)
    html = slai.get("/fiches").get_data(as_text=True)
    assert 'id="next-page"' not in html and "Première page" not in html
    html = slai.get(f"/fiches?apres={first.next_cursor}").get_data(as_text=True)
    assert "Première page" in html
    assert all(fiche_id in html for fiche_id in seen[2:]) and seen[0] not in html
