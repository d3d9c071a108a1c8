"""The Python checks agree with the XSD, and the fast path with the general rules."""

from __future__ import annotations

import copy
import io
import random
from datetime import date

import pytest
from lxml import etree

from portal.flows.core import FlowType
from portal.flows.core import records as records_module
from portal.flows.core import validator as validator_module
from portal.flows.core.registry import latest_spec
from portal.flows.core.rules import RuleContext
from portal.flows.core.spec import FieldKind, FieldSpec, check_field
from portal.flows.core.xsd import clean_record_schema, record_schema
from tests.flows.conftest import TODAY, Sample, check

PROBES = (
    "",
    " ",
    "   ",
    "A",
    "a",
    "01",
    "07",
    "1",
    "X",
    "O",
    "N",
    "M",
    "H",
    "11",
    "99",
    "62",
    "2A",
    "20",
    "971",
    "621",
    "62A",
    " 621",
    "1234",
    "12345",
    "6204",
    "62041",
    "1234567A",
    "1234567a",
    "12345678",
    "A1234567",
    "2850762000123",
    "2850762000123 ",
    "285076200012",
    "185062A000123",
    "MARTIN",
    "LE GALL",
    "D'ARC",
    "JEAN-PIERRE",
    "Martin",
    "HÉLÈNE",
    "MARTIN ",
    "-MARTIN",
    "K1201",
    "k1201",
    "NV4",
    "APR",
    "001,0",
    "CGPE",
    "2026-11-01",
    "2026-02-30",
    "2026-11-1",
    " 2026-11-01 ",
    "0000-01-01",
    "2026-13-01",
    "20261101",
    "x" * 25,
    "X" * 26,
    "é" * 31,
    "Maison du Département",
    "12345678901",
)


def _record_and_fields(data: bytes) -> tuple[etree._Element, list[etree._Element]]:
    root = etree.fromstring(data, etree.XMLParser(remove_blank_text=True))
    record = root.find("dossier")
    assert record is not None
    leaves = [node for node in record.iter() if len(node) == 0]
    return record, leaves


def _spec_of(flow: FlowType, path: str) -> FieldSpec:
    for field_path, spec in latest_spec(flow).dossier.fields():
        if field_path == path:
            return spec
    raise KeyError(path)


def _path(node: etree._Element) -> str:
    parts = []
    current: etree._Element | None = node
    while current is not None and current.tag != "flux":
        parts.append(str(current.tag))
        current = current.getparent()
    return "/".join(reversed(parts))


@pytest.mark.parametrize("flow", list(FlowType))
def test_python_field_checks_agree_with_the_xsd_on_every_field(
    flow: FlowType, sample: Sample
) -> None:
    # Given a valid record where every field is present
    data, _ = sample(flow, 1, seed=3)
    record, leaves = _record_and_fields(data)
    schema = record_schema(latest_spec(flow))
    disagreements = []
    for leaf in leaves:
        spec = _spec_of(flow, _path(leaf))
        original = leaf.text
        for probe in PROBES:
            # When one field takes a probe value
            leaf.text = probe
            by_xsd = schema.validate(record)
            by_python = check_field(spec, probe) is None
            # Then the XSD and the Python check give the same verdict
            if by_xsd != by_python:
                disagreements.append((_path(leaf), probe, by_xsd, by_python))
        leaf.text = original
    assert disagreements == []


