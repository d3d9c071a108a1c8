"""The antivirus on a flow deposit: a flow carrying EICAR is refused, never delivered."""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import Flask

from portal.db import db
from portal.deposits.models import Deposit, DepositFile, ScanStatus
from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from portal.flows.models import FlowDeposit
from tests.conftest import audit_rows, csrf_of, reread
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


def test_a_flow_file_whose_scan_is_pending_is_never_downloaded(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    # Given a delivered flow, downloadable by France Travail
    data, _ = sample(FlowType.CGPEM, 3, date_reference=THIS_MONTH)
    tech_ft = client_for(fw.tech_ft)
    body = deposit_file(client_for(fw.tech62), "62", data).get_json()
    deposit = reread(app, Deposit, reread(app, FlowDeposit, body["id"]).deposit_id)
    file_id = deposit.files[0].id

    def fetch() -> bytes:
        token = csrf_of(tech_ft, body["url"])
        link = tech_ft.post(
            f"/depots/{deposit.id}/fichiers/{file_id}/lien", data={"csrf_token": token}
        )
        return bytes(tech_ft.get(link.headers["Location"]).data)

    assert fetch() == data
    # When its file's scan is pending (as an older version could leave it)
    with app.app_context():
        db.session.execute(
            sa.update(DepositFile)
            .where(DepositFile.id == file_id)
            .values(scan_status=ScanStatus.PENDING)
        )
        db.session.commit()
    # Then its bytes are refused
    assert data not in fetch()
