"""The follow-up table: statuses from the calendar and the deposits, per side and nationally."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Flask

from portal.db import db
from portal.deposits.models import Deposit
from portal.flows import calendar
from portal.flows.core import FlowType
from portal.flows.follow_up import FollowUpStatus, follow_up, local_time_label
from portal.flows.models import FlowDeposit
from tests.conftest import csrf_of
from tests.factories import FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file

PARIS = ZoneInfo("Europe/Paris")
NOVEMBER = date(2026, 11, 1)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=PARIS)


def _at(app: Flask, flow_id: str, when: datetime) -> str:
    """Pretend *flow_id* was deposited at *when*; returns its deposit id."""
    with app.app_context():
        flow = db.session.get(FlowDeposit, flow_id)
        assert flow is not None
        flow.created_at = when
        deposit = flow.deposit
        lifetime = deposit.expires_at - deposit.created_at
        deposit.created_at = deposit.published_at = when
        deposit.expires_at = when + lifetime
        deposit_id = flow.deposit_id
        db.session.commit()
        return deposit_id


def _statuses(app: Flask, departements: list[str]) -> dict[tuple[str, str, date], str]:
    with app.app_context():
        rows = follow_up(db.session, departements, 2026, 11, now=NOW)
        return {(r.departement, str(r.flow_type), r.period_start): r.label for r in rows}


def test_each_flow_gets_its_status_from_the_calendar_and_the_deposits(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    tech62, tech_ft = client_for(fw.tech62), client_for(fw.tech_ft)
    # CGPEM of 62 deposited on the 18th (deadline: Friday 20 November, 17:00), then downloaded
    cgpem = deposit_file(tech62, "62", sample(FlowType.CGPEM, 3, date_reference=NOVEMBER)[0])
    cgpem_id = cgpem.get_json()["id"]
    deposit_id = _at(app, cgpem_id, datetime(2026, 11, 18, 10, 0, tzinfo=PARIS))
    with app.app_context():
        file_id = db.session.get(Deposit, deposit_id).files[0].id  # type: ignore[union-attr]
    token = csrf_of(tech_ft, cgpem.get_json()["url"])
    link = tech_ft.post(f"/depots/{deposit_id}/fichiers/{file_id}/lien", data={"csrf_token": token})
    response = tech_ft.get(link.headers["Location"])
    assert response.status_code == 200 and response.get_data()  # read: the receipt follows
    # PECDH of the week of the 9th refused; of the week of the 16th deposited on the 17th;
    # of the week of the 2nd deposited late, on the 10th, and since expired
    bad, _ = sample(FlowType.PECDH, 2, errors=["fin.nb_dossier"], date_reference=date(2026, 11, 10))
    deposit_file(tech_ft, "62", bad)
    good = deposit_file(
        tech_ft, "62", sample(FlowType.PECDH, 2, date_reference=date(2026, 11, 17))[0]
    )
    _at(app, good.get_json()["id"], datetime(2026, 11, 17, 9, 0, tzinfo=PARIS))
    old = deposit_file(
        tech_ft, "62", sample(FlowType.PECDH, 2, date_reference=date(2026, 11, 3))[0]
    )
    _at(app, old.get_json()["id"], datetime(2026, 11, 10, 9, 0, tzinfo=PARIS))  # 7-day life
    # Then
    assert _statuses(app, ["62", "59"]) == {
        ("62", "CGPEM", NOVEMBER): "Téléchargé par l'autre partie (déposé à temps)",
        ("62", "PECGM", NOVEMBER): "En retard",
        ("62", "PECDH", date(2026, 11, 2)): "Expiré (déposé en retard)",
        ("62", "PECDH", date(2026, 11, 9)): "Rejeté (1 erreur) — en retard",
        ("62", "PECDH", date(2026, 11, 16)): "Déposé à temps",
        ("62", "PECDH", date(2026, 11, 23)): "Attendu",
        ("62", "PECDH", date(2026, 11, 30)): "Attendu",
        ("59", "CGPEM", NOVEMBER): "En retard",
        ("59", "PECGM", NOVEMBER): "En retard",
        ("59", "PECDH", date(2026, 11, 2)): "En retard",
        ("59", "PECDH", date(2026, 11, 9)): "En retard",
        ("59", "PECDH", date(2026, 11, 16)): "En retard",
        ("59", "PECDH", date(2026, 11, 23)): "Attendu",
        ("59", "PECDH", date(2026, 11, 30)): "Attendu",
    }
    with app.app_context():
        rows = follow_up(db.session, ["62"], 2026, 11, now=NOW)
    assert rows[0].status is FollowUpStatus.DOWNLOADED and rows[0].records == 3


def test_each_side_sees_its_departements_and_the_national_view_sees_all(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    tech62 = client_for(fw.tech62)
    bad, _ = sample(FlowType.CGPEM, 2, errors=["fin.nb_dossier"], date_reference=NOVEMBER)
    refused = deposit_file(tech62, "62", bad).get_json()
    page = tech62.get("/flux/suivi?mois=2026-11").get_data(as_text=True)
    assert 'data-departement="62"' in page and 'data-departement="59"' not in page
    assert "Rejeté (1 erreur)" in page and refused["url"] in page  # the sender's own attempt
    # each deadline on the département's own clock, and the page says so
    assert 'id="time-zones"' in page and "heure de la Guadeloupe (971)" in page
    assert "<td>20/11/2026 à 17:00</td>" in page
    # France Travail (59 and 62) sees both, but not the département's refused attempt's page
    page = client_for(fw.tech_ft).get("/flux/suivi?mois=2026-11").get_data(as_text=True)
    assert 'data-departement="62"' in page and 'data-departement="59"' in page
    assert "Rejeté (1 erreur)" in page and refused["url"] not in page
    # The national structure sees every open département, statuses only
    national = client_for(fw.tech_national)
    page = national.get("/flux/suivi?mois=2026-11").get_data(as_text=True)
    assert 'data-departement="62"' in page and 'data-departement="59"' in page
    assert refused["url"] not in page
    assert national.get(refused["url"]).status_code == 404
    export = national.get("/flux/suivi.csv?mois=2026-11&espace=62")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(
        csv.DictReader(io.StringIO(export.get_data(as_text=True).lstrip("\ufeff")), delimiter=";")
    )
    assert [r["flux"] for r in rows] == ["CGPEM", "PECGM"] + ["PECDH"] * 5
    assert rows[0]["code_statut"] == "rejete" and rows[0]["erreurs"] == "1"
    # The national view cannot deposit (it has no space)
    assert national.get("/flux/deposer").status_code == 404


def test_the_month_navigation_and_a_bad_month_fall_back_to_this_month(
    fw: FlowWorld, client_for: ClientFor
) -> None:
    tech62 = client_for(fw.tech62)
    page = tech62.get("/flux/suivi?mois=2026-01").get_data(as_text=True)
    assert "janvier 2026" in page and "mois=2025-12" in page and "mois=2026-02" in page
    assert tech62.get("/flux/suivi?mois=n'importe-quoi").status_code == 200
    assert tech62.get("/flux").status_code == 302


def test_periods_cover_the_week_before_the_month(app: Flask) -> None:
    # A PECDH whose Monday is in the previous month belongs to that month's table
    with app.app_context():
        assert all(
            r.period_start.month == 11 for r in follow_up(db.session, ["62"], 2026, 11, now=NOW)
        )
    assert timedelta(days=7) > timedelta(0)


def test_a_withdrawn_flow_counts_as_not_delivered(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    tech62 = client_for(fw.tech62)
    flow = deposit_file(tech62, "62", sample(FlowType.CGPEM, 2, date_reference=NOVEMBER)[0])
    deposit_id = _at(app, flow.get_json()["id"], datetime(2026, 11, 18, 10, 0, tzinfo=PARIS))
    assert _statuses(app, ["62"])[("62", "CGPEM", NOVEMBER)] == "Déposé à temps"
    token = csrf_of(tech62, flow.get_json()["url"])
    withdrawn = tech62.post(f"/depots/{deposit_id}/retirer", data={"csrf_token": token})
    assert withdrawn.status_code == 302
    assert _statuses(app, ["62"])[("62", "CGPEM", NOVEMBER)] == "En retard"


def test_a_flow_refused_because_the_other_side_sent_it_is_not_that_sides_attempt(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    # Given France Travail depositing a CGPEM of 62 by mistake (refused: not its side's flow)
    mistake = deposit_file(
        client_for(fw.tech_ft), "62", sample(FlowType.CGPEM, 3, date_reference=NOVEMBER)[0]
    )
    assert mistake.status_code == 201 and mistake.get_json()["is_valid"] is False
    _at(app, mistake.get_json()["id"], datetime(2026, 11, 18, 10, 0, tzinfo=PARIS))
    # Then the département's CGPEM is still "expected", not "rejected", for both sides
    with app.app_context():
        rows = follow_up(db.session, ["62"], 2026, 11, now=NOW)
    cgpem = next(r for r in rows if r.flow_type is FlowType.CGPEM)
    assert cgpem.status is not FollowUpStatus.REJECTED
    assert cgpem.rejected_attempts == 0 and cgpem.flow_id is None


def test_an_overseas_deadline_is_shown_on_its_own_clock_and_named() -> None:
    # 17:00 in Guadeloupe is 22:00 in Paris in November: shown as 17:00, with the zone's name
    deadline = calendar.cgpem_deadline("971", 2026, 11)

    assert local_time_label("971", deadline) == "20/11/2026 à 17:00 (heure de la Guadeloupe)"
    assert local_time_label("62", calendar.cgpem_deadline("62", 2026, 11)) == "20/11/2026 à 17:00"
    assert local_time_label("974", None) == "—"
