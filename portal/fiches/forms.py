"""The web side of a fiche's form: its HTML fields to the API's JSON values, and small forms.

The fields of a fiche come from the catalogue, so they are read here rather than declared as
WTForms classes; the values go through the same validator as the API's
(`portal.fiches.validator`). The decision and the forwarding are ordinary `PortalForm`s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wtforms import DateField, RadioField, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired

from portal.fiches.catalogue import Form
from portal.forms import PortalForm

_FR_DATE = re.compile(r"(\d{2})/(\d{2})/(\d{4})")
MAX_TEXT = 254


# A werkzeug MultiDict (request.form): `get` and `getlist`.
MultiDict = Any


def _text(data: MultiDict, name: str) -> str | None:
    value = data.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()[:MAX_TEXT]
    return value or None


def values_from_form(form: Form, data: MultiDict, filled_by: str = "sender") -> dict[str, Any]:
    """The JSON values of the posted HTML form (empty fields left out)."""
    values: dict[str, Any] = {}
    for f in form.fields(filled_by):
        name = f.id
        value: Any = None
        if f.type in ("identity", "address"):
            parts = (
                ("nom", "prenom") if f.type == "identity" else ("voie", "code_postal", "commune")
            )
            found = {p: _text(data, f"{name}-{p}") or "" for p in parts}
            value = found if any(found.values()) else None
        elif f.type == "date":
            raw = _text(data, name)
            match = _FR_DATE.fullmatch(raw or "")
            value = f"{match[3]}-{match[2]}-{match[1]}" if match else raw
        elif f.type == "multiple_choice":
            value = [v for v in dict.fromkeys(data.getlist(name)) if isinstance(v, str)] or None
        elif f.type == "yes_no":
            raw = _text(data, name)
            value = {"oui": True, "non": False}.get(raw or "", raw)
        elif f.type == "acknowledgement":
            value = True if _text(data, name) == "oui" else None
        elif f.type == "number":
            raw = _text(data, name)
            value = int(raw) if raw is not None and raw.isdigit() and len(raw) < 6 else raw
        elif f.type == "attachment":
            value = _text(data, name)  # the id of the PDF joined on the draft's page
        else:
            value = _text(data, name)
        if value is not None:
            values[f.id] = value
    return values


def form_state(form: Form, values: Mapping[str, Any]) -> dict[str, Any]:
    """What the HTML form shows back: the values as the inputs name them."""
    shown: dict[str, Any] = {}
    for f in form.fields(None):
        value = values.get(f.id)
        if value is None:
            continue
        if isinstance(value, dict):
            for part, text in value.items():
                shown[f"{f.id}-{part}"] = text
        elif f.type == "date" and isinstance(value, str) and len(value) == 10 and value[4] == "-":
            shown[f.id] = f"{value[8:10]}/{value[5:7]}/{value[0:4]}"
        elif f.type == "yes_no" and isinstance(value, bool):
            shown[f.id] = "oui" if value else "non"
        elif f.type == "acknowledgement":
            shown[f.id] = "oui" if value is True else ""
        else:
            shown[f.id] = value
    return shown


class DecisionForm(PortalForm):
    """The receiving side's decision on a bilatérale fiche."""

    entree_accompagnement = RadioField(
        "Entrée en accompagnement global",
        choices=[SelectChoice("oui", "OUI"), SelectChoice("non", "NON")],
        validators=[InputRequired(message="Choisissez OUI ou NON.")],
    )
    date_decision = DateField(
        "Date de la décision",
        format="%d/%m/%Y",
        validators=[InputRequired(message="Indiquez la date de la décision.")],
    )


class ForwardForm(PortalForm):
    """The SLAI forwards a fiche to a provider its département mandates."""

    provider = SelectField(
        "Prestataire mandaté",
        choices=[],
        validators=[InputRequired(message="Choisissez un prestataire.")],
    )
