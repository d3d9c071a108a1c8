"""Big uploads are scanned right after they are stored, before publication (not while they
stream): `filr jobs antivirus` reads them back decrypted, then publishes or refuses."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from flask import Flask

from portal.deposits.models import Deposit, DepositStatus, ScanStatus
from portal.settings import Settings
from tests.cli.conftest import cli_env, filr  # noqa: F401 - the CLI's environment fixture
from tests.conftest import audit_rows, reread
from tests.deposits.conftest import PDF, create_deposit, publish, upload
from tests.factories import World
from tests.flows.conftest import ClientFor
from tests.support.clamd import EICAR, EICAR_SIGNATURE
from tests.support.services import SmtpSink


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every upload of more than 1 KiB is "big"."""
    return settings.with_overrides(antivirus_inline_max_bytes=1024)


def test_a_big_file_is_scanned_after_its_upload_and_published_by_the_job(
    app: Flask,
    world: World,
    client_for: ClientFor,
    cli_env: Settings,  # noqa: F811 - imported fixture
    smtp: SmtpSink,
) -> None:
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id = create_deposit(sender, [world.ft62])
    # Given a file above the inline limit: stored at once, its scan pending
    assert len(PDF) > 1024
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201
    (file,) = reread(app, Deposit, deposit_id).files
    assert file.scan_status == ScanStatus.PENDING
    (deferred,) = audit_rows(app, "deposit:scan-deferred")
    assert json.loads(deferred.details)["reason"] == "after_upload"
    assert deferred.outcome == "success"
    # When it is sent, it waits for the scan, unseen
    assert publish(sender, deposit_id).status_code == 302
    assert recipient.get(f"/depots/{deposit_id}").status_code == 404
    # Then the job scans it and publishes it
    assert "1 dépôts transmis" in filr(["jobs", "antivirus"]).output
    assert reread(app, Deposit, deposit_id).status == DepositStatus.AVAILABLE
    assert recipient.get(f"/depots/{deposit_id}").status_code == 200
    assert smtp.messages


def test_a_big_archive_hiding_eicar_is_refused_by_the_job_before_anyone_sees_it(
    app: Flask,
    world: World,
    client_for: ClientFor,
    cli_env: Settings,  # noqa: F811 - imported fixture
    smtp: SmtpSink,
) -> None:
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id = create_deposit(sender, [world.ft62])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("lisez-moi.txt", b"Bonjour\n" * 300)
        z.writestr("notes.txt", EICAR)
    assert upload(sender, deposit_id, "pieces.zip", out.getvalue()).status_code == 201
    assert publish(sender, deposit_id).status_code == 302
    assert "1 refusés" in filr(["jobs", "antivirus"]).output
    assert reread(app, Deposit, deposit_id).status == DepositStatus.DESTROYED
    assert recipient.get(f"/depots/{deposit_id}").status_code == 404
    (infected,) = audit_rows(app, "deposit:file-infected")
    assert json.loads(infected.details)["signature"] == EICAR_SIGNATURE
    assert smtp.messages == []  # no recipient was ever told
