"""The antivirus through the API: EICAR refused with a problem naming the signature, alerted."""

from __future__ import annotations

import json

from flask import Flask

from portal.securite.models import AlertKind
from tests.api.conftest import assert_problem, new_deposit
from tests.api.test_api import Apis
from tests.conftest import audit_rows
from tests.factories import World
from tests.support.clamd import EICAR, EICAR_SIGNATURE


def test_eicar_uploaded_through_the_api_is_refused_and_alerted(
    app: Flask, world: World, api_for: Apis
) -> None:
    # Given a script of agent 62 with a draft
    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    # When it uploads the EICAR test file
    response = api.upload(deposit_id, "notes.txt", EICAR)
    # Then a 422 problem with its own code names the signature
    body = assert_problem(response, 422, "file_infected")
    assert EICAR_SIGNATURE in body["detail"]
    # and the draft has no file, the trail and the alerts know
    assert api.get(f"/api/v1/deposits/{deposit_id}").json["files"] == []  # type: ignore[index]
    (infected,) = audit_rows(app, "deposit:file-infected")
    assert json.loads(infected.details)["signature"] == EICAR_SIGNATURE
    (raised,) = [r for r in audit_rows(app, "alert:raised")]
    assert json.loads(raised.details)["kind"] == AlertKind.MALWARE_DETECTED
