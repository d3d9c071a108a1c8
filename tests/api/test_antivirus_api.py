"""The antivirus through the API: EICAR refused with a problem naming the signature, alerted."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from flask import Flask

import audit
from portal.container import services
from portal.db import db
from portal.deposits.models import DepositFile, ScanStatus
from portal.deposits.rescan import rescan_pending
from portal.securite.models import AlertKind
from portal.settings import Settings
from tests.api.conftest import PDF, assert_problem, new_deposit
from tests.api.test_api import Apis
from tests.conftest import audit_rows
from tests.factories import World
from tests.support.clamd import EICAR, EICAR_SIGNATURE


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Files of more than 1 KiB are scanned after their upload (EICAR, 68 bytes, while)."""
    return settings.with_overrides(antivirus_inline_max_bytes=1024)


def test_a_deposit_sent_before_its_scan_reads_scan_pending_until_published(
    app: Flask, world: World, api_for: Apis
) -> None:
    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    assert api.upload(deposit_id, "fiche.pdf", PDF).status_code == 201
    sent = api.post(f"/api/v1/deposits/{deposit_id}/publish")
    assert sent.status_code == 200 and sent.json["status"] == "scan_pending"  # type: ignore[index]
    reader = api_for(world.adviser_ft)
    assert reader.get(f"/api/v1/deposits/{deposit_id}").status_code == 404
    with app.app_context():
        report = rescan_pending(db.session, services(), audit.Context())
    assert (report.clean, report.published) == (1, 1)
    shown = api.get(f"/api/v1/deposits/{deposit_id}").json
    assert shown["status"] == "available"  # type: ignore[index]
    assert reader.get(f"/api/v1/deposits/{deposit_id}").status_code == 200


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


def test_a_file_whose_scan_is_pending_is_never_served_through_the_api(
    app: Flask, world: World, api_for: Apis
) -> None:
    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    assert api.upload(deposit_id, "fiche.pdf", PDF).status_code == 201
    assert api.post(f"/api/v1/deposits/{deposit_id}/publish").status_code == 200
    with app.app_context():
        assert rescan_pending(db.session, services(), audit.Context()).published == 1
    file_id = api.get(f"/api/v1/deposits/{deposit_id}").json["files"][0]["id"]  # type: ignore[index]
    content = f"/api/v1/deposits/{deposit_id}/files/{file_id}/content"
    reader = api_for(world.adviser_ft)
    assert reader.get(content).data == PDF
    # Given a published file whose scan is pending again (as an older version could leave it)
    with app.app_context():
        db.session.execute(
            sa.update(DepositFile)
            .where(DepositFile.id == file_id)
            .values(scan_status=ScanStatus.PENDING)
        )
        db.session.commit()
    # Then neither side gets its bytes
    for script in (reader, api):
        response = script.get(content)
        assert response.status_code == 410 and PDF not in response.data
