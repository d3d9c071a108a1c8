"""The antivirus on a flow deposit: a flow carrying EICAR is refused, never delivered."""

from __future__ import annotations

import json

from flask import Flask

from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from tests.conftest import audit_rows
from tests.factories import FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file, stored_keys
from tests.support.clamd import EICAR, EICAR_SIGNATURE
from tests.support.services import SmtpSink

THIS_MONTH = paris_today().replace(day=1)


def test_a_flow_carrying_eicar_is_refused_destroyed_and_alerted(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample, smtp: SmtpSink
) -> None:
    # Given a valid CGPEM of 62 that carries the EICAR string in a comment
    data, _ = sample(FlowType.CGPEM, 3, date_reference=THIS_MONTH)
    head, _, rest = data.partition(b"?>")
    infected = head + b"?>\n<!-- " + EICAR + b" -->" + rest
    # When the département's technician deposits it
    response = deposit_file(client_for(fw.tech62), "62", infected)
    # Then it is refused before validation, naming the signature, and nothing is kept or sent
    assert response.status_code == 422, response.get_data(as_text=True)
    assert EICAR_SIGNATURE in response.get_data(as_text=True)
    assert stored_keys(app) == []
    assert smtp.messages == []
    assert audit_rows(app, "flow:validated") == []
    (row,) = audit_rows(app, "deposit:file-infected")
    assert json.loads(row.details)["signature"] == EICAR_SIGNATURE
    assert [json.loads(r.details)["kind"] for r in audit_rows(app, "alert:raised")] == [
        "malware_detected"
    ]
