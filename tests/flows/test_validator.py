"""The validator on valid files, on every rule one at a time, and on many errors at once."""

from __future__ import annotations

import io
from datetime import date

import pytest

from portal.flows.core import FlowType, Rule, Severity, validate
from portal.flows.core.sample import injectable_rules
from tests.flows.conftest import CORPUS, TODAY, Sample, check, located

CASES = [(flow, rule) for flow in FlowType for rule in injectable_rules(flow)]


@pytest.mark.parametrize("name", ["cgpem_exemple_convention", "pecgm_valide", "pecdh_valide"])
def test_hand_written_valid_files_of_each_flow_are_valid(name: str) -> None:
    report = validate(CORPUS / f"{name}.xml", today=TODAY)

    assert report.is_valid, report.issues
    assert report.issues == ()
    assert report.version == "001,0"


def test_the_convention_example_is_read_as_a_cgpem_of_62() -> None:
    report = validate(CORPUS / "cgpem_exemple_convention.xml", today=TODAY, departement="62")

    assert report.flow_type is FlowType.CGPEM
    assert report.departement == "62"
    assert report.date_reference == date(2026, 11, 1)
    assert report.record_count == 1
    assert dict(report.nature_counts) == {"06": 1}


@pytest.mark.parametrize("flow", list(FlowType))
def test_generated_samples_of_each_flow_are_valid(flow: FlowType, sample: Sample) -> None:
    data, result = sample(flow, 300)

    report = check(data, departement="62", expected_type=flow)

    assert report.is_valid and report.issues == (), report.issues[:5]
    assert report.record_count == 300
    assert report.size_bytes == len(data) == result.size_bytes
    if flow is FlowType.CGPEM:
        assert sum(report.nature_counts.values()) == 300
        assert set(report.nature_counts) <= {"01", "02", "03", "04", "05", "06"}


@pytest.mark.parametrize(("flow", "rule"), CASES, ids=[f"{f.value}-{r.value}" for f, r in CASES])
def test_each_rule_is_reported_with_its_line_record_and_field(
    flow: FlowType, rule: Rule, sample: Sample
) -> None:
    # Given a file that breaks exactly one rule, somewhere in its 6 records
    data, result = sample(flow, 6, errors=[rule.value])

    # When it is validated
    report = check(data, departement="62", expected_type=flow)

    # Then exactly that rule is reported, where the generator put it
    expected = [(e.rule.value, e.record, e.line, e.field) for e in result.injected]
    assert located(report) == expected
    assert report.is_valid is (rule.severity is Severity.WARNING)


def test_all_errors_of_a_file_are_reported_at_once(sample: Sample) -> None:
    fatal = {
        Rule.XML_MALFORMED,
        Rule.XML_DOCTYPE,
        Rule.ENCODING_DECLARATION,
        Rule.ENTETE_VERSION,
    }
    # Header edits that hide one another: an invalid département is not compared with the
    # footer's, a periodicity other than M has no first-of-month rule. Each is tested alone.
    overlapping = {
        Rule.ENTETE_DEPARTEMENT,
        Rule.ENTETE_DEPARTEMENT_ESPACE,
        Rule.ENTETE_PERIODICITE,
    }
    rules = [r for r in injectable_rules(FlowType.CGPEM) if r not in fatal | overlapping]
    data, result = sample(FlowType.CGPEM, 60, errors=[r.value for r in rules])

    report = check(data, departement="62", expected_type=FlowType.CGPEM)

    expected = sorted((e.rule.value, e.record, e.line, e.field) for e in result.injected)
    assert sorted(located(report)) == expected
    assert len(rules) >= 25 and len(expected) == len(rules)
    errors = [e for e in expected if Rule(e[0]).severity is Severity.ERROR]
    assert report.error_count == len(errors)  # warnings (aggregated or not) are not errors
    assert report.warning_count == len(expected) - len(errors) >= 5


def test_records_after_a_malformed_one_are_not_claimed_checked(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 10, errors=[Rule.XML_MALFORMED.value])

    report = check(data)

    assert [i.rule for i in report.issues] == [Rule.XML_MALFORMED]
    assert "bien formé" in report.issues[0].message
    assert not report.is_valid


def test_flow_type_is_read_from_the_header_when_not_given(sample: Sample) -> None:
    data, _ = sample(FlowType.PECDH, 3)

    report = check(data)

    assert report.flow_type is FlowType.PECDH
    assert report.periodicite == "H"


def test_a_pecgm_deposited_as_a_cgpem_is_refused_with_one_clear_message(sample: Sample) -> None:
    data, _ = sample(FlowType.PECGM, 3)

    report = check(data, expected_type=FlowType.CGPEM)

    assert located(report) == [("entete.fichier", None, 4, "entete/fichier")]
    assert "PECGM" in report.issues[0].message and "CGPEM" in report.issues[0].message


def test_an_unknown_flow_without_expected_type_stops_at_the_header(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3, errors=[Rule.ENTETE_FICHIER.value])

    report = check(data)

    assert [i.rule for i in report.issues] == [Rule.ENTETE_FICHIER]
    assert report.record_count == 0


