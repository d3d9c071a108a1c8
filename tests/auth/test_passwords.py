"""The password policy and argon2id storage."""

from __future__ import annotations

import time

import pytest

from portal.auth.passwords import MAX_PASSWORD_LENGTH, Argon2, password_problems


@pytest.mark.parametrize(
    ("password", "privileged", "ok"),
    [
        ("sept mots pour une phrase", False, True),
        ("onze caract", False, False),  # 11 characters
        ("douze carac!", False, True),  # 12 characters, no composition rule required
        ("quinze caractèr", True, False),  # 15 characters: too short for a privileged role
        ("seize caractères", True, True),
        ("a" * 40, False, False),  # repetitive
    ],
)
def test_length_rules_depend_on_the_role(password: str, privileged: bool, ok: bool) -> None:
    assert (password_problems(password, privileged=privileged) == []) is ok


@pytest.mark.parametrize(
    "password",
    [
        "azertyuiop123",
        "motdepasse2024!",
        "Marseille13013!",
        "qwerty123456",
        "1qaz2wsx3edc",
        "Jetaime!!2025",
        "MotDePasse123456",
        "123456789012",
    ],
)
def test_common_passwords_french_included_are_refused(password: str) -> None:
    problems = password_problems(password, privileged=False)
    assert any("courant" in p for p in problems), problems


def test_password_may_not_contain_name_email_or_organisation() -> None:
    kwargs = {
        "full_name": "Hélène Lefebvre",
        "email": "h.lefebvre@cd62.fr",
        "organisation": "Conseil départemental du Pas-de-Calais",
    }
    assert any(
        "nom" in p for p in password_problems("lefebvre est ma banque", privileged=False, **kwargs)
    )
    assert any(
        "nom" in p for p in password_problems("Helene aime les bateaux", privileged=False, **kwargs)
    )
    assert any(
        "organisation" in p
        for p in password_problems("pasdecalais forever 1", privileged=False, **kwargs)
    )
    assert password_problems("un voilier sur la manche", privileged=False, **kwargs) == []


def test_argon2id_is_the_stored_algorithm() -> None:
    hasher = Argon2(time_cost=1, memory_kib=8)
    stored = hasher.hash("sept mots pour une phrase")
    assert stored.startswith("$argon2id$")
    assert hasher.verify(stored, "sept mots pour une phrase")
    assert not hasher.verify(stored, "sept mots pour une phrasE")


def test_over_long_password_is_refused_before_hashing() -> None:
    hasher = Argon2(time_cost=4, memory_kib=65536)
    stored = hasher.hash("x" * 20 + " sept mots")
    start = time.perf_counter()
    assert not hasher.verify(stored, "y" * (MAX_PASSWORD_LENGTH + 1))
    # One real verification with these parameters costs tens of milliseconds; a refused
    # oversized input costs nothing.
    assert time.perf_counter() - start < 0.005
    assert password_problems("z" * 2000, privileged=False) == [
        f"Le mot de passe ne doit pas dépasser {MAX_PASSWORD_LENGTH} caractères."
    ]
    with pytest.raises(ValueError):
        hasher.hash("z" * 2000)
