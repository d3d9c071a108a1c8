"""What a flow keeps once its content is destroyed: counts for the follow-up, nothing personal."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from portal.db import db
from portal.deposits.models import Deposit, DepositFile
from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from portal.flows.models import FlowDeposit
from tests.conftest import csrf_of, reread
from tests.deposits.test_lifecycle import NIR, PERSONAL, _every_value
from tests.factories import FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file

THIS_MONTH = paris_today().replace(day=1)
FILE_NAME = f"CGPEM_LEFEBVRE_Helene_{NIR}.xml"


def test_a_withdrawn_flow_keeps_neither_its_report_nor_its_file_name_nor_the_flag_reason(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    tech62, tech_ft = client_for(fw.tech62), client_for(fw.tech_ft)
    # Given a delivered CGPEM named after a beneficiary, with its sealed validation report,
    # flagged unusable by France Travail with a reason that names her
    data, _ = sample(FlowType.CGPEM, 5, date_reference=THIS_MONTH)
    response = deposit_file(tech62, "62", data, name=FILE_NAME)
    assert response.status_code == 201, response.get_data(as_text=True)
    flow_id, url = response.get_json()["id"], response.get_json()["url"]
    token = csrf_of(tech_ft, url)
    reason = f"Dossier de Mme LEFEBVRE Hélène ({NIR}) illisible"
    flagged = tech_ft.post(url + "/inexploitable", data={"csrf_token": token, "reason": reason})
    assert flagged.status_code == 302
    flow = reread(app, FlowDeposit, flow_id)
    assert flow.report_sealed is not None and NIR in _every_value(app)
    # When its sender withdraws it
    token = csrf_of(tech62, url)
    assert (
        tech62.post(f"/depots/{flow.deposit_id}/retirer", data={"csrf_token": token}).status_code
        == 302
    )
    # Then the report, the reason and the file name are gone from every table
    flow = reread(app, FlowDeposit, flow_id)
    assert flow.report_sealed is None
    assert flow.unusable_at is not None and flow.unusable_reason == (
        "Motif effacé à la destruction du flux."
    )
    dump = _every_value(app)
    assert not [word for word in PERSONAL if word in dump]
    # And what the follow-up needs stays: type, period, counts, the portal's own title
    assert (flow.flow_type, flow.record_count, flow.period_start) == ("CGPEM", 5, THIS_MONTH)
    assert reread(app, Deposit, flow.deposit_id).title.startswith("Flux CGPEM — 62")
    for client in (tech62, tech_ft):
        page = client.get(url)
        assert page.status_code == 200
        assert "Signalé comme inexploitable" in page.get_data(as_text=True)
    follow_up = tech62.get(f"/flux/suivi?mois={THIS_MONTH:%Y-%m}&espace=62")
    assert follow_up.status_code == 200


def test_a_refused_flow_loses_its_file_name_at_once_and_keeps_its_report_for_its_sender(
    app: Flask, fw: FlowWorld, client_for: ClientFor, sample: Sample
) -> None:
    tech62 = client_for(fw.tech62)
    # Given a CGPEM with an error, named after a beneficiary
    data, _ = sample(FlowType.CGPEM, 3, errors=["fin.nb_dossier"], date_reference=THIS_MONTH)
    # When it is refused (its content destroyed at once)
    response = deposit_file(tech62, "62", data, name=FILE_NAME)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["is_valid"] is False
    flow_id, url = response.get_json()["id"], response.get_json()["url"]
    # Then its file name is gone, while its sender still reads the report
    flow = reread(app, FlowDeposit, flow_id)
    with app.app_context():
        names = set(
            db.session.execute(
                sa.select(DepositFile.filename).where(DepositFile.deposit_id == flow.deposit_id)
            ).scalars()
        )
    assert names == {"Fichier détruit"}
    assert "LEFEBVRE" not in _every_value(app)
    page = tech62.get(url).get_data(as_text=True)
    assert "Fichier refusé" in page and 'id="report"' in page
