"""The one list of département codes and the one pattern that the flows' schemas carry."""

from __future__ import annotations

import re

import pytest

from portal.orgs.departements import DEPARTEMENT_PATTERN, DEPARTEMENTS, is_departement_code


def test_the_pattern_accepts_exactly_the_listed_departements() -> None:
    pattern = re.compile(DEPARTEMENT_PATTERN)
    candidates = {f"{n:02d}" for n in range(100)} | {str(n) for n in range(900, 1000)}
    candidates |= {"2A", "2B", "2a", "20", "00"}

    accepted = {code for code in candidates if pattern.fullmatch(code)}

    assert accepted == set(DEPARTEMENTS)


@pytest.mark.parametrize("code", ["01", "19", "2A", "2B", "21", "62", "95", "971", "976"])
def test_departement_codes_are_recognised(code: str) -> None:
    assert is_departement_code(code)


@pytest.mark.parametrize("code", ["", "00", "20", "2a", "96", "970", "977", "62\n", " 62", "6"])
def test_other_strings_are_not_departement_codes(code: str) -> None:
    assert not is_departement_code(code)