def _mutations(record: etree._Element, rng: random.Random) -> etree._Element:
    mutated = copy.deepcopy(record)
    leaves = [node for node in mutated.iter() if len(node) == 0]
    for leaf in rng.sample(leaves, k=rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.2 and leaf.getparent() is not None:
            leaf.getparent().remove(leaf)  # type: ignore[union-attr]
        elif roll < 0.4:
            leaf.text = None
        elif roll < 0.5:
            leaf.text = "2027-01-15" if "date" in str(leaf.tag) else " "
        else:
            leaf.text = rng.choice(PROBES)
    return mutated


@pytest.mark.parametrize("flow", list(FlowType))
def test_records_accepted_by_the_clean_schema_are_valid_and_break_no_rule(
    flow: FlowType, sample: Sample
) -> None:
    spec = latest_spec(flow)
    clean = clean_record_schema(spec, TODAY)
    official = record_schema(spec)
    assert clean is not None
    data, _ = sample(flow, 40, seed=11)
    records = etree.fromstring(data, etree.XMLParser(remove_blank_text=True)).findall("dossier")
    rng = random.Random(5)
    accepted = 0
    for _ in range(1500):
        mutated = _mutations(rng.choice(records), rng)
        if not clean.validate(mutated):
            continue
        accepted += 1
        assert official.validate(mutated)
        values = {
            str(group.tag): {str(field.tag): field.text for field in group} for group in mutated
        }
        for rule in spec.record_rules:
            assert rule(values, RuleContext(TODAY)) == [], etree.tostring(mutated)
    assert accepted > 100


def test_the_clean_schema_takes_the_calendar_into_account() -> None:
    spec = latest_spec(FlowType.CGPEM)
    today = clean_record_schema(spec, date(2026, 11, 20))
    record = etree.fromstring(
        b"<dossier><individu><nir>2850762000123</nir><nom-naissance>A</nom-naissance>"
        b"<prenom>B</prenom></individu><orientation><nature>01</nature>"
        b"<date-decision>2026-11-21</date-decision></orientation>"
        b"<correspondant><nom>C</nom></correspondant></dossier>"
    )
    assert today is not None and not today.validate(record)
    tomorrow = clean_record_schema(spec, date(2026, 11, 21))
    assert tomorrow is not None and tomorrow.validate(record)


@pytest.mark.parametrize("flow", list(FlowType))
def test_shortcuts_do_not_change_the_report(
    flow: FlowType, sample: Sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given files with mutated records
    data, _ = sample(flow, 30, seed=2)
    root = etree.fromstring(data, etree.XMLParser(remove_blank_text=True))
    rng = random.Random(9)
    for index, record in enumerate(root.findall("dossier")):
        if index % 2:
            root.replace(record, _mutations(record, rng))
    mutated = etree.tostring(root, xml_declaration=True, encoding="ISO-8859-1", pretty_print=True)

    # When validated with the shortcuts, without the clean-record schema, and with the Python
    # walk covering whole records instead of the groups the XSD points at
    fast = check(mutated)
    monkeypatch.setattr(records_module, "clean_record_schema", lambda spec, today: None)
    general = check(mutated)
    monkeypatch.setattr(records_module, "groups_to_walk", lambda errors, spec: None)
    exhaustive = check(mutated)

    # Then the three reports are the same
    assert fast.issues == general.issues == exhaustive.issues
    assert fast.nature_counts == general.nature_counts == exhaustive.nature_counts
    assert fast.error_count == general.error_count == exhaustive.error_count > 0


def test_no_xsd_error_is_left_unexplained_by_the_python_walk(sample: Sample) -> None:
    rng = random.Random(13)
    for flow in FlowType:
        data, _ = sample(flow, 20, seed=4)
        root = etree.fromstring(data, etree.XMLParser(remove_blank_text=True))
        for record in root.findall("dossier"):
            root.replace(record, _mutations(record, rng))
        mutated = etree.tostring(root, xml_declaration=True, encoding="ISO-8859-1")

        report = validator_module.validate(io.BytesIO(mutated), today=TODAY)

        assert "xml.schema" not in report.rule_counts, [
            i.message for i in report.issues if i.rule.value == "xml.schema"
        ]


def test_date_fields_use_xml_white_space_like_xs_date() -> None:
    spec = FieldSpec("d", FieldKind.DATE)
    assert check_field(spec, "\n2026-11-01\t") is None
    assert check_field(spec, "\u00a02026-11-01") is not None
