"""Password hashing (argon2id) and the password policy of the foundation issue."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from portal.text import fold

MAX_PASSWORD_LENGTH = 1024
MIN_LENGTH = 12
MIN_LENGTH_PRIVILEGED = 16

# Stop words dropped from organisation names before looking for them inside a password.
_ORG_STOP_WORDS = frozenset(
    [
        "de",
        "du",
        "des",
        "la",
        "le",
        "les",
        "et",
        "en",
        "au",
        "aux",
        "sur",
        "pour",
        "d",
        "l",
        "conseil",
        "departement",
        "departemental",
        "agence",
        "association",
        "france",
        "travail",
    ]
)


# Keyboard rows and counting: "123456789012" or "azertyuiopqs" are as weak as any listed word.
_SEQUENCES = (
    "0123456789012345678901234567890",
    "9876543210987654321098765432109",
    "azertyuiopqsdfghjklmwxcvbn",
    "qwertyuiopasdfghjklzxcvbnm",
    "abcdefghijklmnopqrstuvwxyz",
)


class Argon2:
    """argon2id hasher; parameters come from the settings (tests make them cheap)."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65536) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID
        )
        # Unknown accounts verify against this hash so that timing matches a real account.
        self._dummy = self._hasher.hash("dummy password for constant timing")

    def hash(self, password: str) -> str:
        """Hash *password* (length already checked by the policy)."""
        if len(password) > MAX_PASSWORD_LENGTH:
            raise ValueError("password too long")
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when *password* matches *stored*; costs one hash even when *stored* is None."""
        if len(password) > MAX_PASSWORD_LENGTH:
            # Checked before hashing: a megabyte password must not cost a megabyte of argon2.
            return False
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when *stored* was made with older parameters."""
        return self._hasher.check_needs_rehash(stored)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """Well-known passwords: zxcvbn's leak-derived list and our French list."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words = {fold(w) for w in FREQUENCY_LISTS["passwords"]}
    text = resources.files("portal").joinpath("data/common-passwords-fr.txt").read_text("utf-8")
    words.update(fold(line.strip()) for line in text.splitlines() if line and line[0] != "#")
    return frozenset(words)


def _core(password: str) -> str:
    """The password without leading/trailing digits and symbols ("Azerty2024!" -> "azerty")."""
    return re.sub(r"^[\W\d_]+|[\W\d_]+$", "", fold(password))


def _tokens(text: str, minimum: int) -> set[str]:
    return {t for t in re.split(r"[\W_]+", fold(text)) if len(t) >= minimum}


def password_problems(
    password: str,
    *,
    privileged: bool,
    full_name: str = "",
    email: str = "",
    organisation: str = "",
) -> list[str]:
    """French messages explaining why *password* is refused (empty when acceptable)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return [f"Le mot de passe ne doit pas dépasser {MAX_PASSWORD_LENGTH} caractères."]
    problems: list[str] = []
    minimum = MIN_LENGTH_PRIVILEGED if privileged else MIN_LENGTH
    if len(password) < minimum:
        problems.append(f"Le mot de passe doit contenir au moins {minimum} caractères.")
    folded = fold(password)
    compact = re.sub(r"[\W_]+", "", folded)
    common = common_passwords()
    if (
        folded in common
        or compact in common
        or _core(password) in common
        or any(compact in seq for seq in _SEQUENCES)
    ):
        problems.append("Ce mot de passe est trop courant : choisissez-en un autre.")
    elif len(set(compact)) <= 2:
        problems.append("Ce mot de passe est trop répétitif : choisissez-en un autre.")
    local, _, domain = email.partition("@")
    personal = _tokens(full_name, 3) | _tokens(local, 3)
    if len(local) >= 3:
        personal.add(re.sub(r"[\W_]+", "", fold(local)))
    if any(token in compact or token in folded for token in personal):
        problems.append("Le mot de passe ne doit contenir ni votre nom ni votre adresse e-mail.")
    org_tokens = (_tokens(organisation, 4) | _tokens(domain.split(".")[0], 4)) - _ORG_STOP_WORDS
    if any(token in compact for token in org_tokens):
        problems.append("Le mot de passe ne doit pas contenir le nom de votre organisation.")
    return problems
