"""Every role walks its pages: no dead end, and no English sentence in any form's answer.

The crawler (tests/support/crawl.py) starts at the home page of each role, follows every link,
then submits every form: GET forms (filters) with their current values, forms that ask for
something empty and with values out of range, and the one-button forms (take in charge,
withdraw, revoke…) as shown. A link or button shown to a person must lead somewhere (no 4xx,
no 5xx), and whatever the forms answer must be French.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal.accounts.models import Role
from portal.orgs.models import OrgKind
from tests.conftest import csrf_of, https
from tests.factories import Account, Cast, Factory, member, org
from tests.support.crawl import FormSeen, crawl, visible_text
from tests.support.services import SmtpSink

# Words of English sentences that are not French words (case-sensitive where French has them).
ENGLISH = re.compile(
    r"(?<![-:\w])(This|the|field|required|must|Invalid|invalid|Not a valid|valid|between|Number|"
    r"characters|Please|missing|choice|should|cannot|value|expired|failed)(?![-:\w])"
)
# Never submitted by the walk: leaving the session, or closing the session the walk runs in.
NOT_PRESSED = ("/deconnexion", "/fermer")


@dataclass
class Everyone(Cast):
    """One account of every role, in a département, France Travail, a provider, the platform."""

    cd62: Annotated[str, org(OrgKind.DEPARTEMENT, "CD 62", "62")]
    ft62: Annotated[str, org(OrgKind.FRANCE_TRAVAIL, "FT 62", territory=("62",))]
    provider62: Annotated[str, org(OrgKind.PRESTATAIRE, "Asso 62", "62")]
    platform: Annotated[str, org(OrgKind.PLATEFORME, "Plateforme", None)]
    agent62: Annotated[Account, member("cd62", Role.AGENT, name="Agnès Agent")]
    technicien62: Annotated[Account, member("cd62", Role.TECHNICIEN, name="Théo Technicien")]
    manager62: Annotated[Account, member("cd62", Role.GESTIONNAIRE, name="Gina Gestion")]
    colleague62: Annotated[Account, member("cd62", Role.AGENT, name="Colin Collègue")]
    officer62: Annotated[Account, member("cd62", Role.SECURITE, name="Sam Sécurité")]
    adviser_ft: Annotated[Account, member("ft62", Role.AGENT, name="Conseil Ler")]
    referent62: Annotated[Account, member("provider62", Role.AGENT, name="Ref Erent")]
    admin: Annotated[Account, member("platform", Role.ADMIN, name="Ada Admin")]


ROLES = [
    "agent62",
    "technicien62",
    "manager62",
    "officer62",
    "adviser_ft",
    "referent62",
    "admin",
]


@pytest.fixture
def everyone(factory: Factory) -> Everyone:
    """The cast of the walk."""
    return Everyone.build(factory)


@pytest.fixture
def client_of(app: Flask, login_as: Callable[..., FlaskClient]) -> Callable[[Account], FlaskClient]:
    """A separate logged-in client per account."""
    return lambda account: login_as(account, on=https(app.test_client()))


def _with_deposit(client: FlaskClient, everyone: Everyone) -> None:
    """The agent of 62 sends a PDF to France Travail, so that deposit pages exist."""
    from tests.deposits.conftest import PDF, create_deposit, upload

    deposit_id = create_deposit(client, [everyone.ft62])
    assert upload(client, deposit_id, "fiche.pdf", PDF).status_code == 201
    token = csrf_of(client, f"/depots/{deposit_id}")
    assert client.post(f"/depots/{deposit_id}/envoyer", data={"csrf_token": token}).status_code in (
        302,
        303,
    )


def _values(form: FormSeen, mode: str) -> dict[str, Any]:
    """What a careless person types: nothing, or values out of range."""
    data: dict[str, Any] = {}
    for name, kind, value in form.fields:
        if kind == "hidden":
            data[name] = value
        elif mode == "empty":
            continue
        elif kind == "number":
            data[name] = "100000"
        elif kind == "email":
            data[name] = "pas-une-adresse"
        elif kind in ("checkbox", "radio", "select"):
            data.setdefault(name, "valeur-inconnue")
        elif kind == "date":
            data[name] = "2026-13-45"
        else:
            data[name] = "x" * 5000
    return data


def _submit(client: FlaskClient, form: FormSeen, data: dict[str, Any]) -> TestResponse:
    if form.method == "get":
        # as a browser does: the action's own query string gives way to the form's fields
        return client.get(form.action.split("?")[0], query_string=data, buffered=True)
    return client.post(form.action, data=data, buffered=True)


def _english_in(response: TestResponse) -> list[str]:
    if response.status_code in (301, 302, 303) or not response.mimetype.startswith("text/html"):
        return []  # a redirect's body is never shown
    text = visible_text(response)
    return [text[max(0, m.start() - 40) : m.end() + 40] for m in ENGLISH.finditer(text)]


@pytest.mark.parametrize("who", ROLES)
def test_every_role_follows_every_link_and_button_of_its_pages_without_error(
    app: Flask, everyone: Everyone, client_of: Callable[[Account], FlaskClient], who: str
) -> None:
    # Given a deposit sent by the agent of 62 to France Travail
    _with_deposit(client_of(everyone.agent62), everyone)
    client = client_of(getattr(everyone, who))
    # When the person follows every link of its pages
    seen = crawl(client)
    # Then none leads to an error, and every page reads in French
    assert not seen.broken, seen.broken
    assert len(seen.pages) > 3, seen.pages
    english = [
        (path, m.group(0)) for path, text in seen.texts.items() for m in ENGLISH.finditer(text)
    ]
    assert not english, english
    # When it presses every button and submits every filter as shown
    failures = []
    pressed = set()
    for form in seen.forms:
        key = (form.action, form.method, form.button)
        if key in pressed or form.action.startswith(NOT_PRESSED):
            continue
        pressed.add(key)
        data = {name: value for name, _, value in form.fields if value}
        response = _submit(client, form, data)
        if response.status_code >= 400:
            failures.append((form.page, form.action, form.button, response.status_code))
    # Then none answers an error
    assert not failures, failures


@pytest.mark.parametrize("who", ROLES)
def test_every_form_answers_in_french_when_empty_or_out_of_range(
    app: Flask, everyone: Everyone, client_of: Callable[[Account], FlaskClient], who: str
) -> None:
    _with_deposit(client_of(everyone.agent62), everyone)
    client = client_of(getattr(everyone, who))
    seen = crawl(client)
    english = []
    tried = set()
    for form in seen.forms:
        if not form.has_inputs or form.action.startswith(NOT_PRESSED):
            continue
        for mode in ("empty", "out-of-range"):
            key = (form.action, form.method, mode)
            if key in tried:
                continue
            tried.add(key)
            response = _submit(client, form, _values(form, mode))
            assert response.status_code < 500, (form.action, mode)
            english += [(form.action, mode, s) for s in _english_in(response)]
    assert tried, "no form met"
    assert not english, english


def test_the_public_forms_answer_in_french_when_empty_or_out_of_range(
    app: Flask, client: FlaskClient
) -> None:
    for path in ("/connexion", "/mot-de-passe/oubli"):
        for form in [f for f in crawl(client, path, limit=1).forms if f.has_inputs]:
            for mode in ("empty", "out-of-range"):
                response = _submit(client, form, _values(form, mode))
                assert response.status_code < 500
                assert not _english_in(response), (path, mode)
                assert "Ce champ est requis." in visible_text(response) or mode != "empty"


def test_activation_and_reset_pages_state_the_minimum_length_and_answer_in_french(
    app: Flask, everyone: Everyone, client_of: Callable[[Account], FlaskClient], smtp: SmtpSink
) -> None:
    from tests.accounts.test_accounts import _create_via_manager, _link

    _create_via_manager(client_of(everyone.manager62), "nouvelle@example.org", ["agent"])
    newcomer = https(app.test_client())
    activation = _link(smtp, "nouvelle@example.org")
    newcomer.post(
        "/mot-de-passe/oubli",
        data={
            "csrf_token": csrf_of(newcomer, "/mot-de-passe/oubli"),
            "email": everyone.agent62.email,
        },
    )
    reset = _link(smtp, everyone.agent62.email)
    for link, minimum in ((activation, 12), (reset, 12)):
        page = newcomer.get(link)
        assert f"Au moins {minimum} caractères." in visible_text(page), link
        form = next(f for f in crawl(newcomer, link, limit=1).forms if f.has_inputs)
        for mode in ("empty", "out-of-range"):
            response = _submit(newcomer, form, _values(form, mode))
            assert response.status_code == 200
            assert not _english_in(response), (link, mode)


# The actions that cannot be undone: each must be confirmed in a DSFR modal.
IRREVERSIBLE = re.compile(r"/(retirer|revoquer|reinitialiser-mfa)$")  # and API tokens' revoquer


@pytest.mark.parametrize("who", ["agent62", "manager62", "technicien62"])
def test_irreversible_actions_are_posted_only_from_a_dsfr_modal_that_states_the_consequence(
    app: Flask, everyone: Everyone, client_of: Callable[[Account], FlaskClient], who: str
) -> None:
    import lxml.html

    _with_deposit(client_of(everyone.agent62), everyone)
    account = getattr(everyone, who)
    client = client_of(account)
    if who == "technicien62":  # an API token to revoke
        created = client.post(
            "/compte/jetons",
            data={
                "csrf_token": csrf_of(client, "/compte/jetons"),
                "name": "Script de dépôt",
                "scopes": ["read"],
                "lifetime_days": "30",
                "current": account.password,
            },
        )
        assert created.status_code in (200, 302), created.get_data(as_text=True)[:300]
    seen = crawl(client)
    checked = 0
    for page in seen.pages:
        response = client.get(page)
        if response.status_code != 200 or not response.mimetype.startswith("text/html"):
            continue
        tree = lxml.html.fromstring(response.get_data(as_text=True))
        for form in tree.iter("form"):
            if not IRREVERSIBLE.search(form.get("action") or ""):
                continue
            # Then the form lives in a DSFR modal dialog with a title and a consequence…
            dialog = next(a for a in form.iterancestors() if a.tag == "dialog")
            assert "fr-modal" in dialog.get("class", ""), page
            title = tree.get_element_by_id(dialog.get("aria-labelledby"))
            assert title.text_content().strip().endswith("?"), page
            assert len(dialog.findtext(".//p") or "") > 60, page
            # …opened by a page button that posts nothing itself
            openers = tree.xpath(f'//button[@aria-controls="{dialog.get("id")}"]')
            outside = [b for b in openers if dialog not in b.iterancestors()]
            assert outside and all(b.get("type") == "button" for b in outside), page
            assert outside[0].get("data-fr-opened") == "false"
            checked += 1
    assert checked, "no irreversible action met"


def test_the_inbox_and_the_deposit_page_show_the_same_instant_and_french_sizes(
    app: Flask, everyone: Everyone, client_of: Callable[[Account], FlaskClient]
) -> None:
    from portal.deposits.models import Deposit
    from portal.formats import datetime_fr, size_fr
    from tests.conftest import reread
    from tests.deposits.conftest import PDF

    _with_deposit(client_of(everyone.agent62), everyone)
    adviser = client_of(everyone.adviser_ft)
    inbox = adviser.get("/depots")
    deposit_id = re.search(r'href="/depots/([0-9a-f]{32})"', inbox.get_data(as_text=True))
    assert deposit_id
    deposit = reread(app, Deposit, deposit_id.group(1))
    assert deposit.published_at is not None
    shown = datetime_fr(deposit.published_at)
    page = adviser.get(f"/depots/{deposit.id}")
    assert shown in visible_text(inbox)
    assert shown in visible_text(page)
    assert size_fr(len(PDF)) in page.get_data(as_text=True) and "ko" in size_fr(len(PDF))


@pytest.mark.parametrize("who", ["agent62", "manager62"])
def test_the_error_summary_links_to_every_field_in_error(
    app: Flask, everyone: Everyone, client_of: Callable[[Account], FlaskClient], who: str
) -> None:
    import lxml.html

    client = client_of(getattr(everyone, who))
    checked = 0
    for form in crawl(client).forms:
        if form.method != "post" or not form.has_inputs or form.action.startswith(NOT_PRESSED):
            continue
        response = _submit(client, form, _values(form, "empty"))
        if response.status_code != 200:
            continue
        tree = lxml.html.fromstring(response.get_data(as_text=True))
        summary = tree.get_element_by_id("error-summary", None)
        in_error = tree.find_class("fr-error-text")
        if not in_error:
            continue
        # Then a summary lists the fields, each a link to an element of the page
        assert summary is not None, form.action
        links = [a.get("href") for a in summary.iter("a")]
        assert links, form.action
        for href in links:
            assert href.startswith("#") and tree.get_element_by_id(href[1:], None) is not None
        checked += 1
    assert checked


def test_the_accessibility_statement_is_public_and_linked_from_every_page(
    client: FlaskClient, everyone: Everyone, client_of: Callable[[Account], FlaskClient]
) -> None:
    statement = client.get("/accessibilite")
    assert statement.status_code == 200
    assert "partiellement conforme" in visible_text(statement)
    assert 'href="/accessibilite"' in client.get("/connexion").get_data(as_text=True)
    assert 'href="/accessibilite"' in client_of(everyone.agent62).get("/").get_data(as_text=True)