def test_a_cgpem_may_declare_weekly_periodicity(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    data = data.replace(b"<periodicite>M</periodicite>", b"<periodicite>H</periodicite>", 1)

    assert check(data).is_valid


def test_a_file_deposited_in_another_departements_space_is_refused(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2, departement="59")

    report = check(data, departement="62")

    assert [i.rule for i in report.issues] == [Rule.ENTETE_DEPARTEMENT_ESPACE]
    assert "59" in report.issues[0].message and "62" in report.issues[0].message


@pytest.mark.parametrize("departement", ["2A", "2B", "971", "976", "01", "95"])
def test_every_kind_of_departement_code_is_accepted(departement: str, sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2, departement=departement)

    assert check(data, departement=departement).is_valid


def test_an_invalid_space_departement_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="département"):
        validate(io.BytesIO(b""), departement="20")


def test_a_decision_dated_today_is_accepted_and_tomorrow_is_not(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 1)
    start = data.index(b"<date-decision>") + len(b"<date-decision>")
    today = data[:start] + TODAY.isoformat().encode() + data[start + 10 :]
    tomorrow = data[:start] + b"2026-11-21" + data[start + 10 :]

    assert check(today).is_valid
    assert [i.rule for i in check(tomorrow).issues] == [Rule.CGPEM_DATE_DECISION_FUTURE]


def test_missing_header_and_footer_are_reported() -> None:
    data = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<flux>\n</flux>\n'

    report = check(data, expected_type=FlowType.CGPEM)

    assert {i.rule for i in report.issues} == {Rule.STRUCTURE_MISSING_ELEMENT}
    assert {i.field for i in report.issues} == {"entete", "fin"}


def test_wrong_root_and_stray_top_level_elements_are_reported(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    data = data.replace(b"<flux>", b"<flux-cgpem>").replace(b"</flux>", b"</flux-cgpem>")
    data = data.replace(b"  <fin>", b"  <annexe>libre</annexe>\n  <fin>")

    report = check(data)

    assert [(i.rule, i.field) for i in report.issues] == [
        (Rule.XML_ROOT, "flux-cgpem"),
        (Rule.STRUCTURE_UNEXPECTED_ELEMENT, "annexe"),
    ]


def test_a_record_nested_in_a_stray_element_is_not_counted(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    first = data.index(b"  <dossier>")
    data = data[:first] + b"<lot>\n" + data[first:]
    end = data.index(b"</dossier>") + len(b"</dossier>")
    data = data[:end] + b"\n</lot>" + data[end:]

    report = check(data)

    assert report.record_count == 1
    assert [i.rule for i in report.issues] == [
        Rule.STRUCTURE_UNEXPECTED_ELEMENT,
        Rule.FIN_NB_DOSSIER,
    ]


def test_records_after_the_footer_are_reported_and_counted(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    first = data.index(b"  <dossier>")
    end = data.index(b"</dossier>") + len(b"</dossier>\n")
    record = data[first:end]
    data = data.replace(b"</flux>", record + b"</flux>")

    report = check(data)

    assert [i.rule for i in report.issues] == [Rule.FIN_NB_DOSSIER, Rule.STRUCTURE_ORDER]
    assert report.record_count == 3
    assert report.issues[1].record == 3


def test_blank_values_count_as_absent_for_the_conditional_rules(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 1)
    start = data.index(b"<nom>") + len(b"<nom>")
    end = data.index(b"</nom>")
    data = data[:start] + b"   " + data[end:]

    report = check(data)

    assert [i.rule for i in report.issues] == [
        Rule.CGPEM_CORRESPONDANT_NOM_REQUIRED,
        Rule.CGPEM_CORRESPONDANT_NOM_EMPTY,
    ]
    assert "1 dossier(s)" in report.warnings[0].message


def test_a_validation_is_a_single_pass_over_a_non_seekable_stream(sample: Sample) -> None:
    data, _ = sample(FlowType.PECGM, 50)

    class OneWay(io.RawIOBase):
        def __init__(self) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            chunk = self._inner.read(min(len(buffer), 997))  # odd sizes cut anywhere
            buffer[: len(chunk)] = chunk
            return len(chunk)

    report = validate(io.BufferedReader(OneWay(), 512), today=TODAY)

    assert report.is_valid and report.record_count == 50


def test_a_namespaced_flux_is_refused_with_a_hint(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    data = data.replace(b"<flux>", b'<flux xmlns="urn:exemple">', 1)

    report = check(data, expected_type=FlowType.CGPEM)

    assert report.issues[0].rule is Rule.XML_ROOT
    assert "espace de noms" in report.issues[0].message
    assert report.record_count == 0 and not report.is_valid


def test_a_header_without_version_stops_with_a_clear_message(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    data = data.replace(b"<version>001,0</version>", b"", 1)

    report = check(data)

    assert [i.rule for i in report.issues] == [Rule.ENTETE_VERSION]
    assert "manque" in report.issues[0].message
