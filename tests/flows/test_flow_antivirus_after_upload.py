"""A big flow is validated at once but delivered only once the antivirus has scanned it."""

from __future__ import annotations

import pytest
from flask import Flask

from portal.deposits.models import Deposit, DepositStatus
from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from portal.flows.models import FlowDeposit
from portal.settings import Settings
from tests.cli.conftest import cli_env, filr  # noqa: F401 - the CLI's environment fixture
from tests.conftest import reread
from tests.factories import FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file
from tests.support.services import SmtpSink


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every upload of more than 1 KiB is scanned after it is stored."""
    return settings.with_overrides(antivirus_inline_max_bytes=1024)


def test_a_big_flow_waits_for_its_scan_then_is_delivered_and_announced(
    app: Flask,
    fw: FlowWorld,
    client_for: ClientFor,
    sample: Sample,
    smtp: SmtpSink,
    cli_env: Settings,  # noqa: F811 - imported fixture
) -> None:
    data, _ = sample(FlowType.CGPEM, 12, date_reference=paris_today().replace(day=1))
    assert len(data) > 1024
    response = deposit_file(client_for(fw.tech62), "62", data)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["is_valid"] is True and body["scan_pending"] is True
    flow = reread(app, FlowDeposit, body["id"])
    assert reread(app, Deposit, flow.deposit_id).status == DepositStatus.DRAFT
    assert smtp.messages == []
    assert "1 dépôts transmis" in filr(["jobs", "antivirus"]).output
    assert reread(app, Deposit, flow.deposit_id).status == DepositStatus.AVAILABLE
    assert smtp.last_to("tech@ft.example.org") is not None
