"""`filr flows validate|sample|rules` through click's runner: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal.cli.flows import flows

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
    _sample(runner, path, "--errors", "field.nir")

    result = runner.invoke(flows, ["validate", str(path), "--json"])

    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["is_valid"] is False
    assert report["issues"][0]["rule"] == "field.nir"
    assert report["record_count"] == 20


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
