"""The inbox's search on the person's surname: posted, never in the URL (personal data)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

import audit
from portal.accounts.models import User
from portal.container import services
from portal.db import db
from portal.fiches import services as fiches
from tests.factories import Account
from tests.fiches.conftest import NOM, FicheWorld, bilaterale_values, post_form


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_the_surname_is_posted_and_a_surname_in_the_url_is_ignored(
    app: Flask, fw: FicheWorld, client_for: Callable[[Account], FlaskClient]
) -> None:
    with app.app_context():
        user = db.session.get(User, fw.adviser.id)
        assert user is not None
        draft = fiches.Draft("liaison-bilaterale@1", "62", fw.cd62, bilaterale_values(fw))
        fiche_id = fiches.submit(db.session, services(), user, draft, audit.NO_CONTEXT).id
    slai = client_for(fw.slai62)
    page = slai.get("/fiches").get_data(as_text=True)
    assert '<form method="post" action="/fiches"' in page and 'name="nom"' in page
    assert (
        post_form(slai, "/fiches", {"nom": NOM.lower()}).get_data(as_text=True).count(fiche_id) == 1
    )
    assert fiche_id not in post_form(slai, "/fiches", {"nom": "Autrenom"}).get_data(as_text=True)
    # A surname in the query string (a bookmarked or logged URL) searches nothing.
    assert fiche_id in slai.get("/fiches?nom=Autrenom").get_data(as_text=True)
    # The search is a POST of the page: without its CSRF token, refused.
    assert slai.post("/fiches", data={"nom": NOM}).status_code == 400
