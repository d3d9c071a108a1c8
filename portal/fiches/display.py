"""A fiche's values as a person reads them: French formats, choice labels, names for ids.

Framework-free: the screen (`templates/fiches/_body.html`) and the PDF render the rows this
module prepares, in the blocks' order, with the notices where the form puts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from portal.fiches.catalogue import Block, Field, Form, Notice
from portal.fiches.validator import is_enabled
from portal.formats import date_fr, number_fr

NOT_FILLED = "Non renseigné"


@dataclass(frozen=True)
class Row:
    """One line of a block: a notice (`label` None) or a field and its value(s)."""

    label: str | None
    text: str | None = None
    items: tuple[str, ...] = ()
    emphasis: bool = False
    field_id: str | None = None


@dataclass(frozen=True)
class RenderedBlock:
    id: str
    title: str
    rows: tuple[Row, ...]
    filled_by: str


def format_value(f: Field, value: Any, refs: Mapping[str, str]) -> str | tuple[str, ...]:
    """The French rendering of one value (a tuple for a multiple choice)."""
    if value is None or value == "" or value == []:
        return NOT_FILLED
    kind = f.type
    if kind == "identity":
        return f"{str(value.get('nom', '')).upper()} {value.get('prenom', '')}".strip()
    if kind == "address":
        return f"{value.get('voie', '')}, {value.get('code_postal', '')} {value.get('commune', '')}"
    if kind == "date":
        try:
            return date_fr(date.fromisoformat(value))
        except (TypeError, ValueError):
            return str(value)
    if kind == "choice":
        return f.choice_label(value)
    if kind == "multiple_choice":
        return tuple(f.choice_label(v) for v in value) or NOT_FILLED
    if kind == "yes_no":
        return "Oui" if value else "Non"
    if kind == "acknowledgement":
        return "Oui, la personne a été informée et a signé" if value else "Non"
    if kind == "number":
        return number_fr(value)
    if kind in ("organisation", "person", "attachment"):
        return refs.get(value, "Élément qui n'est plus disponible")
    return str(value)


def render(
    form: Form,
    values: Mapping[str, Any],
    refs: Mapping[str, str] | None = None,
    *,
    include_recipient_blocks: bool = True,
) -> list[RenderedBlock]:
    """The blocks of *form* filled with *values*; a field not enabled is left out."""
    refs = refs or {}
    result: list[RenderedBlock] = []
    for block in form.blocks:
        if block.filled_by == "recipient" and not include_recipient_blocks:
            continue
        result.append(_block(block, values, refs))
    return result


def _block(block: Block, values: Mapping[str, Any], refs: Mapping[str, str]) -> RenderedBlock:
    rows: list[Row] = []
    for item in block.items:
        if isinstance(item, Notice):
            rows.append(Row(None, item.text, emphasis=item.emphasis))
            continue
        if not is_enabled(item, values):
            continue
        shown = format_value(item, values.get(item.id), refs)
        if isinstance(shown, tuple):
            rows.append(Row(item.label, None, shown, field_id=item.id))
        else:
            rows.append(Row(item.label, shown, field_id=item.id))
    return RenderedBlock(block.id, block.title, tuple(rows), block.filled_by)
