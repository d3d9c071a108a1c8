"""The flows' REST API: a refused file is a problem document listing every error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from tests.api.conftest import assert_problem
from tests.api.test_openapi import assert_documented
from tests.factories import Api, FlowWorld
from tests.flows.conftest import Sample, stored_keys
from tests.support.services import SmtpSink

Apis = Callable[..., Api]
THIS_MONTH = paris_today().replace(day=1)


def _deposit(api: Api, departement: str, data: bytes, flow_type: str | None = None) -> Any:
    query = f"?departement={departement}" + (f"&type={flow_type}" if flow_type else "")
    return api.post(
        "/api/v1/flows" + query,
        data=data,
        headers={"X-Filename": "export.xml", "Content-Type": "application/octet-stream"},
    )


def test_api_refused_flow_answers_a_problem_with_every_error(
    app: Flask, fw: FlowWorld, api_for: Apis, sample: Sample, smtp: SmtpSink
) -> None:
    script = api_for(fw.tech62)
    doc = script.get("/api/v1/openapi.json").json
    assert doc is not None
    data, result = sample(
        FlowType.CGPEM, 8, errors=["field.date", "cgpem.pe_id_required"], date_reference=THIS_MONTH
    )
    # When a script deposits a file with errors
    response = _deposit(script, "62", data, "CGPEM")
    # Then the answer is a documented problem listing each error with its place
    body = assert_problem(response, 422, "flow_invalid")
    assert_documented(doc, "/flows", "post", response)
    found = {(e["rule"], e["line"], e["field"]) for e in body["errors"]}
    for injected in result.injected:
        assert (injected.rule.value, injected.line, injected.field) in found
    assert body["flow"]["status"] == "rejected" and body["flow"]["deposit_url"] is None
    # and nothing was delivered or kept
    assert smtp.messages == [] and stored_keys(app) == []
    # and the flow can be read again by its sender, with its report
    again = script.get(body["flow"]["url"])
    assert_documented(doc, "/flows/{flow_id}", "get", again)
    assert again.json is not None and len(again.json["issues"]) == body["flow"]["error_count"]


def test_api_valid_flow_is_delivered_and_readable_by_the_other_side(
    app: Flask, fw: FlowWorld, api_for: Apis, sample: Sample, smtp: SmtpSink
) -> None:
    script, receiver, intruder = api_for(fw.tech62), api_for(fw.tech_ft), api_for(fw.tech59)
    doc = script.get("/api/v1/openapi.json").json
    assert doc is not None
    data, _ = sample(FlowType.CGPEM, 6, date_reference=THIS_MONTH)
    response = _deposit(script, "62", data)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert_documented(doc, "/flows", "post", response)
    flow = response.json
    assert flow is not None and flow["flow_type"] == "CGPEM" and flow["record_count"] == 6
    assert response.headers["Location"] == flow["url"]
    # The receiving side reads it (with the report of the valid file) and downloads the file
    seen = receiver.get(flow["url"])
    assert_documented(doc, "/flows/{flow_id}", "get", seen)
    assert seen.json is not None and seen.json["issues"] == []
    deposit = receiver.get(flow["deposit_url"]).json
    assert deposit is not None
    assert receiver.get(deposit["files"][0]["content_url"]).data == data
    # Another département's technician gets the same 404 as for an unknown flow
    assert_problem(intruder.get(flow["url"]), 404, "not_found")
    assert_problem(intruder.get("/api/v1/flows/" + "0" * 32), 404, "not_found")
    assert_problem(_deposit(intruder, "62", data), 404, "not_found")
    # A read-only token cannot deposit
    assert_problem(_deposit(api_for(fw.tech62, ["read"]), "62", data), 403, "insufficient_scope")
    # The generic deposit endpoint refuses the flux_xml category (no bypass of validation)
    body = {"departement": "62", "category": "flux_xml", "title": "t", "recipients": [fw.ft]}
    assert_problem(script.post("/api/v1/deposits", json=body), 422, "invalid")
