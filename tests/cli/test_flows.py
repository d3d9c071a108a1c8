"""`filr flows validate|sample|rules` through click's runner: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal.cli.flows import flows
from portal.flows.core import Rule

CORPUS = Path(__file__).parents[1] / "flows" / "corpus"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _sample(runner: CliRunner, path: Path, *extra: str) -> None:
    result = runner.invoke(
        flows,
        [
            "sample",
            "--type",
            "CGPEM",
            "--records",
            "20",
            "--seed",
            "1",
            "--date-reference",
            "2026-10-01",
            "--output",
            str(path),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output


def test_a_valid_file_exits_0(runner: CliRunner) -> None:
    result = runner.invoke(
        flows, ["validate", str(CORPUS / "cgpem_exemple_convention.xml"), "--departement", "62"]
    )

    assert result.exit_code == 0, result.output
    assert "Résultat : VALIDE" in result.output
    assert "Dossiers : 1" in result.output


def test_an_invalid_file_exits_1_and_lists_every_issue(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cgpem.xml"
    _sample(runner, path, "--errors", "cgpem.nir_or_pe_id,fin.nb_dossier,field.date")

    result = runner.invoke(flows, ["validate", str(path), "--type", "cgpem"])

    assert result.exit_code == 1
    assert "REFUSÉ — 3 erreur(s)" in result.output
    for rule in ("cgpem.nir_or_pe_id", "fin.nb_dossier", "field.date"):
        assert f"[{rule}]" in result.output
    assert "ligne " in result.output and "dossier " in result.output


def test_json_output_is_the_report_dict(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "cgpem.xml"
    _sample(runner, path, "--errors", "field.identifiant_pe")

    result = runner.invoke(flows, ["validate", str(path), "--json"])

    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["is_valid"] is False
    assert report["issues"][0]["rule"] == "field.identifiant_pe"
    assert report["record_count"] == 20
    assert report["readings"] == {
        "entete/periodicite": "M : mensuel (tableau des flux)",
        "fin/date-reference": "date de l'en-tête, premier du mois (les deux lectures concordent)",
    }


def test_a_warning_of_ours_does_not_refuse_the_file(runner: CliRunner, tmp_path: Path) -> None:
    # Given a CGPEM whose NIR does not look like one (our plausibility check, not the table's)
    path = tmp_path / "cgpem.xml"
    _sample(runner, path, "--errors", "field.nir")

    # When it is checked
    result = runner.invoke(flows, ["validate", str(path), "--json"])

    # Then it is valid, with the warning
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["is_valid"] is True and report["warning_count"] == 1
    assert [i["rule"] for i in report["issues"]] == ["field.nir"]
    assert report["issues"][0]["severity"] == "warning"


def test_rules_lists_each_rule_with_its_level_and_source(runner: CliRunner) -> None:
    result = runner.invoke(flows, ["rules"])

    assert result.exit_code == 0
    lines = result.output.splitlines()
    nir = lines.index(next(line for line in lines if line.startswith("field.nir ")))
    assert "avertissement" in lines[nir] and "source : nous" in lines[nir + 1]
    fin = lines.index(next(line for line in lines if line.startswith("fin.date_reference ")))
    assert "erreur" in lines[fin] and "source : convention" in lines[fin + 1]
    assert sum(line.strip().startswith("source : ") for line in lines) == len(Rule)


def test_calendar_prints_the_deadline_with_the_offset_of_the_departement(
    runner: CliRunner,
) -> None:
    # Given Guadeloupe in November 2026 (UTC-4, no summer time), When the month is asked for
    result = runner.invoke(flows, ["calendar", "971", "2026-11"])

    # Then the CGPEM deadline is 17:00 there (21:00 UTC), not 17:00 in Paris
    assert result.exit_code == 0, result.output
    assert "CGPEM  échéance     2026-11-20T17:00:00-04:00" in result.output
    assert "PECGM  disponible   2026-11-16" in result.output
    assert "PECDH  semaine 2026-W47 du 2026-11-16 au 2026-11-22, au plus tard 2026-11-20" in (
        result.output
    )
    paris = runner.invoke(flows, ["calendar", "62", "2026-11"])
    assert "2026-11-20T17:00:00+01:00" in paris.output


@pytest.mark.parametrize("arguments", [["20", "2026-11"], ["62", "2026-13"], ["62", "novembre"]])
def test_calendar_refuses_an_unknown_departement_or_month(
    runner: CliRunner, arguments: list[str]
) -> None:
    result = runner.invoke(flows, ["calendar", *arguments])

    assert result.exit_code == 2


def test_the_csv_report_can_be_written(runner: CliRunner, tmp_path: Path) -> None:
    path, csv_path = tmp_path / "cgpem.xml", tmp_path / "rapport.csv"
    _sample(runner, path, "--errors", "field.code")

    result = runner.invoke(flows, ["validate", str(path), "--csv", str(csv_path)])

    assert result.exit_code == 1
    assert "field.code" in csv_path.read_text(encoding="utf-8-sig")


def test_a_missing_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(flows, ["validate", str(tmp_path / "absent.xml")])

    assert result.exit_code == 2


def test_an_unreadable_file_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(flows, ["validate", str(tmp_path)])

    assert result.exit_code == 2


def test_a_bad_departement_or_type_is_a_usage_error(runner: CliRunner) -> None:
    example = str(CORPUS / "cgpem_exemple_convention.xml")

    assert runner.invoke(flows, ["validate", example, "--departement", "20"]).exit_code == 2
    assert runner.invoke(flows, ["validate", example, "--type", "XYZ"]).exit_code == 2


def test_the_space_departement_is_checked(runner: CliRunner) -> None:
    example = str(CORPUS / "cgpem_exemple_convention.xml")

    result = runner.invoke(flows, ["validate", example, "--departement", "59"])

    assert result.exit_code == 1
    assert "entete.departement_espace" in result.output


def test_sample_reports_where_it_injected_errors(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "pecgm.xml"

    result = runner.invoke(
        flows,
        [
            "sample",
            "--type",
            "PECGM",
            "--records",
            "5",
            "--departement",
            "2B",
            "--errors",
            "field.code_rome",
            "--output",
            str(path),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "erreur injectée [field.code_rome]" in result.output
    assert path.read_bytes().startswith(b'<?xml version="1.0" encoding="ISO-8859-1"?>')


def test_sample_refuses_an_unknown_rule(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        flows,
        [
            "sample",
            "--type",
            "PECDH",
            "--records",
            "5",
            "--errors",
            "cgpem.nir_or_pe_id",
            "--output",
            str(tmp_path / "x.xml"),
        ],
    )

    assert result.exit_code == 2


def test_rules_lists_the_codes(runner: CliRunner) -> None:
    result = runner.invoke(flows, ["rules"])

    assert result.exit_code == 0
    assert "cgpem.nir_or_pe_id" in result.output and "avertissement" in result.output


def test_the_xsd_files_can_be_exported(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(flows, ["xsd", "--output", str(tmp_path / "xsd")])

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "xsd").iterdir()) == [
        "CGPEM_001_0.xsd",
        "PECDH_001_0.xsd",
        "PECGM_001_0.xsd",
    ]
