"""Files written literally from the convention's tables: accepted, with the expected warnings.

A département's software vendor follows the annex "Liste des données et structures des
fichiers" word for word: its spellings (`certification-identité`, `Rome-v3`, `Bureau`…), either
reading of the contradictory footer and CGPEM tables, groups it leaves out because the tables do
not make them mandatory. Such a file reaches the other side; what is ours only warns.
"""

from __future__ import annotations

from collections import Counter

import pytest

from portal.flows.core import FlowType, Rule, Severity
from portal.flows.core import records as records_module
from portal.flows.core.rules import READING_BOTH, READING_FIRST_OF_MONTH, READING_SAME_DATE
from portal.flows.core.sample import injectable_rules
from tests.flows.conftest import TODAY, Sample, check


def _flux(entete: str, dossiers: str, fin: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<flux>\n'
        f"{entete}\n{dossiers}\n{fin}\n</flux>\n"
    ).encode("latin-1")


# The PECDH and PECGM tables' spellings, as a vendor copies them.
PECDH_INDIVIDU = """    <individu>
      <nir>1880597400011</nir><nom-naissance>HOARAU</nom-naissance><prenom>KEVIN</prenom>
      <date-naissance>1988-05-30</date-naissance><certification-identité>O</certification-identité>
      <commune-résidence>97411</commune-résidence>
    </individu>"""


def _pecdh(footer_date: str) -> bytes:
    return _flux(
        """  <entete>
    <fichier>PECD</fichier><Periodicite>H</Periodicite><Departement>974</Departement>
    <date-reference>2026-11-17</date-reference><date-fabrication>2026-11-17</date-fabrication>
    <version>001,0</version>
  </entete>""",
        f"""  <dossier>
{PECDH_INDIVIDU}
    <allocataire><code-pe>974</code-pe><identifiant-pe>0012345Z</identifiant-pe></allocataire>
    <inscription><date-debut-ide>2026-02-02</date-debut-ide></inscription>
  </dossier>""",
        f"""  <fin><Departement>974</Departement><date-reference>{footer_date}</date-reference>"""
        "<nb-dossier>1</nb-dossier></fin>",
    )


def _spellings(report: object) -> dict[str, str | None]:
    issues = report.issues  # type: ignore[attr-defined]
    return {i.value: i.field for i in issues if i.rule is Rule.STRUCTURE_SPELLING}


@pytest.mark.parametrize(
    ("footer_date", "reading"),
    [("2026-11-01", READING_FIRST_OF_MONTH), ("2026-11-17", READING_SAME_DATE)],
)
def test_a_weekly_pecdh_is_accepted_with_either_footer_date(footer_date: str, reading: str) -> None:
    # Given a weekly PECDH written from the tables, its footer on the first of the month (footer
    # table) or on the header's date (header table)
    data = _pecdh(footer_date)

    # When it is validated in the space of 974
    report = check(data, departement="974", expected_type=FlowType.PECDH)

    # Then it is valid, the reading is recorded, and each spelling is a warning naming ours
    assert report.is_valid and report.error_count == 0, report.issues
    assert dict(report.readings) == {"fin/date-reference": reading}
    assert _spellings(report) == {
        "Periodicite": "periodicite",
        "Departement": "departement",
        "certification-identité": "certification-identite",
        "commune-résidence": "commune-residence",
    }
    assert {i.severity for i in report.issues} == {Severity.WARNING}
    assert report.to_dict()["readings"] == {"fin/date-reference": reading}


def test_a_footer_date_of_neither_reading_is_still_refused() -> None:
    report = check(_pecdh("2026-11-10"), departement="974", expected_type=FlowType.PECDH)

    assert not report.is_valid
    assert [i.rule for i in report.errors] == [Rule.FIN_DATE_REFERENCE]
    assert "fin/date-reference" not in report.readings


