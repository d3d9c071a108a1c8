"""The data-protection contacts printed on a fiche, per département (data, not code).

The conventions' GDPR notice names "les coordonnées du délégué à la protection des données de
chaque partie" and the right to complain to the CNIL. The shipped file
(`portal/data/protection-donnees.json`) holds France Travail's delegate, the CNIL and a generic
line for a département without an entry; an operator adds each département's delegate (and may
correct the others) in the JSON file named by `FILR_DATA_PROTECTION_CONTACTS_FILE`, whose keys
replace the shipped ones. Framework-free; a malformed file is refused with a French error
naming the file and the key (`ContactsError`), at start-up (`portal.container`) and in CI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

BUILTIN_FILE = Path(__file__).resolve().parent.parent / "data" / "protection-donnees.json"
_SECTIONS = ("france_travail", "defaut_departement", "departements", "cnil")


class ContactsError(ValueError):
    """The contacts file is malformed (French message naming the file and the key)."""


@dataclass(frozen=True)
class Contact:
    """One party's data-protection contact: who, and how to reach them."""

    title: str
    details: str


@dataclass(frozen=True)
class Contacts:
    """Every contact of the file; `for_departement` picks those of one fiche."""

    france_travail: Contact
    default_departement: Contact
    departements: dict[str, Contact]
    cnil: Contact

    def for_departement(self, code: str, name: str) -> tuple[Contact, ...]:
        """The delegates of the two parties, then the CNIL, for a fiche of département *code*."""
        own = self.departements.get(code)
        if own is None:
            default = self.default_departement
            own = Contact(default.title.replace("{departement}", name), default.details)
        return (own, self.france_travail, self.cnil)


def _contact(source: Path, key: str, raw: Any) -> Contact:
    if not isinstance(raw, dict):
        raise ContactsError(f"{source} : « {key} » doit être un objet (titre, coordonnees).")
    unknown = sorted(set(raw) - {"titre", "coordonnees"})
    if unknown:
        raise ContactsError(f"{source} : « {key} » : clé inconnue « {unknown[0]} ».")
    for name in ("titre", "coordonnees"):
        value = raw.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ContactsError(f"{source} : « {key}.{name} » est obligatoire (texte non vide).")
    return Contact(raw["titre"].strip(), raw["coordonnees"].strip())


def _read(source: Path) -> dict[str, Any]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except OSError as e:
        raise ContactsError(f"{source} : lecture impossible ({e.strerror}).") from None
    except json.JSONDecodeError as e:
        raise ContactsError(f"{source} : JSON invalide (ligne {e.lineno}).") from None
    if not isinstance(data, dict):
        raise ContactsError(f"{source} : un objet JSON est attendu.")
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ContactsError(f"{source} : clé inconnue « {unknown[0]} ».")
    return data


@cache
def load_contacts(extra: Path | None = None) -> Contacts:
    """The shipped contacts, each key replaced by *extra*'s (a département entry by code)."""
    sources = [(BUILTIN_FILE, _read(BUILTIN_FILE))]
    if extra is not None:
        sources.append((extra, _read(extra)))
    merged: dict[str, tuple[Path, Any]] = {}
    departements: dict[str, Contact] = {}
    for source, data in sources:
        for key, value in data.items():
            if key != "departements":
                merged[key] = (source, value)
                continue
            if not isinstance(value, dict):
                raise ContactsError(f"{source} : « departements » doit être un objet par code.")
            for code, raw in value.items():
                if not (isinstance(code, str) and 2 <= len(code) <= 3 and code.isalnum()):
                    raise ContactsError(f"{source} : code de département invalide « {code} ».")
                departements[code.upper()] = _contact(source, f"departements.{code}", raw)
    missing = [k for k in ("france_travail", "defaut_departement", "cnil") if k not in merged]
    if missing:
        raise ContactsError(f"{BUILTIN_FILE} : « {missing[0]} » est obligatoire.")

    def section(key: str) -> Contact:
        source, raw = merged[key]
        return _contact(source, key, raw)

    return Contacts(
        france_travail=section("france_travail"),
        default_departement=section("defaut_departement"),
        departements=departements,
        cnil=section("cnil"),
    )
