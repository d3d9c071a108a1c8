"""The workspace through HTTP: role gate, scope on every page and export, audit of reads."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction, Outcome
from portal.db import db, new_id, utcnow
from portal.deposits.models import Deposit, DepositFile
from portal.securite import services as securite_services
from portal.securite.alerts import raise_alert
from portal.securite.detectors import Hit
from portal.securite.models import AlertKind, SecurityAlert
from tests.conftest import audit_rows, csrf_of
from tests.factories import Account, OfficerWorld
from tests.securite.conftest import Emit

LoginAs = Callable[..., FlaskClient]


def page(client: FlaskClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.get_data(as_text=True)


def as_officer(app: Flask, login_as: LoginAs, account: Account) -> FlaskClient:
    return login_as(account, on=app.test_client())


def make_deposit(app: Flask, sender: Account, departement: str, title: str) -> tuple[str, str]:
    with app.app_context():
        deposit = Deposit(
            departement_code=departement,
            category="fiche_liaison",
            title=title,
            title_sort=title.lower(),
            sender_id=sender.id,
            sender_org_id=sender.org_id,
            status="available",
            created_at=utcnow(),
            expires_at=utcnow() + timedelta(days=30),
        )
        db.session.add(deposit)
        db.session.flush()
        file = DepositFile(
            deposit_id=deposit.id,
            object_key=new_id(),
            filename="DUPONT Jean 1850762123456.pdf",
            content_type="application/pdf",
            size=10,
            sha256="0" * 64,
        )
        db.session.add(file)
        db.session.commit()
        return deposit.id, file.id


def seed(emit: Emit, world: OfficerWorld) -> None:
    """Rows of 62, of 59, of the provider of 62 and of France Travail, each with a marker."""
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent62, details={"marker": "m-agent62"})
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.provider_agent62, details={"marker": "m-presta62"})
    emit(
        AuditAction.DEPOSIT_DOWNLOADED,
        world.officer_ft62,
        target=audit.Target("file", "1" * 32, "62"),
        details={"marker": "m-ft-in-62"},
    )
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent59, details={"marker": "m-agent59"})
    emit(
        AuditAction.DEPOSIT_DOWNLOADED,
        world.agent59,
        target=audit.Target("file", "2" * 32, "59"),
        details={"marker": "m-space59"},
        ip="192.0.2.59",
    )
    emit(
        AuditAction.AUTH_LOGIN_FAILURE, None, outcome=Outcome.FAILURE, details={"marker": "m-anon"}
    )


MARKERS_62 = ("m-agent62", "m-presta62", "m-ft-in-62")
MARKERS_ELSEWHERE = ("m-agent59", "m-space59", "m-anon")


# --- the gate -----------------------------------------------------------------------------


def test_only_security_officers_get_in_and_others_get_404(
    app: Flask, world: OfficerWorld, login_as: LoginAs, client: FlaskClient
) -> None:
    # Anonymous: the deny-by-default gate sends to the log-in page
    assert client.get("/securite/journal").status_code == 302
    # Given an account manager and an agent
    for account in (world.gest62, world.agent62):
        c = as_officer(app, login_as, account)
        # Then every page of the workspace is "not found", and no search is audited
        for path in (
            "/securite",
            "/securite/journal",
            "/securite/journal/export.csv",
            "/securite/journal/export.json",
            f"/securite/utilisateurs/{world.agent62.id}",
            "/securite/alertes",
        ):
            assert c.get(path).status_code == 404, path
        assert "nav-securite" not in page(c, "/")
    assert audit_rows(app, AuditAction.AUDIT_SEARCHED) == []
    assert audit_rows(app, AuditAction.AUDIT_EXPORTED) == []


def test_the_header_links_the_workspace_for_officers(
    app: Flask, world: OfficerWorld, login_as: LoginAs
) -> None:
    c = as_officer(app, login_as, world.officer62)
    assert 'id="nav-securite"' in page(c, "/")
    assert "Espace sécurité" in page(c, "/securite")


# --- the scope, on every page and export -----------------------------------------------------


def test_an_officer_of_62_sees_nothing_of_59_in_search_exports_and_timelines(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    # Given rows of 62, 59 and anonymous rows, a deposit of 59 and an alert of 59
    seed(emit, world)
    deposit59, _file = make_deposit(app, world.agent59, "59", "Fiche 59")
    emit(
        AuditAction.DEPOSIT_CREATED,
        world.agent59,
        target=audit.Target("deposit", deposit59, "59"),
    )
    with app.app_context():
        alert59, _ = raise_alert(
            db.session,
            Hit(
                AlertKind.MFA_REPLAY,
                "user",
                world.agent59.id,
                utcnow(),
                utcnow(),
                None,
                None,
                organisation_id=world.org59,
            ),
            audit.NO_CONTEXT,
        )
        db.session.commit()
        alert59_id = alert59.id
    c = as_officer(app, login_as, world.officer62)
    # When the officer of 62 searches without a filter, and exports
    html = page(c, "/securite/journal")
    exported = page(c, "/securite/journal/export.csv") + page(c, "/securite/journal/export.json")
    # Then it sees its space, its agents and its provider's agents, and nothing else
    for marker in MARKERS_62:
        assert marker in html and marker in exported
    for marker in MARKERS_ELSEWHERE:
        assert marker not in html and marker not in exported
    assert deposit59 not in html and deposit59 not in exported
    # And asking for 59 explicitly changes nothing
    for path in (
        "/securite/journal?departement=59",
        f"/securite/journal?organisation={world.org59}",
        f"/securite/journal?utilisateur={world.agent59.id}",
        "/securite/journal?ip=192.0.2.59",
        "/securite/journal/export.csv?departement=59",
        f"/securite/journal/export.json?utilisateur={world.agent59.id}",
    ):
        body = page(c, path)
        for marker in MARKERS_ELSEWHERE:
            assert marker not in body, path
    # And the timelines and the alert of 59 are "not found"
    page(c, f"/securite/utilisateurs/{world.agent59.id}", 404)
    page(c, f"/securite/depots/{deposit59}", 404)
    page(c, f"/securite/alertes/{alert59_id}", 404)
    assert alert59_id not in page(c, "/securite/alertes")
    assert "<strong>0</strong> alerte non acquittée" in page(c, "/securite")
    token = csrf_of(c, "/securite/journal")
    assert (
        c.post(f"/securite/alertes/{alert59_id}/acquitter", data={"csrf_token": token}).status_code
        == 404
    )


def test_the_national_officer_sees_every_row(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    seed(emit, world)
    c = as_officer(app, login_as, world.officer_national)
    html = page(c, "/securite/journal")
    for marker in MARKERS_62 + MARKERS_ELSEWHERE:
        assert marker in html
    assert "national" in page(c, "/securite")


def test_a_france_travail_officer_sees_its_territory_only(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    seed(emit, world)
    c = as_officer(app, login_as, world.officer_ft62)
    html = page(c, "/securite/journal")
    assert "m-ft-in-62" in html
    for marker in MARKERS_ELSEWHERE:
        assert marker not in html


# --- searching ---------------------------------------------------------------------------------


def test_filters_narrow_the_search_and_each_search_is_audited(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    seed(emit, world)
    emit(
        AuditAction.AUTH_MFA_FAILURE,
        world.agent62,
        outcome=Outcome.FAILURE,
        ip="198.51.100.1",
        details={"marker": "m-mfa-failure"},
    )
    c = as_officer(app, login_as, world.officer62)
    html = page(c, "/securite/journal?action=auth:&resultat=failure")
    assert "m-mfa-failure" in html and "m-agent62" not in html
    html = page(c, "/securite/journal?ip=198.51.100.1")
    assert "m-mfa-failure" in html and "m-agent62" not in html
    html = page(c, f"/securite/journal?organisation={world.provider62}")
    assert "m-presta62" in html and "m-agent62" not in html
    html = page(c, "/securite/journal?departement=62&action=deposit:downloaded")
    assert "m-ft-in-62" in html and "m-presta62" not in html
    tomorrow = (utcnow() + timedelta(days=2)).date().isoformat()
    assert "m-agent62" not in page(c, f"/securite/journal?du={tomorrow}")
    # Each search wrote one row, with the criteria (ids only) and the officer as actor
    searched = audit_rows(app, AuditAction.AUDIT_SEARCHED)
    assert len(searched) == 5
    assert all(r.actor_id == world.officer62.id for r in searched)
    details = json.loads(searched[1].details)
    assert details["source_ip"] == "198.51.100.1" and details["view"] == "search"


@pytest.mark.parametrize(
    "period", ["au=9999-12-31", "du=0001-01-01", "du=0001-01-01&au=9999-12-31", "du=9999-12-31"]
)
def test_a_period_at_the_ends_of_the_calendar_answers_a_page_not_an_error(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs, period: str
) -> None:
    # Given a row of 62 today
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent62, details={"marker": "m-agent62"})
    c = as_officer(app, login_as, world.officer62)
    # When the officer searches and exports a period reaching the calendar's ends
    html = page(c, f"/securite/journal?{period}")
    export = c.get(f"/securite/journal/export.csv?{period}")
    # Then both answer (the day is brought back within the searchable range), no error
    assert export.status_code == 200
    csv_text = export.get_data(as_text=True)
    expected = not period.startswith("du=9999")
    assert ("m-agent62" in html) is expected and ("m-agent62" in csv_text) is expected


def test_an_email_in_the_user_field_becomes_the_account_id_before_any_url(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    seed(emit, world)
    c = as_officer(app, login_as, world.officer62)
    response = c.get(f"/securite/journal?utilisateur={world.agent62.email}")
    assert response.status_code == 302
    assert world.agent62.email not in response.headers["Location"]
    assert world.agent62.id in response.headers["Location"]
    html = page(c, response.headers["Location"])
    assert "m-agent62" in html and "m-presta62" not in html
    for row in audit_rows(app):
        assert world.agent62.email not in row.details
    # And an address of 59 resolves exactly like an unknown one
    of59 = c.get(f"/securite/journal?utilisateur={world.agent59.email}").headers["Location"]
    unknown = c.get("/securite/journal?utilisateur=nobody@example.org").headers["Location"]
    assert of59 == unknown and world.agent59.id not in of59


def test_keyset_pagination_walks_every_row_once(
    app: Flask, world: OfficerWorld, login_as: LoginAs
) -> None:
    # Given 130 rows of an agent of 62
    with app.app_context():
        for i in range(130):
            audit.record(
                db.session,
                AuditAction.DEPOSIT_LINK_ISSUED,
                actor=audit.Actor(world.agent62.id, world.org62),
                target=audit.Target("file", f"{i:032x}", "62"),
            )
        db.session.commit()
    c = as_officer(app, login_as, world.officer62)
    seen: list[str] = []
    path = "/securite/journal?action=deposit:link-issued"
    pages = 0
    while path:
        html = page(c, path.replace("&amp;", "&"))
        pages += 1
        seen += [f"{i:032x}" for i in range(130) if f"{i:032x}" in html]
        marker = 'id="next-page" href="'
        path = html.split(marker, 1)[1].split('"', 1)[0] if marker in html else ""
    assert pages == -(-130 // securite_services.PAGE_SIZE)  # 130 rows, 20 a page: 7 pages
    assert sorted(seen) == sorted(f"{i:032x}" for i in range(130))
    assert len(seen) == 130


def test_injection_characters_are_shown_literally(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    # Given a row whose user agent and details carry markup, CR/LF and a CSV formula
    emit(
        AuditAction.AUTH_LOGIN_FAILURE,
        world.agent62,
        outcome=Outcome.FAILURE,
        user_agent='<script>alert("ua")</script>\r\nX-Injected: 1',
        target=audit.Target("user", "evil\u202egpj.exe"),
        details={"note": '<img src=x onerror=alert(1)>\n=HYPERLINK("x")'},
    )
    c = as_officer(app, login_as, world.officer62)
    html = page(c, "/securite/journal")
    # Then the page shows them as text, never as markup
    assert '<script>alert("ua")' not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;ua&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # And CR/LF and a right-to-left override are shown as escapes, never acted upon
    assert "&lt;/script&gt;\\r\\nX-Injected: 1" in html
    assert "\u202e" not in html and "\\u202e" in html
    # And the CSV export keeps them inside one record
    text = page(c, "/securite/journal/export.csv")
    assert text.startswith("\ufeff")  # the French CSV convention: BOM, `;`
    records = list(csv.reader(io.StringIO(text[1:]), delimiter=";"))
    header, body = records[0], records[1:]
    assert any('<script>alert("ua")</script>\r\nX-Injected: 1' in cell for r in body for cell in r)
    assert all(len(r) == len(header) for r in body)


# --- timelines ---------------------------------------------------------------------------------


def test_the_deposit_timeline_shows_ids_and_metadata_never_title_or_file_name(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    deposit_id, file_id = make_deposit(app, world.agent62, "62", "Fiche de M. DUPONT")
    target = audit.Target("deposit", deposit_id, "62")
    emit(AuditAction.DEPOSIT_CREATED, world.agent62, target=target, details={"marker": "m-created"})
    file_target = audit.Target("file", file_id, "62")
    emit(
        AuditAction.DEPOSIT_FILE_UPLOADED,
        world.agent62,
        target=file_target,
        details={"marker": "m-up"},
    )
    emit(
        AuditAction.DEPOSIT_DOWNLOADED,
        world.officer_ft62,
        target=file_target,
        details={"deposit_id": deposit_id, "size": 10},
    )
    emit(
        AuditAction.ACCESS_DENIED,
        world.agent59,
        target=target,
        outcome=Outcome.DENIED,
        details={"reason": "not_visible", "marker": "m-denied"},
    )
    emit(
        AuditAction.DEPOSIT_CREATED,
        world.agent62,
        target=audit.Target("deposit", "9" * 32, "62"),
        details={"marker": "m-other-deposit"},
    )
    c = as_officer(app, login_as, world.officer62)
    html = page(c, f"/securite/depots/{deposit_id}")
    for marker in ("m-created", "m-up", "m-denied", "deposit:downloaded"):
        assert marker in html
    assert "m-other-deposit" not in html
    assert "DUPONT" not in html and "1850762123456" not in html
    [row] = [r for r in audit_rows(app, AuditAction.AUDIT_SEARCHED)]
    assert row.target_id == deposit_id and json.loads(row.details)["view"] == "deposit-timeline"
    page(c, f"/securite/depots/{new_id()}", 404)


def test_a_timeline_keeps_to_the_scope_of_the_officer(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    # Given a France Travail officer of 62 who downloaded in 62 and in 59
    emit(
        AuditAction.DEPOSIT_DOWNLOADED,
        world.officer_ft62,
        target=audit.Target("file", "3" * 32, "62"),
        details={"marker": "m-ft-62"},
    )
    emit(
        AuditAction.DEPOSIT_DOWNLOADED,
        world.officer_ft62,
        target=audit.Target("file", "4" * 32, "59"),
        details={"marker": "m-ft-59"},
    )
    # When the officer of 62 opens that account's timeline
    c = as_officer(app, login_as, world.officer62)
    html = page(c, f"/securite/utilisateurs/{world.officer_ft62.id}")
    # Then only what happened in 62 is shown
    assert "m-ft-62" in html and "m-ft-59" not in html


def test_the_user_timeline_shows_what_the_account_did(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    seed(emit, world)
    c = as_officer(app, login_as, world.officer62)
    html = page(c, f"/securite/utilisateurs/{world.provider_agent62.id}")
    assert "m-presta62" in html and "m-agent62" not in html
    page(c, f"/securite/utilisateurs/{'0' * 32}", 404)
    page(c, "/securite/utilisateurs/not-an-id", 404)


# --- exports -----------------------------------------------------------------------------------


def test_a_big_export_is_streamed_and_audited_before_the_first_byte(
    app: Flask, world: OfficerWorld, login_as: LoginAs
) -> None:
    # Given 3,000 rows in the officer's scope
    with app.app_context():
        for i in range(3000):
            audit.record(
                db.session,
                AuditAction.DEPOSIT_LINK_ISSUED,
                actor=audit.Actor(world.agent62.id, world.org62),
                target=audit.Target("file", f"{i:032x}", "62"),
            )
        db.session.commit()
    c = as_officer(app, login_as, world.officer62)
    for fmt in ("csv", "json"):
        # When the officer exports them
        response = c.get(
            f"/securite/journal/export.{fmt}?action=deposit:link-issued", buffered=False
        )
        # Then the answer is a stream, already audited when its first chunk comes out
        assert response.status_code == 200 and response.is_streamed
        assert "attachment" in response.headers["Content-Disposition"]
        chunks = iter(response.response)
        first = next(chunks)
        assert first
        exported = audit_rows(app, AuditAction.AUDIT_EXPORTED)
        assert json.loads(exported[-1].details)["format"] == fmt
        rest = b"".join(x if isinstance(x, bytes) else x.encode() for x in chunks)
        response.close()
        body = (first if isinstance(first, bytes) else first.encode()) + rest
        text = body.decode()
        if fmt == "csv":
            assert len(list(csv.reader(io.StringIO(text)))) == 3001
        else:
            assert len(json.loads(text)) == 3000
    assert len(audit_rows(app, AuditAction.AUDIT_EXPORTED)) == 2


def test_unknown_export_format_is_not_found(
    app: Flask, world: OfficerWorld, login_as: LoginAs
) -> None:
    c = as_officer(app, login_as, world.officer62)
    page(c, "/securite/journal/export.xml", 404)
    assert audit_rows(app, AuditAction.AUDIT_EXPORTED) == []


# --- alerts ------------------------------------------------------------------------------------


def test_an_officer_acknowledges_an_alert_of_its_scope_once_and_it_is_audited(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
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
    c = as_officer(app, login_as, world.officer62)
    assert alert_id in page(c, "/securite/alertes?statut=new")
    assert "1</strong> alerte non acquittée" in page(c, "/securite")
    token = csrf_of(c, f"/securite/alertes/{alert_id}")
    # A forged post (no token) changes nothing
    assert c.post(f"/securite/alertes/{alert_id}/acquitter").status_code == 400
    response = c.post(f"/securite/alertes/{alert_id}/acquitter", data={"csrf_token": token})
    assert response.status_code == 302
    with app.app_context():
        row = db.session.get(SecurityAlert, alert_id)
        assert row is not None and row.status == "acknowledged"
        assert row.acknowledged_by_id == world.officer62.id
    [ack] = audit_rows(app, AuditAction.ALERT_ACKNOWLEDGED)
    assert ack.actor_id == world.officer62.id and ack.target_id == alert_id
    assert "Acquittée" in page(c, f"/securite/alertes/{alert_id}")
    # A second acknowledgement is refused without a second audit row
    c.post(f"/securite/alertes/{alert_id}/acquitter", data={"csrf_token": token})
    assert len(audit_rows(app, AuditAction.ALERT_ACKNOWLEDGED)) == 1
    assert alert_id not in page(c, "/securite/alertes?statut=new")


def test_the_dashboard_shows_the_chain_status_of_the_last_job(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    from tests.securite.test_alerts import run_job

    c = as_officer(app, login_as, world.officer59)
    assert "pas encore été vérifiée" in page(c, "/securite")
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent59)
    run_job(app, verify_chain=True)
    assert "Chaîne intègre" in page(c, "/securite")
    with app.app_context():
        db.session.execute(sa.text("UPDATE audit_event SET source_ip = '192.0.2.1' WHERE seq = 1"))
        db.session.commit()
    run_job(app, verify_chain=True)
    html = page(c, "/securite")
    assert "Chaîne rompue à l'entrée n° 1" in html
    assert (
        "Chaîne du journal d&#39;audit rompue" in html or "Chaîne du journal d'audit rompue" in html
    )


@pytest.mark.parametrize("path", ["/securite/alertes/x", "/securite/alertes/" + "z" * 32])
def test_unknown_alerts_are_not_found(
    app: Flask, world: OfficerWorld, login_as: LoginAs, path: str
) -> None:
    c = as_officer(app, login_as, world.officer62)
    page(c, path, 404)


def test_the_visible_filter_escapes_control_and_bidi_characters() -> None:
    from portal.securite.views import visible

    assert visible("a\r\nb\tc\x1b[31m\u202e\u2028") == "a\\r\\nb\\tc\\x1b[31m\\u202e\\u2028"
    assert visible("Élodie <b>") == "Élodie <b>"
    assert visible(None) == ""
