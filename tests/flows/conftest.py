"""Fixtures of the flows tests: a fixed "today", sample files in memory, the corpus."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.flows.core import FlowType, ValidationReport, validate
from portal.flows.core.sample import SampleResult, write_sample
from tests.api.conftest import api_for  # noqa: F401 - fixture re-exported for this package
from tests.conftest import csrf_of
from tests.deposits.conftest import (  # noqa: F401 - fixtures re-exported for this package
    client_for,
    deposits_seaweedfs,
    settings,
)
from tests.factories import Account, Factory, FlowWorld

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


@pytest.fixture
def fw(factory: Factory) -> FlowWorld:
    """The organisations and technicians of the flow tests."""
    return FlowWorld.build(factory)


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
    from portal.container import services

    with app.app_context():
        return list(services().store.inner.list("deposits/"))


ClientFor = Callable[[Account], FlaskClient]
