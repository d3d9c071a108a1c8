"""Sanity against the previous period, and the recipient's "unusable" flag."""

from __future__ import annotations

import json
from datetime import timedelta

from flask import Flask

from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from tests.conftest import audit_rows, csrf_of
from tests.factories import FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file
from tests.support.services import SmtpSink, body_of

THIS_MONTH = paris_today().replace(day=1)
LAST_MONTH = (THIS_MONTH - timedelta(days=1)).replace(day=1)


def test_a_truncated_export_is_flagged_to_both_sides(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    tech62, tech_ft = client_for(fw.tech62), client_for(fw.tech_ft)
    # Given last month's CGPEM of 100 records
    previous, _ = sample(FlowType.CGPEM, 100, date_reference=LAST_MONTH, seed=1)
    first = deposit_file(tech62, "62", previous)
    assert first.status_code == 201
    assert "ATTENTION" not in body_of(smtp.last_to("tech@ft.example.org"))
    smtp.clear()
    # When this month's file holds only 30 (a truncated export, valid nonetheless)
    current, _ = sample(FlowType.CGPEM, 30, date_reference=THIS_MONTH, seed=2)
    response = deposit_file(tech62, "62", current)
    # Then it is delivered, and flagged on the flow's page for both sides
    assert response.status_code == 201
    url = response.get_json()["url"]
    for client in (tech62, tech_ft):
        page = client.get(url).get_data(as_text=True)
        assert "Écart important avec la période précédente" in page
        assert "baisse de 70 %" in page and "(100 → 30)" in page
    # and in the notification mail, with counts only
    mail = body_of(smtp.last_to("tech@ft.example.org"))
    assert "ATTENTION" in mail and "(100 → 30)" in mail
    assert "export.xml" not in mail
    (flagged,) = audit_rows(app, "flow:sanity-flagged")
    assert json.loads(flagged.details)["findings"][0] == "record_count:drop"
    # and the follow-up table shows it
    table = tech_ft.get(f"/flux/suivi?mois={THIS_MONTH:%Y-%m}&espace=62").get_data(as_text=True)
    assert "écart avec la période précédente" in table


def test_the_recipient_flags_a_flow_unusable_and_the_sender_sees_it(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    tech62, tech_ft = client_for(fw.tech62), client_for(fw.tech_ft)
    data, _ = sample(FlowType.CGPEM, 5, date_reference=THIS_MONTH)
    url = deposit_file(tech62, "62", data).get_json()["url"]
    smtp.clear()
    # The sender cannot flag its own flow
    assert 'id="flag"' not in tech62.get(url).get_data(as_text=True)
    token = csrf_of(tech62, url)
    tech62.post(url + "/inexploitable", data={"csrf_token": token, "reason": "Je me signale"})
    assert audit_rows(app, "flow:flagged-unusable") == []
    # The receiving side flags it with a reason
    page = tech_ft.get(url).get_data(as_text=True)
    assert 'id="flag"' in page
    token = csrf_of(tech_ft, url)
    reason = "Colonne nature vide pour tout un territoire"
    answer = tech_ft.post(url + "/inexploitable", data={"csrf_token": token, "reason": reason})
    assert answer.status_code == 302
    # The sender sees it on the page and is told by e-mail (without the free-text reason)
    page = tech62.get(url).get_data(as_text=True)
    assert "Signalé comme inexploitable" in page and reason in page
    for address in ("tech62@cd62.example.org", "tech62b@cd62.example.org"):
        mail = body_of(smtp.last_to(address))
        assert "inexploitable" in mail and reason not in mail
    (row,) = audit_rows(app, "flow:flagged-unusable")
    assert reason not in row.details
    # Once only
    token = csrf_of(tech_ft, url)
    tech_ft.post(url + "/inexploitable", data={"csrf_token": token, "reason": "encore une fois"})
    assert len(audit_rows(app, "flow:flagged-unusable")) == 1
    # A reason is required
    assert 'id="flag"' not in tech_ft.get(url).get_data(as_text=True)