CGPEM_DOSSIER = """  <dossier>
    <individu>
      <nir>2850762123456</nir><nom-naissance>LEFEBVRE</nom-naissance><nom-marital>MARTIN</nom-marital>
      <prenom>HELENE</prenom><date-naissance>1985-07-14</date-naissance>
      <code-pe>621</code-pe><identifiant-pe>1234567A</identifiant-pe>
    </individu>
    <orientation><nature>06</nature><date-decision>2026-10-12</date-decision></orientation>
    <correspondant>
      <organisme>Maison du Département Solidarité de l'Arrageois, Arras</organisme>
      <Nom>DURAND</Nom><Prenom>CLAIRE</Prenom><telephone>0321000000</telephone>
      <email>c.durand@example.org</email>
    </correspondant>
  </dossier>"""


@pytest.mark.parametrize(
    ("periodicite", "header_date", "footer_date", "readings"),
    [
        # the flows table: monthly, the first of the month in both
        ("M", "2026-11-01", "2026-11-01", {"fin/date-reference": READING_BOTH}),
        # the CGPEM table copied from PECDH: H, the day of processing, the footer's first of month
        ("H", "2026-11-18", "2026-11-01", {"fin/date-reference": READING_FIRST_OF_MONTH}),
        ("H", "2026-11-18", "2026-11-18", {"fin/date-reference": READING_SAME_DATE}),
    ],
)
def test_a_cgpem_headed_m_or_h_is_accepted_and_its_reading_recorded(
    periodicite: str, header_date: str, footer_date: str, readings: dict[str, str]
) -> None:
    data = _flux(
        f"""  <entete>
    <fichier>CGPE</fichier><periodicite>{periodicite}</periodicite><departement>62</departement>
    <date-reference>{header_date}</date-reference><date-fabrication>2026-11-18</date-fabrication>
    <version>001,0</version>
  </entete>""",
        CGPEM_DOSSIER,
        f"  <fin><departement>62</departement><date-reference>{footer_date}</date-reference>"
        "<nb-dossier>1</nb-dossier></fin>",
    )

    report = check(data, departement="62", expected_type=FlowType.CGPEM)

    assert report.is_valid, report.issues
    assert report.periodicite == periodicite
    assert report.readings["fin/date-reference"] == readings["fin/date-reference"]
    assert report.readings["entete/periodicite"].startswith(f"{periodicite} : ")
    assert _spellings(report) == {"Nom": "nom", "Prenom": "prenom"}
    assert dict(report.nature_counts) == {"06": 1}


