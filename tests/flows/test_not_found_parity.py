"""A 404 for a flow of another département does the same work as one for an unknown id."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask

from portal.db import db, new_id
from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from tests.conftest import audit_rows, csrf_of
from tests.factories import Account, Api, FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file
from tests.support.statements import recorded_statements, without_session_upkeep

Request = Callable[[str], Any]


def test_flow_routes_answer_an_unknown_id_and_a_flow_of_62_with_the_same_statements(
    app: Flask,
    fw: FlowWorld,
    client_for: ClientFor,
    api_for: Callable[[Account], Api],
    sample: Sample,
) -> None:
    # Given a valid flow of 62, and a technician of 59 who probes the pages and the API
    data, _ = sample(FlowType.CGPEM, 2, date_reference=paris_today().replace(day=1))
    flow_id = deposit_file(client_for(fw.tech62), "62", data).get_json()["id"]
    intruder, script = client_for(fw.tech59), api_for(fw.tech59)
    form = {"csrf_token": csrf_of(intruder, "/flux/suivi"), "reason": "x" * 20}
    intruder.get(f"/flux/depots/{new_id()}")  # what a session does once is done before measuring
    script.get(f"/api/v1/flows/{new_id()}")  # and the token's first use
    routes: dict[str, Request] = {
        "show": lambda i: intruder.get(f"/flux/depots/{i}"),
        "report": lambda i: intruder.get(f"/flux/depots/{i}/rapport.csv"),
        "flag": lambda i: intruder.post(f"/flux/depots/{i}/inexploitable", data=form),
        "api": lambda i: script.get(f"/api/v1/flows/{i}"),
    }
    for name, ask in routes.items():
        # When it asks for an id that exists nowhere, then for the flow of 62
        traces = []
        for target in (new_id(), flow_id):
            with recorded_statements(db.bound(app).engine) as seen:
                status = ask(target).status_code
            traces.append((status, without_session_upkeep(seen)))
        # Then both are the same 404, reached through the same statements
        (status_unknown, unknown_work), (status_foreign, foreign_work) = traces
        assert (status_unknown, status_foreign) == (404, 404), name
        assert unknown_work == foreign_work, name
        # And the trail tells the officer which is which: the real one names its deposit
        *_, refused_unknown, refused_foreign = audit_rows(app, "access:denied")
        unknown_row = (refused_unknown.target_type, refused_unknown.target_departement)
        foreign_row = (refused_foreign.target_type, refused_foreign.target_departement)
        assert (unknown_row, foreign_row) == (("flow", None), ("deposit", "62")), name
        assert json.loads(refused_unknown.details) == {"reason": "unknown"}
        assert json.loads(refused_foreign.details) == {"reason": "not_visible"}
