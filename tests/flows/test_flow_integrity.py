"""A flow whose stored object fails its integrity check while it is validated: audited, alerted
at once, discarded, and answered 502 (French message on the web, `file_corrupted` on the API).

The object is really damaged in the store (directory, or SeaweedFS on the PostgreSQL stack)
between its upload and its reading back for validation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from audit import AuditAction, Outcome
from portal.accounts.models import Role
from portal.container import services
from portal.db import db
from portal.deposits import services as deposit_services
from portal.deposits.models import Deposit, DepositStatus
from portal.flows.core import FlowType
from portal.flows.core.validator import paris_today
from portal.securite.models import AlertKind, SecurityAlert
from storage.stream import HEADER_SIZE
from tests.api.conftest import assert_problem
from tests.api.test_openapi import assert_documented
from tests.conftest import audit_rows
from tests.factories import Account, Api, Factory, FlowWorld
from tests.flows.conftest import ClientFor, Sample, deposit_file, stored_keys
from tests.support.services import SmtpSink, body_of

THIS_MONTH = paris_today().replace(day=1)


@pytest.fixture
def officer62(factory: Factory, fw: FlowWorld) -> Account:
    """The security officer of the département 62, who must hear of a damaged file of 62."""
    return factory.user(fw.cd62, (Role.SECURITE,), name="Sécu Rité")


@pytest.fixture
def damaging(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Damage (one byte of the first segment) each flow object right after its upload."""
    damaged: list[str] = []
    real_add_file = deposit_services.add_file

    def add_then_damage(*args: Any, **kwargs: Any) -> Any:
        record = real_add_file(*args, **kwargs)
        inner = services().store.inner
        stored = bytearray(b"".join(inner.get(record.object_key)))
        stored[HEADER_SIZE + 7] ^= 0x01
        inner.put(record.object_key, [bytes(stored)])
        damaged.append(record.id)
        return record

    monkeypatch.setattr(deposit_services, "add_file", add_then_damage)
    return damaged


def assert_reported_and_discarded(
    app: Flask, file_id: str, officer: Account, smtp: SmtpSink
) -> None:
    [failed] = audit_rows(app, AuditAction.STORAGE_INTEGRITY_FAILED)
    details = json.loads(failed.details)
    assert failed.outcome == Outcome.FAILURE
    assert (failed.target_type, failed.target_id, failed.target_departement) == (
        "file",
        file_id,
        "62",
    )
    assert details["object_key"].endswith(f"/{file_id}") and details["segment"] == 0
    assert details["reason"] and details["deposit_id"]
    assert "export.xml" not in failed.details  # no file name in the trail
    assert audit_rows(app, AuditAction.FLOW_VALIDATED) == []
    with app.app_context():
        [alert] = db.session.execute(sa.select(SecurityAlert)).scalars()
        assert (alert.kind, alert.subject_type, alert.subject_id) == (
            AlertKind.STORAGE_INTEGRITY,
            "file",
            file_id,
        )
        # Mailed at once, by the request itself: no job has run
        assert alert.departement_code == "62" and alert.notified_at is not None
        alert_id = alert.id
        deposit = db.session.get(Deposit, details["deposit_id"])
        assert deposit is not None and deposit.status != DepositStatus.AVAILABLE
        assert deposit.published_at is None
    [mail] = smtp.to(officer.email)
    assert f"/securite/alertes/{alert_id}" in body_of(mail)
    # The draft was discarded: nothing stored, nothing delivered
    assert stored_keys(app) == [] and smtp.to("tech@ft.example.org") == []


def test_a_flow_damaged_in_the_store_before_validation_is_reported_on_the_web(
    app: Flask,
    fw: FlowWorld,
    client_for: ClientFor,
    sample: Sample,
    smtp: SmtpSink,
    officer62: Account,
    damaging: list[str],
) -> None:
    data, _ = sample(FlowType.CGPEM, 6, date_reference=THIS_MONTH)
    response = deposit_file(client_for(fw.tech62), "62", data)
    assert response.status_code == 502
    assert "endommagé" in response.get_json()["error"]
    [file_id] = damaging
    assert_reported_and_discarded(app, file_id, officer62, smtp)


def test_a_flow_damaged_in_the_store_before_validation_is_a_502_problem_on_the_api(
    app: Flask,
    fw: FlowWorld,
    api_for: Callable[..., Api],
    sample: Sample,
    smtp: SmtpSink,
    officer62: Account,
    damaging: list[str],
) -> None:
    data, _ = sample(FlowType.CGPEM, 6, date_reference=THIS_MONTH)
    script = api_for(fw.tech62)
    doc = script.get("/api/v1/openapi.json").json
    response = script.post(
        "/api/v1/flows?departement=62",
        data=data,
        headers={"X-Filename": "export.xml", "Content-Type": "application/octet-stream"},
    )
    body = assert_problem(response, 502, "file_corrupted")
    assert_documented(doc, "/flows", "post", response)
    assert "endommagé" in body["detail"]
    [file_id] = damaging
    assert_reported_and_discarded(app, file_id, officer62, smtp)
