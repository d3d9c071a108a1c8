"""`filr orgs stats AAAA-MM [--csv]`: the month's usage figures for the operator."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.cli.conftest import filr
from tests.factories import Factory
from tests.orgs.test_usage import StatsWorld, build_january


@pytest.fixture
def sw(factory: Factory) -> StatsWorld:
    """The cast of the usage statistics' tests."""
    return StatsWorld.build(factory)


def test_filr_orgs_stats_prints_the_month_and_its_csv(
    app: Flask, sw: StatsWorld, cli_env: object
) -> None:
    build_january(app, sw)
    out = filr(["orgs", "stats", "2027-01"]).output
    assert "Statistiques d'utilisation — janvier 2027" in out
    assert "CD 62 : 2 compte(s) actif(s), 3 connexion(s), 4 dépôt(s) envoyé(s)" in out
    text = filr(["orgs", "stats", "2027-01", "--csv"]).output
    assert text.startswith("\ufeffMois;Organisation;")
    one = filr(["orgs", "stats", "2027-01", "--csv", "--organisation", "CD 62"]).output
    assert len(one.strip().splitlines()) == 2
    bad = filr(["orgs", "stats", "2027-13"], code=2).output
    assert "mois invalide" in bad


def test_filr_orgs_stats_help_is_french(cli_env: object) -> None:
    out = filr(["orgs", "stats", "--help"]).output
    assert "Statistiques d'utilisation" in out and "CSV français" in out
