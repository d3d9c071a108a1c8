"""The security workspace reads as French for a person; codes stay for filters and exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction, Outcome
from portal.db import db, utcnow
from portal.securite.alerts import raise_alert
from portal.securite.detectors import Hit
from portal.securite.forms import TARGET_TYPES
from portal.securite.labels import (
    ACTION_LABELS,
    TARGET_TYPE_LABELS,
    detail_fields,
    short_user_agent,
)
from portal.securite.models import AlertKind
from tests.factories import Account, OfficerWorld
from tests.securite.conftest import Emit

LoginAs = Callable[..., FlaskClient]
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _officer(app: Flask, login_as: LoginAs, account: Account) -> FlaskClient:
    return login_as(account, on=app.test_client())


def test_every_audit_action_and_target_type_has_a_french_label() -> None:
    assert not [a for a in AuditAction if a not in ACTION_LABELS]
    assert not [t for t in TARGET_TYPES if t not in TARGET_TYPE_LABELS]


def test_browsers_are_named_shortly_and_scripts_are_cut() -> None:
    assert short_user_agent(FIREFOX) == "Firefox 128 · Windows"
    chrome = (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36"
    )
    assert short_user_agent(chrome) == "Chrome 131 · Android"
    assert short_user_agent("curl/8.5.0") == "curl/8.5.0"
    assert len(short_user_agent("x" * 300)) == 40
    assert short_user_agent(None) == "—"


def test_details_become_labelled_fields() -> None:
    fields = detail_fields('{"deposit_id":"ab","national":false,"roles":["agent","technicien"]}')
    assert fields == [
        ("Dépôt", "ab"),
        ("Périmètre national", "non"),
        ("Rôles", "agent, technicien"),
    ]
    assert detail_fields("pas du JSON") == [("Texte brut", "pas du JSON")]


def test_the_journal_shows_labels_names_fields_and_short_browsers_and_keeps_the_codes(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    # Given the manager of 62 suspending the agent of 62 from Firefox
    emit(
        AuditAction.ACCOUNT_SUSPENDED,
        world.gest62,
        target=audit.Target("user", world.agent62.id, "62"),
        details={"reason": "départ"},
        user_agent=FIREFOX,
    )
    c = _officer(app, login_as, world.officer62)
    html = c.get("/securite/journal").get_data(as_text=True)
    # Then the officer reads the action in French, with its code beside it
    assert "Compte suspendu" in html and "<code" in html and "account:suspended" in html
    # And the account acted upon by name and organisation, not by id alone
    assert "Alex Test (CD 62)" in html
    # And the details as fields, the browser by name
    assert "<dt>Cause</dt><dd>départ</dd>" in html
    assert "Firefox 128 · Windows" in html
    # And the action filter offers the labels while filtering on the codes
    assert ">Compte suspendu (account:suspended)</option>" in html
    filtered = c.get("/securite/journal?action=account:suspended&cible_type=user")
    assert "Compte suspendu" in filtered.get_data(as_text=True)
    assert ">Compte</option>" in html


def test_the_audit_csv_follows_the_portal_french_convention(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    emit(AuditAction.AUTH_LOGIN_FAILURE, world.agent62, outcome=Outcome.FAILURE)
    c = _officer(app, login_as, world.officer62)
    response = c.get("/securite/journal/export.csv")
    text = response.get_data(as_text=True)
    # Then UTF-8 with a byte-order mark, `;` separated, French column names
    assert response.get_data().startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(text[1:]), delimiter=";"))
    header = rows[0]
    assert header[:3] == ["N°", "Horodatage (UTC)", "Code de l'action"]
    assert "Action" in header and "Date (heure de Paris)" in header
    failure = next(r for r in rows[1:] if "auth:login:failure" in r)
    # And the code stays beside its label
    assert failure[header.index("Action")] == "Échec de connexion"


def test_an_alert_names_its_account_and_organisation(
    app: Flask, world: OfficerWorld, login_as: LoginAs
) -> None:
    with app.app_context():
        alert, _ = raise_alert(
            db.session,
            Hit(
                AlertKind.MFA_REPLAY,
                "user",
                world.agent62.id,
                utcnow(),
                utcnow(),
                1,
                1,
                organisation_id=world.org62,
            ),
            audit.NO_CONTEXT,
        )
        db.session.commit()
        alert_id = alert.id
    html = _officer(app, login_as, world.officer62).get(f"/securite/alertes/{alert_id}")
    text = html.get_data(as_text=True)
    assert "Alex Test</a>, CD 62" in text
    assert f"<code>{world.agent62.id}</code>" not in text
