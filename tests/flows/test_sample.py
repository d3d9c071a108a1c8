"""The sample generator: invented identities, ISO-8859-1, reproducible, streamed."""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

import pytest

from portal.flows.core import FlowType, validate
from portal.flows.core.sample import write_sample
from tests.flows.conftest import REFERENCE, Sample


def test_generated_nirs_can_never_be_real(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 500)

    nirs = re.findall(rb"<nir>([^<]+)</nir>", data)

    assert len(nirs) > 400
    assert all(nir[7:10] == b"000" for nir in nirs)  # INSEE never assigns commune 000


def test_contacts_are_fictitious(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 200)

    emails = re.findall(rb"<email>([^<]+)</email>", data)
    phones = re.findall(rb"<telephone>([^<]+)</telephone>", data)

    assert emails and all(e.endswith(b"@example.org") for e in emails)
    assert phones and all(p.startswith(b"01990") for p in phones)


def test_files_are_iso_8859_1_with_accents(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 50)

    assert data.startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<flux>\n')
    assert "é".encode("latin-1") in data
    data.decode("latin-1")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")


def test_a_seed_makes_the_file_reproducible(sample: Sample) -> None:
    assert sample(FlowType.PECGM, 20, seed=4)[0] == sample(FlowType.PECGM, 20, seed=4)[0]
    assert sample(FlowType.PECGM, 20, seed=4)[0] != sample(FlowType.PECGM, 20, seed=5)[0]


def test_writes_to_a_path(tmp_path: Path) -> None:
    path = tmp_path / "pecdh.xml"

    result = write_sample(path, FlowType.PECDH, 10, "974", seed=1, date_reference=REFERENCE)

    assert path.stat().st_size == result.size_bytes
    assert result.lines == path.read_bytes().count(b"\n")
    assert b"<periodicite>H</periodicite>" in path.read_bytes()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="département"):
        write_sample(io.BytesIO(), FlowType.CGPEM, 1, "20")
    with pytest.raises(ValueError, match="unknown rule"):
        write_sample(io.BytesIO(), FlowType.CGPEM, 1, "62", ["nope"])
    with pytest.raises(ValueError, match="cannot be injected"):
        write_sample(io.BytesIO(), FlowType.PECDH, 1, "62", ["cgpem.nir_or_pe_id"])
    with pytest.raises(ValueError, match="at least one record"):
        write_sample(io.BytesIO(), FlowType.CGPEM, 0, "62", ["field.date"])


@pytest.mark.parametrize("flow", list(FlowType))
def test_a_sample_is_never_made_in_the_future(flow: FlowType) -> None:
    # Given a December file made on 7 December (the 18th would be in the future)
    buffer = io.BytesIO()
    write_sample(
        buffer, flow, 3, "62", seed=1, date_reference=date(2026, 12, 1), today=date(2026, 12, 7)
    )

    # When it is read back, Then it was made at the latest today, and draws no warning
    report = validate(io.BytesIO(buffer.getvalue()), today=date(2026, 12, 7))
    assert report.date_fabrication is not None
    assert report.date_fabrication <= date(2026, 12, 7)
    assert report.is_valid and report.issues == (), report.issues


def test_a_monthly_sample_of_a_past_month_is_made_mid_month() -> None:
    buffer = io.BytesIO()
    write_sample(
        buffer, FlowType.CGPEM, 1, "62", date_reference=date(2026, 11, 1), today=date(2026, 12, 7)
    )

    assert b"<date-fabrication>2026-11-18</date-fabrication>" in buffer.getvalue()