def test_a_pecgm_written_from_its_table_is_accepted_with_warnings_only() -> None:
    # Given a PECGM with the table's spellings, no `formation` nor `ppae` group (the tables make
    # no group mandatory), a NIR of "max 13 AN" that is no NIR, a ROME code that is no ROME code
    # and a cessation without its motive: nothing the convention forbids
    data = _flux(
        """  <entete>
    <fichier>PECG</fichier><periodicite>M</periodicite><departement>2A</departement>
    <date-reference>2026-11-01</date-reference><date-fabrication>2026-11-09</date-fabrication>
    <version>001,0</version>
  </entete>""",
        """  <dossier>
    <individu>
      <nir>X12</nir><nom-naissance>CASANOVA</nom-naissance>
      <prenom>JEAN-PIERRE</prenom><date-naissance>1990-05-03</date-naissance>
      <certification-identité>O</certification-identité><commune-résidence>2A004</commune-résidence>
    </individu>
    <allocataire><identifiant-caf>123456789012345</identifiant-caf></allocataire>
    <inscription>
      <date-debut-ide>2025-03-17</date-debut-ide><code-situation>AC</code-situation>
      <date-cessation-ide>2026-10-30</date-cessation-ide>
    </inscription>
    <suivi>
      <structure-principale>
        <Nom>FRANCE TRAVAIL AJACCIO</Nom><code-postal>20000</code-postal><Bureau>AJACCIO</Bureau>
      </structure-principale>
    </suivi>
    <Rome-v3><code-rome>D11-6</code-rome></Rome-v3>
  </dossier>
  <dossier>
    <individu><nir>1900520000042</nir></individu>
    <ppae><Date-dernier-ent>2026-10-20</Date-dernier-ent></ppae>
  </dossier>""",
        "  <fin><departement>2A</departement><date-reference>2026-11-01</date-reference>"
        "<nb-dossier>2</nb-dossier></fin>",
    )

    # When France Travail deposits it in the space of 2A
    report = check(data, departement="2A", expected_type=FlowType.PECGM)

    # Then it is delivered, and the other side sees every warning
    assert report.is_valid and report.error_count == 0, report.errors
    assert Counter(i.rule for i in report.issues) == {
        Rule.STRUCTURE_SPELLING: 6,
        Rule.FIELD_NIR: 1,
        Rule.FIELD_CODE_ROME: 1,
        Rule.INSCRIPTION_CESSATION_INCOMPLETE: 1,
    }
    assert _spellings(report) == {
        "certification-identité": "certification-identite",
        "commune-résidence": "commune-residence",
        "Nom": "nom",
        "Bureau": "bureau",
        "Rome-v3": "rome-v3",
        "Date-dernier-ent": "date-dernier-ent",
    }
    nir = next(i for i in report.issues if i.rule is Rule.FIELD_NIR)
    assert (nir.record, nir.field, nir.severity) == (1, "dossier/individu/nir", Severity.WARNING)


@pytest.mark.parametrize("records", [50, 3000])  # 3000: past the parser's first chunks
def test_a_spelling_met_in_every_record_is_one_warning_with_its_count(
    records: int, sample: Sample
) -> None:
    # Given a file with an error in its last record, and the same written with a table spelling
    data, _ = sample(FlowType.PECGM, records, errors=["field.date"])
    spelled = data.replace(b"<rome-v3>", b"<Rome-v3>").replace(b"</rome-v3>", b"</Rome-v3>")
    spelled = spelled.replace(b"<bureau>", b"<Bureau>").replace(b"</bureau>", b"</Bureau>")

    # When both are validated
    canonical = check(data, departement="62", expected_type=FlowType.PECGM)
    report = check(spelled, departement="62", expected_type=FlowType.PECGM)

    # Then the spelled one has the same error at the same place, and one warning per spelling
    assert report.record_count == records and report.errors == canonical.errors
    warnings = {i.value: i for i in report.warnings}
    assert set(warnings) == {"Rome-v3", "Bureau"}
    for spelling, canonical_name in (("Rome-v3", "rome-v3"), ("Bureau", "bureau")):
        warning = warnings[spelling]
        assert warning.rule is Rule.STRUCTURE_SPELLING and warning.field == canonical_name
        assert f"{records} dossier(s) écrits avec les orthographes" in warning.message
        assert warning.record is None and warning.line is not None


def test_a_name_that_is_not_a_spelling_of_ours_is_still_refused(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3)
    data = data.replace(b"<nom-naissance>", b"<Nom-Naisance>", 1).replace(
        b"</nom-naissance>", b"</Nom-Naisance>", 1
    )

    report = check(data, departement="62", expected_type=FlowType.CGPEM)

    assert not report.is_valid
    assert Rule.STRUCTURE_UNEXPECTED_ELEMENT in {i.rule for i in report.errors}


@pytest.mark.parametrize("flow", [FlowType.PECGM, FlowType.PECDH])
def test_a_flow_from_france_travail_is_never_refused_on_a_rule_of_ours(
    flow: FlowType, sample: Sample
) -> None:
    # Given every check of ours that the generator can break in a France Travail flow
    ours = [
        r
        for r in injectable_rules(flow)
        if r.source.startswith("nous") and "inexploitable" not in r.source
    ]
    assert {Rule.FIELD_NIR, Rule.INSCRIPTION_CESSATION_INCOMPLETE} <= set(ours)
    for rule in ours:
        data, _ = sample(flow, 6, errors=[rule.value])

        # When it is validated, Then it is delivered with the warning
        report = check(data, departement="62", expected_type=flow)
        assert report.is_valid, (rule, report.errors)
        assert rule in {i.rule for i in report.warnings}


