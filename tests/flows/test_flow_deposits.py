"""Deposit of flows through the portal: validated before delivery, refused whole, isolated."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from flask import Flask

from portal.db import db
from portal.deposits.models import Deposit, DepositStatus
from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from portal.flows.models import FlowDeposit
from tests.conftest import audit_rows, csrf_of, reread
from tests.factories import FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file, stored_keys
from tests.support.services import SmtpSink, body_of

THIS_MONTH = paris_today().replace(day=1)
T = TypeVar("T")


def test_valid_cgpem_is_delivered_to_france_travail_with_an_acknowledgement(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    # Given a valid CGPEM of 62 for this month
    data, _ = sample(FlowType.CGPEM, 12, date_reference=THIS_MONTH)
    tech62, tech_ft = client_for(fw.tech62), client_for(fw.tech_ft)
    # When the département's technician deposits it without naming the flow
    response = deposit_file(tech62, "62", data)
    # Then it is accepted, delivered, and acknowledged
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["is_valid"] is True and body["error_count"] == 0
    flow = reread(app, FlowDeposit, body["id"])
    assert (flow.flow_type, flow.status, flow.record_count) == ("CGPEM", "valid", 12)
    assert flow.period_start == THIS_MONTH and flow.version == "001,0"
    assert sum(flow.nature_counts.values()) == 12
    deposit = reread(app, Deposit, flow.deposit_id)
    assert deposit.status == DepositStatus.AVAILABLE and deposit.published_at is not None
    assert deposit.expires_at - deposit.created_at == timedelta(days=35)  # monthly lifetime
    page = tech62.get(body["url"]).get_data(as_text=True)
    assert "Accusé de dépôt" in page and "12 dossier(s)" in page and "FT Hauts-de-France" in page
    # and France Travail's technician is told, without personal data, and can download it
    mail = smtp.last_to("tech@ft.example.org")
    assert "Flux XML" in body_of(mail) and "export.xml" not in body_of(mail)
    assert tech_ft.get(f"/depots/{deposit.id}").status_code == 302  # to the flow's page
    received = tech_ft.get(body["url"])
    assert received.status_code == 200 and "Télécharger" in received.get_data(as_text=True)
    token = csrf_of(tech_ft, body["url"])
    link = tech_ft.post(
        f"/depots/{deposit.id}/fichiers/{deposit.files[0].id}/lien", data={"csrf_token": token}
    )
    assert tech_ft.get(link.headers["Location"]).data == data
    assert "Accusés de réception" in tech62.get(body["url"]).get_data(as_text=True)
    (validated,) = audit_rows(app, "flow:validated")
    assert validated.target_departement == "62"
    assert json.loads(validated.details)["records"] == 12


def test_nothing_of_a_refused_file_reaches_a_recipient(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    # Given a CGPEM with two errors (a record without NIR nor France Travail id, a bad count)
    data, result = sample(
        FlowType.CGPEM,
        20,
        errors=["cgpem.nir_or_pe_id", "fin.nb_dossier"],
        date_reference=THIS_MONTH,
    )
    tech62, tech_ft = client_for(fw.tech62), client_for(fw.tech_ft)
    # When the technician deposits it
    response = deposit_file(tech62, "62", data, flow_type="CGPEM")
    # Then it is refused whole, with the report on screen and as CSV
    assert response.status_code == 201
    body = response.get_json()
    assert body["is_valid"] is False and body["error_count"] == 2
    page = tech62.get(body["url"]).get_data(as_text=True)
    assert "Fichier refusé : 2 erreur(s)" in page
    assert "cgpem.nir_or_pe_id" in page and "fin.nb_dossier" in page
    injected = {e.rule.value: e for e in result.injected}
    assert f"<td>{injected['cgpem.nir_or_pe_id'].line}</td>" in page
    report = tech62.get(f"{body['url']}/rapport.csv")
    assert report.status_code == 200 and report.mimetype == "text/csv"
    rows = list(
        csv.reader(io.StringIO(report.get_data(as_text=True).lstrip("\ufeff")), delimiter=";")
    )
    assert rows[0][:5] == ["gravite", "ligne", "dossier", "champ", "regle"]
    assert {r[4] for r in rows[1:]} == {"cgpem.nir_or_pe_id", "fin.nb_dossier"}
    # and nothing reaches France Travail: no mail, no page, no deposit listed, no object stored
    assert smtp.messages == []
    assert tech_ft.get(body["url"]).status_code == 404
    flow = reread(app, FlowDeposit, body["id"])
    assert tech_ft.get(f"/depots/{flow.deposit_id}").status_code == 404
    listing = tech_ft.get("/depots?boite=tous").get_data(as_text=True)
    assert flow.deposit_id not in listing
    assert stored_keys(app) == []
    deposit = reread(app, Deposit, flow.deposit_id)
    assert deposit.status == DepositStatus.DESTROYED and deposit.published_at is None
    assert all(f.destroyed_at is not None for f in deposit.files)
    # and the trail says so with counts only
    (rejected,) = audit_rows(app, "flow:rejected")
    details = json.loads(rejected.details)
    assert details["errors"] == 2 and set(details) <= {
        "flow_id", "flow_type", "errors", "warnings", "records"
    }  # fmt: skip
    # and the report is sealed in the database: no value of the file in clear
    with app.app_context():
        sealed = db.session.execute(sa.select(FlowDeposit.report_sealed)).scalar_one()
    assert sealed.startswith("v1:") and "cgpem.nir_or_pe_id" not in sealed


def test_technicien_of_59_cannot_deposit_for_62_and_gets_404_on_its_flows(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    # Given a flow deposited in 62 (one valid, one refused)
    tech62, tech59 = client_for(fw.tech62), client_for(fw.tech59)
    valid, _ = sample(FlowType.CGPEM, 3, date_reference=THIS_MONTH)
    bad, _ = sample(FlowType.CGPEM, 3, errors=["fin.nb_dossier"], date_reference=THIS_MONTH)
    ok = deposit_file(tech62, "62", valid).get_json()
    ko = deposit_file(tech62, "62", bad).get_json()
    smtp.clear()
    # When the technician of 59 tries the space of 62
    data, _ = sample(FlowType.CGPEM, 3, departement="62", date_reference=THIS_MONTH)
    # Then every door is a 404, like an unknown id
    assert tech59.get("/flux/deposer?espace=62").status_code == 404
    token = csrf_of(tech59, "/flux/deposer?espace=59")
    refused = tech59.post(
        "/flux/deposer?espace=62",
        data=data,
        headers={"X-CSRFToken": token, "X-Filename": "x.xml"},
    )
    assert refused.status_code == 404
    for flow in (ok, ko):
        assert tech59.get(flow["url"]).status_code == 404
        assert tech59.get(flow["url"] + "/rapport.csv").status_code == 404
        token = csrf_of(tech59, "/flux/deposer?espace=59")
        flagged = tech59.post(
            flow["url"] + "/inexploitable", data={"csrf_token": token, "reason": "xxxxxxxx"}
        )
        assert flagged.status_code == 404
    assert tech59.get("/flux/depots/" + "0" * 32).status_code == 404
    assert tech59.get("/flux/suivi?espace=62").status_code == 404
    assert tech59.get("/flux/suivi.csv?espace=62").status_code == 404
    # and nothing was stored for the attempt, no mail sent
    assert len(stored_keys(app)) == 1 and smtp.messages == []
    # and an agent (no technicien role) sees no flow page at all
    agent = client_for(fw.agent62)
    assert agent.get("/flux/suivi").status_code == 404
    assert agent.get(ok["url"]).status_code == 404


def test_the_file_must_carry_the_departement_of_the_space(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    # France Travail (59 and 62) deposits in 62 a PECGM whose header says 59
    data, _ = sample(FlowType.PECGM, 4, departement="59", date_reference=THIS_MONTH)
    response = deposit_file(client_for(fw.tech_ft), "62", data)
    assert response.status_code == 201 and response.get_json()["is_valid"] is False
    page = client_for(fw.tech_ft).get(response.get_json()["url"]).get_data(as_text=True)
    assert "entete.departement_espace" in page
    assert smtp.messages == [] and stored_keys(app) == []


def test_france_travail_deposits_pecgm_and_pecdh_for_the_departement(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    tech_ft = client_for(fw.tech_ft)
    monthly, _ = sample(FlowType.PECGM, 5, date_reference=THIS_MONTH)
    today = paris_today()
    weekly, _ = sample(FlowType.PECDH, 5, date_reference=today)
    # The type is read from the header
    pecgm = deposit_file(tech_ft, "62", monthly)
    pecdh = deposit_file(tech_ft, "62", weekly)
    assert pecgm.status_code == pecdh.status_code == 201
    flow = reread(app, FlowDeposit, pecdh.get_json()["id"])
    assert flow.flow_type == "PECDH"
    assert flow.period_start == today - timedelta(days=today.weekday())
    deposit = reread(app, Deposit, flow.deposit_id)
    assert deposit.expires_at - deposit.created_at == timedelta(days=7)  # weekly lifetime
    # delivered to the département's technicians, not to the département of 59
    assert len(smtp.to("tech62@cd62.example.org")) == 2
    assert smtp.to("tech59@cd59.example.org") == []
    assert smtp.to("agent62@cd62.example.org") == []


def test_a_side_cannot_deposit_the_other_sides_flow(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    tech62 = client_for(fw.tech62)
    data, _ = sample(FlowType.PECGM, 2, date_reference=THIS_MONTH)
    # A named type of the other side is refused before anything is stored
    named = deposit_file(tech62, "62", data, flow_type="PECGM")
    assert named.status_code == 422 and "CGPEM" in named.get_json()["error"]
    # Read from the header, the file is refused whole
    guessed = deposit_file(client_for(fw.tech_ft), "62", sample(FlowType.CGPEM, 2)[0])
    assert guessed.status_code == 201 and guessed.get_json()["is_valid"] is False
    assert "entete.fichier" in client_for(fw.tech_ft).get(guessed.get_json()["url"]).get_data(
        as_text=True
    )
    assert smtp.messages == [] and stored_keys(app) == []


def test_a_non_xml_file_is_refused_and_destroyed(
    app: Flask, fw: FlowWorld, client_for: ClientFor, smtp: SmtpSink
) -> None:
    response = deposit_file(client_for(fw.tech62), "62", b"%PDF-1.7\n" + b"x" * 100)
    assert response.status_code == 422
    assert stored_keys(app) == [] and smtp.messages == []
    with app.app_context():
        statuses = set(db.session.execute(sa.select(Deposit.status)).scalars())
    assert statuses == {DepositStatus.DESTROYED}


def test_the_generic_deposit_form_cannot_bypass_validation(
    app: Flask, fw: FlowWorld, client_for: ClientFor
) -> None:
    # A technician has no "Flux XML" category in the generic form (it has no other: 404)
    tech62 = client_for(fw.tech62)
    assert tech62.get("/depots/nouveau").status_code == 404
    with app.app_context():
        from audit import NO_CONTEXT
        from portal.accounts.models import User
        from portal.deposits import services as deposits
        from portal.deposits.models import Category

        user = db.session.get(User, fw.tech62.id)
        assert user is not None
        try:
            deposits.create_deposit(
                db.session,
                user,
                deposits.NewDeposit("62", Category.FLUX_XML, "t", recipient_org_ids=[fw.ft]),
                NO_CONTEXT,
            )
        except deposits.DepositError as e:
            assert "Flux XML" in str(e)
        else:  # pragma: no cover - the assertion above is the test
            raise AssertionError("a flux_xml deposit was created without validation")


def test_the_deposit_page_offers_the_spaces_and_the_sides_flows(
    fw: FlowWorld, client_for: ClientFor
) -> None:
    page = client_for(fw.tech_ft).get("/flux/deposer").get_data(as_text=True)
    assert 'value="PECGM"' in page and 'value="PECDH"' in page and 'value="CGPEM"' not in page
    assert "59 — Nord" in page and "62 — Pas-de-Calais" in page
    page = client_for(fw.tech62).get("/flux/deposer").get_data(as_text=True)
    assert 'value="CGPEM"' in page and 'value="PECGM"' not in page


def test_previous_month_is_used_for_the_period(fw: FlowWorld) -> None:
    # The period of a monthly flow is its reference month (first day)
    from portal.flows.services import period_of

    assert period_of(FlowType.CGPEM, date(2026, 11, 18)) == date(2026, 11, 1)
    assert period_of(FlowType.PECDH, date(2026, 11, 18)) == date(2026, 11, 16)


def test_every_flow_route_answers_404_to_another_departement(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    # Given a valid and a refused flow of 62
    tech62, tech59 = client_for(fw.tech62), client_for(fw.tech59)
    valid = deposit_file(tech62, "62", sample(FlowType.CGPEM, 2, date_reference=THIS_MONTH)[0])
    bad, _ = sample(FlowType.CGPEM, 2, errors=["fin.nb_dossier"], date_reference=THIS_MONTH)
    refused = deposit_file(tech62, "62", bad)
    ids = [valid.get_json()["id"], refused.get_json()["id"], "f" * 32, "nope"]
    # When the technician of 59 tries every route of the blueprint that takes a flow id
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("flows.")]
    checked = 0
    for rule in rules:
        if "flow_id" not in rule.arguments:
            continue
        for flow_id in ids:
            path = rule.rule.replace("<flow_id>", flow_id)
            if "POST" in (rule.methods or set()):
                token = csrf_of(tech59, "/flux/suivi")
                answer = tech59.post(path, data={"csrf_token": token, "reason": "x" * 20})
            else:
                answer = tech59.get(path)
            # Then each answers 404, the same as for an unknown id
            assert answer.status_code == 404, (rule.rule, flow_id)
            checked += 1
    assert checked == 3 * len(ids)
    # and the denials are in the audit trail
    assert len(audit_rows(app, "access:denied")) >= checked


def _in_thread(call: Callable[[], T]) -> T:
    """Run *call* in another thread (another request while the flow's upload is under way)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as e:  # raised again below
            out["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return cast(T, out["value"])


def test_the_generic_routes_cannot_touch_a_flows_draft_while_it_is_validated(
    app: Flask, fw: FlowWorld, sample: Sample, smtp: SmtpSink, api_for: Callable[..., Any]
) -> None:
    from audit import NO_CONTEXT
    from portal.accounts.models import User
    from portal.container import services
    from portal.deposits.models import DepositFile
    from portal.flows import services as flows

    # Given a valid CGPEM being uploaded, and an invalid one in the same hands
    good, _ = sample(FlowType.CGPEM, 5, date_reference=THIS_MONTH)
    bad, _ = sample(FlowType.CGPEM, 5, errors=["fin.nb_dossier"], date_reference=THIS_MONTH)
    script, france_travail = api_for(fw.tech62), api_for(fw.tech_ft)
    side: dict[str, int] = {}

    def draft_id() -> str:
        with app.app_context():
            return str(
                db.session.execute(
                    sa.select(Deposit.id).where(Deposit.status == DepositStatus.DRAFT)
                ).scalar_one()
            )

    def chunks() -> Iterator[bytes]:
        yield good[:100]
        # When, mid-upload, the sender's token adds the invalid file to the flow's draft and
        # publishes the draft through the generic deposit API
        draft = _in_thread(draft_id)
        side["upload"] = _in_thread(lambda: script.upload(draft, "other.xml", bad)).status_code
        side["publish"] = _in_thread(
            lambda: script.post(f"/api/v1/deposits/{draft}/publish")
        ).status_code
        side["recipient"] = _in_thread(
            lambda: france_travail.get(f"/api/v1/deposits/{draft}")
        ).status_code
        yield good[100:]

    with app.test_request_context():
        user = db.session.get(User, fw.tech62.id)
        outcome = flows.deposit_flow(
            db.session, services(), user, "62", None, "export.xml", chunks(), NO_CONTEXT
        )
        deposit_id = outcome.flow.deposit_id
        assert outcome.flow.is_valid
    # Then both are refused and France Travail saw nothing of the draft
    assert side["upload"] in (403, 409, 422), side
    assert side["publish"] in (403, 409, 422), side
    assert side["recipient"] == 404
    # And what was delivered is the validated file alone
    with app.app_context():
        files = db.session.execute(
            sa.select(DepositFile.filename).where(DepositFile.deposit_id == deposit_id)
        ).scalars()
        assert list(files) == ["export.xml"]
    assert reread(app, Deposit, deposit_id).status == DepositStatus.AVAILABLE


def test_a_cgpem_whose_header_says_weekly_lives_as_a_monthly_flow(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    from portal.container import services

    # Given a CGPEM whose header carries the `H` the convention's table copied from PECDH
    data, _ = sample(FlowType.CGPEM, 3, date_reference=THIS_MONTH)
    data = data.replace(b"<periodicite>M</periodicite>", b"<periodicite>H</periodicite>")
    assert b"<periodicite>H</periodicite>" in data
    response = deposit_file(client_for(fw.tech62), "62", data)
    assert response.status_code == 201 and response.get_json()["is_valid"] is True
    # Then it is kept as long as a monthly flow, not a weekly one
    flow = reread(app, FlowDeposit, response.get_json()["id"])
    deposit = reread(app, Deposit, flow.deposit_id)
    with app.app_context():
        monthly = services().settings.monthly_flow_lifetime_days
        assert monthly != services().settings.weekly_flow_lifetime_days
    assert (deposit.expires_at - deposit.created_at).days == min(monthly, 90)


def test_a_report_sealed_under_a_former_secret_key_is_unavailable_not_an_error(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    from types import SimpleNamespace

    from portal.container import services
    from portal.flows import services as flows

    # Given a refused flow whose report was sealed under a secret key since rotated
    data, _ = sample(FlowType.CGPEM, 3, errors=["fin.nb_dossier"], date_reference=THIS_MONTH)
    tech62 = client_for(fw.tech62)
    body = deposit_file(tech62, "62", data).get_json()
    assert body["is_valid"] is False
    assert tech62.get(f"/flux/depots/{body['id']}/rapport.csv").status_code == 200
    with app.app_context():
        flow = db.session.get(FlowDeposit, body["id"])
        assert flow is not None
        report = flows.open_report(services().settings.secret_key, flow)
        assert report is not None
        former = SimpleNamespace(to_dict=lambda: report)
        flow.report_sealed = flows.seal_report("a former secret key", flow.id, former)  # type: ignore[arg-type]
        db.session.commit()
    # Then its pages answer, without the report
    page = tech62.get(body["url"])
    assert page.status_code == 200 and 'id="report"' not in page.get_data(as_text=True)
    assert tech62.get(f"/flux/depots/{body['id']}/rapport.csv").status_code == 404
