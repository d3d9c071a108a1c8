"""Encoding traps: the bytes must really be ISO-8859-1, as the prolog declares."""

from __future__ import annotations

import pytest

from portal.flows.core import FlowType, Rule
from tests.flows.conftest import Sample, check, located

PROLOG = b'<?xml version="1.0" encoding="ISO-8859-1"?>'


def _line_of(data: bytes, needle: bytes) -> int:
    return data[: data.index(needle)].count(b"\n") + 1


def test_a_file_saved_in_utf8_is_refused_line_by_line(sample: Sample) -> None:
    # Given a valid file re-saved in UTF-8 with its ISO-8859-1 prolog unchanged
    latin1, _ = sample(FlowType.CGPEM, 40)
    data = latin1.decode("latin-1").encode("utf-8")

    # When it is validated
    report = check(data)

    # Then every line holding an accent is reported, in its record and field
    utf8 = [i for i in report.issues if i.rule is Rule.ENCODING_UTF8]
    accented_lines = [n for n, line in enumerate(latin1.split(b"\n"), 1) if not line.isascii()]
    assert [i.line for i in utf8] == accented_lines
    first = utf8[0]
    assert first.record is not None and first.field == "dossier/correspondant/organisme"
    assert "UTF-8" in first.message and "ISO-8859-1" in first.message
    assert not report.is_valid


def test_windows_1252_quotes_are_refused_as_c1_controls(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 30)
    data = data.replace(b"d'action", b"d\x92action", 1)

    report = check(data)

    assert located(report) == [
        (
            "encoding.c1_control",
            report.issues[0].record,
            _line_of(data, b"\x92"),
            report.issues[0].field,
        )
    ]
    issue = report.issues[0]
    assert issue.field == "dossier/correspondant/organisme" and issue.record is not None
    assert "0x92" in issue.message and "Windows-1252" in issue.message and "’" in issue.message


@pytest.mark.parametrize(
    ("prolog", "words"),
    [
        (b'<?xml version="1.0" encoding="UTF-8"?>', ["UTF-8", "ISO-8859-1"]),
        (b'<?xml version="1.0" encoding="windows-1252"?>', ["windows-1252"]),
        (b'<?xml version="1.0" encoding="ISO-8859-15"?>', ["ISO-8859-15"]),
        (b'<?xml version="1.0"?>', ["ne déclare pas"]),
        (b"", ["doit commencer par le prologue"]),
    ],
)
def test_a_prolog_that_does_not_declare_iso_8859_1_is_refused(
    prolog: bytes, words: list[str], sample: Sample
) -> None:
    data, _ = sample(FlowType.CGPEM, 3)
    data = data.replace(PROLOG, prolog, 1)

    report = check(data)

    assert located(report) == [("encoding.declaration", None, 1, None)]
    assert all(word in report.issues[0].message for word in words)


def test_the_encoding_name_is_not_case_sensitive(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3)

    assert check(data.replace(b"ISO-8859-1", b"iso-8859-1", 1)).is_valid


@pytest.mark.parametrize(
    ("bom", "name"),
    [(b"\xef\xbb\xbf", "UTF-8"), (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")],
)
def test_a_byte_order_mark_is_refused(bom: bytes, name: str, sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3)

    report = check(bom + data)

    assert located(report) == [("encoding.bom", None, 1, None)]
    assert name in report.issues[0].message


def test_a_utf16_file_is_refused_whatever_its_prolog_says(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3)

    report = check(data.decode("latin-1").encode("utf-16"))

    assert [i.rule for i in report.issues] == [Rule.ENCODING_BOM]


@pytest.mark.parametrize("reference", [b"&#8364;", b"&#x20AC;", b"&#150;", b"&#x92;"])
def test_character_references_outside_iso_8859_1_are_refused(
    reference: bytes, sample: Sample
) -> None:
    data, _ = sample(FlowType.CGPEM, 3)
    data = data.replace(b"<organisme>", b"<organisme>" + reference, 1)

    report = check(data)

    assert [(i.rule, i.field) for i in report.issues] == [
        (Rule.ENCODING_CHAR_REFERENCE, "dossier/correspondant/organisme")
    ]
    assert reference.decode() in report.issues[0].message


def test_character_references_inside_iso_8859_1_are_fine(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3)
    data = data.replace(b"<organisme>", b"<organisme>&#233;&#xE9;&amp;", 1)

    assert check(data).is_valid


def test_legitimate_latin1_text_is_not_mistaken_for_utf8(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3)
    text = "Maison n° 3 « Solidarité » à Liévin, Château-l'Évêque".encode("latin-1")
    data = data.replace(b"<organisme>", b"<organisme>" + text[:40], 1)

    report = check(data)

    assert not [i for i in report.issues if i.rule.value.startswith("encoding.")]


def test_encoding_findings_are_capped_per_rule_and_counted(sample: Sample) -> None:
    latin1, _ = sample(FlowType.CGPEM, 400)
    data = latin1.decode("latin-1").encode("utf-8")

    report = check(data, max_issues_per_rule=25)

    stored = [i for i in report.issues if i.rule is Rule.ENCODING_UTF8]
    assert len(stored) == 25
    assert report.omitted_counts["encoding.utf8"] == report.rule_counts["encoding.utf8"] - 25 > 0