def test_every_rule_of_ours_is_a_warning_and_every_warning_is_ours_or_stated() -> None:
    # The principle: an error needs the convention (or an unusable file) behind it
    for rule in Rule:
        if rule.source.startswith("nous") and rule.severity is Severity.ERROR:
            # the exceptions make a file unusable (or unsafe), and say so in their source
            assert "fichier inexploitable sinon" in rule.source, rule


def test_a_birth_date_or_a_fabrication_date_in_the_future_only_warns(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 4)
    text = data.decode("latin-1")
    text = text.replace("<date-fabrication>2026-11-18<", "<date-fabrication>2026-12-18<", 1)
    head, _, rest = text.partition("<date-naissance>")
    text = head + "<date-naissance>2027-01-01<" + rest.partition("<")[2]

    report = check(text.encode("latin-1"), today=TODAY)

    assert report.is_valid
    assert {i.rule for i in report.warnings} == {
        Rule.ENTETE_DATE_FABRICATION_FUTURE,
        Rule.INDIVIDU_DATE_NAISSANCE_FUTURE,
    }


def test_the_spelled_clean_schema_does_not_change_the_report(
    sample: Sample, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a CGPEM written with the tables' spellings, with errors and warnings here and there
    data, _ = sample(
        FlowType.CGPEM, 400, errors=["field.date", "cgpem.correspondant_nom_empty", "field.nir"]
    )
    for canonical, spelled in (
        (b"prenom>", b"Pr\xe9nom>"),
        (b"date-decision>", b"Date-d\xe9cision>"),
    ):
        data = data.replace(canonical, spelled)

    # When validated with the spelled fast path, and with every record renamed in Python
    fast = check(data, departement="62", expected_type=FlowType.CGPEM)
    monkeypatch.setattr(records_module, "spelled_clean_record_schema", lambda *args: None)
    slow = check(data, departement="62", expected_type=FlowType.CGPEM)

    # Then the reports are the same
    assert fast.issues == slow.issues and fast.nature_counts == slow.nature_counts
    assert fast.error_count == 1 and fast.record_count == 400
    assert {i.value for i in fast.issues if i.rule is Rule.STRUCTURE_SPELLING} == {
        "Prénom",
        "Date-décision",
    }


def test_past_a_thousand_spellings_the_others_are_unexpected_elements(sample: Sample) -> None:
    # Given a file whose every record spells <nom-naissance> its own way (memory stays bounded)
    data, _ = sample(FlowType.CGPEM, 1005)
    parts = data.split(b"<nom-naissance>")
    text = parts[0]
    for number, part in enumerate(parts[1:]):
        letters = iter(range(12))  # the 12 letters of nom-naissance, one bit each
        variant = "".join(
            c.upper() if c != "-" and number >> next(letters) & 1 else c for c in "nom-naissance"
        ).encode()
        variant = variant if number else b"Nom-naissance"
        text += b"<" + variant + b">" + part.replace(b"</nom-naissance>", b"</" + variant + b">", 1)

    # When it is validated
    report = check(text, departement="62", expected_type=FlowType.CGPEM)

    # Then a thousand spellings are learnt, the next ones refused as elements not ours
    assert report.rule_counts[Rule.STRUCTURE_SPELLING.value] == 1000
    assert not report.is_valid
    assert {i.rule for i in report.errors} <= {
        Rule.STRUCTURE_UNEXPECTED_ELEMENT,
        Rule.STRUCTURE_MISSING_ELEMENT,
        Rule.XML_SCHEMA,
    }
