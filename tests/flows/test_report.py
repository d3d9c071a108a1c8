"""The report: NIR never in clear, bounded size, JSON and CSV forms."""

from __future__ import annotations

import csv
import io
import json
import re

from portal.flows.core import FlowType, Rule, Severity
from portal.flows.core.report import IssueCollector, mask_nir, redact
from tests.flows.conftest import Sample, check

NIR = "2850762000123"


def test_mask_nir_keeps_at_most_the_first_seven_characters() -> None:
    assert mask_nir("2850762123456") == "2850762******"
    assert mask_nir("285076212345678") == "2850762********"
    assert mask_nir("12345678") == "12******"
    assert mask_nir("123") == "***"


def test_redact_masks_nir_like_runs_anywhere_in_a_text() -> None:
    assert redact("tel 2850762123456 et 1850762123456 ok") == (
        "tel 2850762****** et 1850762****** ok"
    )
    assert redact("corse 185062A123456") == "corse 185062A******"
    assert redact("0321000000 2026-11-01 1234567A") == "0321000000 2026-11-01 1234567A"


def _with_nirs_everywhere(sample: Sample) -> bytes:
    data, _ = sample(FlowType.CGPEM, 4)
    text = data.decode("latin-1")
    # A NIR one digit too long, a NIR in a name, a NIR in the phone number and in the e-mail.
    text = re.sub(r"<nir>\d+</nir>", f"<nir>{NIR}9</nir>", text, count=1)
    text = text.replace("<nom-naissance>", f"<nom-naissance>X{NIR}", 1)
    text = text.replace("<telephone>", f"<telephone>{NIR}", 1)
    text = text.replace("<email>", f"<email>{NIR}@", 1)
    return text.encode("latin-1")


def test_no_full_nir_appears_in_the_report_its_dict_or_its_csv(sample: Sample) -> None:
    # Given a file with NIRs in wrong places and a malformed NIR
    data = _with_nirs_everywhere(sample)

    # When it is validated
    report = check(data)

    # Then each problem is reported, but never with a full NIR
    rules = {i.rule for i in report.issues}
    assert {Rule.FIELD_MAX_LENGTH, Rule.FIELD_NAME_FORMAT} <= rules
    everything = repr(report) + json.dumps(report.to_dict(), ensure_ascii=False)
    everything += report.to_csv()
    assert NIR not in everything
    assert "2850762******" in everything
    nir_issue = next(i for i in report.issues if i.field == "dossier/individu/nir")
    assert nir_issue.value == "2850762*******"


def test_the_csv_lists_every_stored_issue_with_its_place(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 5, errors=["cgpem.nir_or_pe_id", "fin.nb_dossier"])

    report = check(data)
    rows = list(csv.reader(io.StringIO(report.to_csv()), delimiter=";"))

    assert rows[0] == ["gravite", "ligne", "dossier", "champ", "regle", "message", "valeur"]
    assert [(r[0], r[2], r[3], r[4]) for r in rows[1:]] == [
        ("erreur", "1", "dossier/individu/nir", "cgpem.nir_or_pe_id"),
        ("erreur", "", "fin/nb-dossier", "fin.nb_dossier"),
    ]


def test_spreadsheet_formulas_from_the_file_are_neutralised(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    data = data.replace(b"<telephone>", b"<telephone>=HYPERLINK(1)", 1)

    report = check(data)

    row = report.to_csv().splitlines()[1].split(";")
    assert row[-1].startswith("'=HYPERLINK")


def test_values_can_be_left_out_of_the_dict_and_csv(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2, errors=["field.upper_ascii"])

    report = check(data)

    assert report.issues[0].value == "Hélène"
    assert report.to_dict(include_values=False)["issues"][0]["value"] is None
    assert "Hélène" not in report.to_csv(include_values=False)


def test_a_broken_file_does_not_store_more_issues_than_the_cap(sample: Sample) -> None:
    # Given 300 records all missing their birth name
    data, _ = sample(FlowType.CGPEM, 300)
    data = re.sub(rb"<nom-naissance>[^<]*</nom-naissance>", b"<nom-naissance/>", data)

    # When validated with a cap of 50 stored issues
    report = check(data, max_issues=50)

    # Then 50 are kept, all 300 are counted, and the rest is announced
    assert len(report.issues) == 50
    assert report.error_count == 300
    assert report.omitted_counts == {"field.required": 250}
    assert report.to_dict()["omitted_issue_count"] == 250
    assert "250 autre(s) anomalie(s) field.required" in report.to_csv()


def test_the_report_is_json_serialisable_and_frozen(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3, errors=["cgpem.correspondant_nom_empty"])

    report = check(data)
    as_json = json.loads(json.dumps(report.to_dict()))

    assert as_json["is_valid"] is True
    assert as_json["warning_count"] == 1
    assert as_json["issues"][0]["severity"] == "warning"
    assert as_json["rule_counts"] == {"cgpem.correspondant_nom_empty": 1}
    assert report.warnings[0].severity is Severity.WARNING
    try:
        report.record_count = 0  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("the report should be frozen")


def test_the_collector_caps_per_rule_and_overall() -> None:
    collector = IssueCollector(max_issues=5, max_per_rule=2)
    for _ in range(4):
        collector.add(Rule.FIELD_DATE, "date")
    for _ in range(4):
        collector.add(Rule.FIELD_CODE, "code")
    for _ in range(4):
        collector.add(Rule.FIELD_NIR, "nir", value=NIR, field="dossier/individu/nir")

    assert [i.rule for i in collector.issues] == [Rule.FIELD_DATE] * 2 + [Rule.FIELD_CODE] * 2 + [
        Rule.FIELD_NIR
    ]
    assert (collector.error_count, collector.warning_count) == (8, 4)  # field.nir only warns
    assert dict(collector.omitted) == {"field.date": 2, "field.code": 2, "field.nir": 3}
    assert collector.issues[-1].value == "2850762******"


def test_birth_dates_keep_only_their_year_in_the_report() -> None:
    from portal.flows.core.report import mask_birth_date

    assert mask_birth_date("1985-07-12") == "1985-**-**"
    assert mask_birth_date("12/07/1985") == "**/**/1985"
    assert mask_birth_date("1985-02-30") == "1985-**-**"
    assert mask_birth_date("abc") == "abc"
    # Given a wrong birth date met by the validator
    builder = IssueCollector()
    builder.add(
        Rule.FIELD_DATE,
        "La date « 1985-02-30 » n'existe pas.",
        field="dossier/individu/date-naissance",
        value="1985-02-30",
    )
    issue = builder.issues[0]
    # Then neither the value nor the message shows its day and month
    assert issue.value == "1985-**-**"
    assert "1985-02-30" not in issue.message and "1985-**-**" in issue.message
