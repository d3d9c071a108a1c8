"""`validate(form, values)`: the one check of a fiche's data, for the web and the API alike.

Framework-free. *values* is the JSON object of the API (the web form is converted to it by
`portal.fiches.forms`): one member per field id, shaped by the field's type:

| type | value |
|---|---|
| identity | `{"nom": "…", "prenom": "…"}` |
| address | `{"voie": "…", "code_postal": "62000", "commune": "…"}` |
| date | `"AAAA-MM-JJ"` |
| phone, email, france_travail_id, caf_id | a string |
| choice | one of the choices' values |
| multiple_choice | a list of them |
| yes_no, acknowledgement | `true` / `false` (an acknowledgement must be `true`) |
| number | an integer |
| organisation, person, attachment | an id (32 hexadecimal characters) |

No free text: names, streets and towns are letters and a few signs, of bounded length.
Returns the errors per field id (French), empty when the values are acceptable; a field that
is not enabled (`enabled_if`) must be absent, and is never required.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import date
from typing import Any

from portal.fiches.catalogue import Condition, Field, Form

_NAME = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿŒœ' \-]{1,60}")
_STREET = re.compile(r"[0-9A-Za-zÀ-ÖØ-öø-ÿŒœ',. \-]{1,100}")
_POSTCODE = re.compile(r"(0[1-9]|[1-8][0-9]|9[0-8])[0-9]{3}")
_PHONE = re.compile(r"(\+33 ?[1-9]|0[1-9])( ?[0-9]{2}){4}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+")
_FT_ID = re.compile(r"[0-9]{7}[0-9A-Z]")
_CAF_ID = re.compile(r"[0-9]{7}")
_ID = re.compile(r"[0-9a-f]{32}")

REQUIRED = "Ce champ est obligatoire."
NOT_ENABLED = "Ce champ ne peut être rempli que si la case dont il dépend est cochée."
REFERENCES = ("organisation", "person", "attachment")


def condition_holds(condition: Condition, values: Mapping[str, Any]) -> bool:
    """Is *condition* true of *values*?"""
    value = values.get(condition.field)
    if condition.contains is not None:
        return isinstance(value, list) and condition.contains in value
    if condition.equals is not None:
        return value == condition.equals
    return value not in (None, "", [], False)


def is_enabled(f: Field, values: Mapping[str, Any]) -> bool:
    return f.enabled_if is None or condition_holds(f.enabled_if, values)


def is_required(f: Field, values: Mapping[str, Any]) -> bool:
    if not is_enabled(f, values):
        return False
    if f.type == "acknowledgement":
        return True
    return f.required or (f.required_if is not None and condition_holds(f.required_if, values))


def _empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(v in (None, "") for v in value.values())
    return value is None or value == "" or value == [] or value is False


def _check(f: Field, value: Any, *, today: date) -> str | None:
    kind = f.type
    if kind == "identity":
        if not isinstance(value, dict) or set(value) - {"nom", "prenom"}:
            return "Indiquez le nom et le prénom."
        for part, label in (("nom", "nom"), ("prenom", "prénom")):
            text = value.get(part)
            if not isinstance(text, str) or not text.strip():
                return f"Indiquez le {label}."
            if not _NAME.fullmatch(text.strip()):
                return (
                    f"Le {label} ne peut contenir que des lettres, espaces, tirets et "
                    "apostrophes (60 au plus)."
                )
        return None
    if kind == "address":
        if not isinstance(value, dict) or set(value) - {"voie", "code_postal", "commune"}:
            return "Indiquez la voie, le code postal et la commune."
        voie, code, commune = value.get("voie"), value.get("code_postal"), value.get("commune")
        if not isinstance(voie, str) or not _STREET.fullmatch(voie.strip()):
            return "Indiquez le numéro et la voie (lettres, chiffres, 100 caractères au plus)."
        if not isinstance(code, str) or not _POSTCODE.fullmatch(code.strip()):
            return "Le code postal compte 5 chiffres, par exemple 62000."
        if not isinstance(commune, str) or not _NAME.fullmatch(commune.strip()):
            return "Indiquez la commune (lettres, 60 caractères au plus)."
        return None
    if kind == "date":
        try:
            day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
        except ValueError:
            day = None
        if day is None:
            return "La date n'est pas valide : jj/mm/aaaa (AAAA-MM-JJ dans l'API)."
        if not date(1900, 1, 1) <= day <= date(today.year + 2, 12, 31):
            return "La date n'est pas vraisemblable."
        return None
    if kind == "phone":
        if not isinstance(value, str) or not _PHONE.fullmatch(value.strip().replace(".", " ")):
            return "Le numéro de téléphone n'est pas valide, par exemple 03 21 00 00 00."
        return None
    if kind == "email":
        if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value.strip()):
            return "L'adresse e-mail n'est pas valide, par exemple nom@exemple.fr."
        return None
    if kind == "france_travail_id":
        if not isinstance(value, str) or not _FT_ID.fullmatch(value.strip().upper()):
            return (
                "L'identifiant France Travail compte 8 caractères : 7 chiffres puis un "
                "chiffre ou une lettre."
            )
        return None
    if kind == "caf_id":
        if not isinstance(value, str) or not _CAF_ID.fullmatch(value.strip()):
            return "Le numéro allocataire CAF compte 7 chiffres."
        return None
    if kind == "choice":
        if value not in {c.value for c in f.choices}:
            return "Choisissez une des options proposées."
        return None
    if kind == "multiple_choice":
        allowed = {c.value for c in f.choices}
        if (
            not isinstance(value, list)
            or not all(v in allowed for v in value)
            or len(set(value)) != len(value)
        ):
            return "Choisissez parmi les options proposées."
        return None
    if kind in ("yes_no", "acknowledgement"):
        if not isinstance(value, bool):
            return "Répondez par oui ou par non."
        if kind == "acknowledgement" and value is not True:
            return "Cette case doit être cochée pour envoyer la fiche."
        return None
    if kind == "number":
        if not isinstance(value, int) or isinstance(value, bool):
            return "Indiquez un nombre entier."
        low = f.min if f.min is not None else 0
        high = f.max if f.max is not None else 999
        if not low <= value <= high:
            return f"Indiquez un nombre entre {low} et {high}."
        return None
    if kind in ("organisation", "person", "attachment"):
        if not isinstance(value, str) or not _ID.fullmatch(value):
            return "Choisissez une des options proposées."
        return None
    return "Type de champ inconnu."  # the catalogue's schema refuses it first


def validate(
    form: Form,
    values: Mapping[str, Any],
    *,
    filled_by: str = "sender",
    allowed: Mapping[str, Collection[str]] | None = None,
    today: date | None = None,
) -> dict[str, str]:
    """Errors per field id (French), empty when *values* fill *form*'s *filled_by* blocks.

    *allowed* narrows organisation, person and attachment fields to the ids the caller knows
    to be acceptable (organisations of the space, their members, the fiche's attachments).
    """
    today = today or date.today()
    errors: dict[str, str] = {}
    fields = {f.id: f for f in form.fields(filled_by)}
    if not isinstance(values, Mapping):
        return {"": "Les données de la fiche doivent être un objet JSON."}
    for key in values:
        if key not in fields:
            errors[key] = "Ce champ n'existe pas dans ce formulaire."
    for f in fields.values():
        value = values.get(f.id)
        empty = value is None if f.type == "yes_no" else _empty(value)
        if not is_enabled(f, values):
            if not empty:
                errors[f.id] = NOT_ENABLED
            continue
        if empty:
            if is_required(f, values):
                errors[f.id] = (
                    "Cette case doit être cochée pour envoyer la fiche."
                    if f.type == "acknowledgement"
                    else REQUIRED
                )
            continue
        message = _check(f, value, today=today)
        if (
            message is None
            and allowed is not None
            and f.type in REFERENCES
            and value not in allowed.get(f.id, ())
        ):
            message = "Choisissez une des options proposées."
        if message is not None:
            errors[f.id] = message
    return errors


def clean(form: Form, values: Mapping[str, Any], *, filled_by: str = "sender") -> dict[str, Any]:
    """The values as stored: known fields only, empty ones dropped, text trimmed."""
    result: dict[str, Any] = {}
    for f in form.fields(filled_by):
        value = values.get(f.id)
        if value is None or (f.type != "yes_no" and _empty(value)):
            continue
        if isinstance(value, str):
            value = value.strip()
            if f.type == "france_travail_id":
                value = value.upper()
        elif isinstance(value, dict):
            value = {k: v.strip() if isinstance(v, str) else v for k, v in value.items()}
        result[f.id] = value
    return result
