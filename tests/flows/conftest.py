"""Fixtures of the flows tests: a fixed "today", sample files in memory, the corpus."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import pytest

from portal.flows import FlowType, ValidationReport, validate
from portal.flows.sample import SampleResult, write_sample

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
