"""Fixtures of the flows tests: a fixed "today", sample files in memory, the corpus."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.accounts.models import Role
from portal.flows import FlowType, ValidationReport, validate
from portal.flows.sample import SampleResult, write_sample
from portal.orgs.models import OrgKind
from tests.api.conftest import api_for  # noqa: F401 - fixture re-exported for this package
from tests.conftest import Account, Factory, csrf_of
from tests.deposits.conftest import (  # noqa: F401 - fixtures re-exported for this package
    client_for,
    deposits_seaweedfs,
    settings,
)

CORPUS = Path(__file__).parent / "corpus"
TODAY = date(2026, 11, 20)
REFERENCE = date(2026, 11, 1)

Sample = Callable[..., tuple[bytes, SampleResult]]


@pytest.fixture
def corpus() -> Path:
    """The directory of hand-written test files."""
    return CORPUS


@pytest.fixture
def sample() -> Sample:
    """Writes a synthetic file in memory: `sample(FlowType.CGPEM, 10, errors=[...])`."""

    def make(
        flow_type: FlowType,
        records: int = 10,
        *,
        errors: Sequence[str] = (),
        departement: str = "62",
        seed: int = 7,
        date_reference: date = REFERENCE,
    ) -> tuple[bytes, SampleResult]:
        buffer = io.BytesIO()
        result = write_sample(
            buffer,
            flow_type,
            records,
            departement,
            errors,
            seed,
            date_reference=date_reference,
        )
        return buffer.getvalue(), result

    return make


def check(data: bytes, **options: object) -> ValidationReport:
    """Validate bytes with today fixed to TODAY."""
    options.setdefault("today", TODAY)
    return validate(io.BytesIO(data), **options)  # type: ignore[arg-type]


def located(report: ValidationReport) -> list[tuple[str, int | None, int | None, str | None]]:
    """(rule, record, line, field) of every issue, in file order."""
    return [(i.rule.value, i.record, i.line, i.field) for i in report.issues]


# --- functional tests of flows in the portal (both stacks, as the deposit tests) -------------


@dataclass
class FlowWorld:
    """Départements 62 and 59, France Travail for both, a national structure, technicians."""

    cd62: str
    cd59: str
    ft: str
    national: str
    tech62: Account
    tech62b: Account
    agent62: Account
    tech59: Account
    tech_ft: Account
    tech_national: Account


@pytest.fixture
def fw(factory: Factory) -> FlowWorld:
    """The organisations and technicians of the flow tests."""
    from portal.db import db
    from portal.orgs.models import Organisation

    cd62 = factory.org(OrgKind.DEPARTEMENT, "62", name="CD 62")
    cd59 = factory.org(OrgKind.DEPARTEMENT, "59", name="CD 59")
    ft = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("59", "62"), name="FT Hauts-de-France")
    national = factory.org(OrgKind.FRANCE_TRAVAIL, None, (), name="FT DSI nationale")
    with factory.app.app_context():
        org = db.session.get(Organisation, national)
        assert org is not None
        org.is_national = True
        db.session.commit()
    return FlowWorld(
        cd62=cd62,
        cd59=cd59,
        ft=ft,
        national=national,
        tech62=factory.user(cd62, (Role.TECHNICIEN,), email="tech62@cd62.example.org"),
        tech62b=factory.user(cd62, (Role.TECHNICIEN,), email="tech62b@cd62.example.org"),
        agent62=factory.user(cd62, (Role.AGENT,), email="agent62@cd62.example.org"),
        tech59=factory.user(cd59, (Role.TECHNICIEN,), email="tech59@cd59.example.org"),
        tech_ft=factory.user(ft, (Role.TECHNICIEN,), email="tech@ft.example.org"),
        tech_national=factory.user(national, (Role.TECHNICIEN,), email="tech@national.example.org"),
    )


def deposit_file(
    client: FlaskClient, departement: str, content: bytes, *, flow_type: str | None = None,
    name: str = "export.xml",
) -> Any:  # fmt: skip
    """Upload a flow as the page's script does (raw body, CSRF header)."""
    token = csrf_of(client, f"/flux/deposer?espace={departement}")
    query = f"?espace={departement}" + (f"&type={flow_type}" if flow_type else "")
    return client.post(
        "/flux/deposer" + query,
        data=content,
        headers={
            "X-CSRFToken": token,
            "X-Filename": quote(name),
            "Content-Type": "application/octet-stream",
        },
    )


def stored_keys(app: Flask) -> list[str]:
    """Every object key of the deposits' store."""
    from portal.services import services

    with app.app_context():
        return list(services().store.inner.list("deposits/"))


ClientFor = Callable[[Account], FlaskClient]
