"""The catalogue of fiches: forms described as data files, checked against a JSON Schema.

Framework-free (no Flask, no SQLAlchemy). Each `*.json` file of `portal/fiches/catalogue/`
(and of the directories named by `FILR_FICHES_CATALOGUE_DIRS`) describes one version of one
form: its blocks in order, their fields and notices, who may send and receive it, and the
départements where it is offered. Adding or correcting a form is a data change: no Python.

`load_catalogue()` refuses a catalogue with a precise French error naming the file and the
field (`CatalogueError`): the application factory calls it, so that a wrong file stops the
start-up instead of a fiche failing later; a test loads the shipped files on every CI run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

BUILTIN_DIR = Path(__file__).resolve().parent / "catalogue"
SCHEMA_FILE = Path(__file__).resolve().parent / "schema.json"

FIELD_TYPES = (
    "identity", "date", "phone", "email", "france_travail_id", "caf_id", "choice",
    "multiple_choice", "yes_no", "number", "organisation", "person", "attachment", "address",
    "acknowledgement",
)  # fmt: skip

VARIANT_LABELS = {
    "accord_tacite": "Accord tacite",
    "bilaterale": "Bilatérale",
    "simple": "Fiche",
}


class CatalogueError(ValueError):
    """A form file of the catalogue is malformed (French message naming the file and field)."""


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Condition:
    """`field` equals `equals` (a yes/no, a choice), or the multiple choice `field` holds
    `contains`; with neither, the field is answered (yes, or not empty)."""

    field: str
    equals: str | bool | int | None = None
    contains: str | None = None


@dataclass(frozen=True)
class Field:
    id: str
    type: str
    label: str
    hint: str | None = None
    required: bool = False
    required_if: Condition | None = None
    enabled_if: Condition | None = None
    choices: tuple[Choice, ...] = ()
    min: int | None = None
    max: int | None = None
    org_kinds: tuple[str, ...] = ()
    organisation_field: str | None = None

    def choice_label(self, value: str) -> str:
        """The label of one of its choices (the value itself if it is not one of them)."""
        return next((c.label for c in self.choices if c.value == value), value)


@dataclass(frozen=True)
class Notice:
    text: str
    id: str | None = None
    emphasis: bool = False


@dataclass(frozen=True)
class Block:
    id: str
    title: str
    items: tuple[Field | Notice, ...]
    filled_by: str = "sender"

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(i for i in self.items if isinstance(i, Field))


@dataclass(frozen=True)
class Form:
    """One version of one form."""

    id: str
    version: int
    title: str
    variant: str
    senders: tuple[str, ...]
    recipients: tuple[str, ...]
    blocks: tuple[Block, ...]
    short_title: str | None = None
    description: str | None = None
    forward_to: tuple[str, ...] = ()
    departements: frozenset[str] | None = None
    person_identity: str | None = None
    person_birth_date: str | None = None
    source: str = ""

    @property
    def key(self) -> str:
        """`id@version`: how a fiche names the form it was filled with."""
        return f"{self.id}@{self.version}"

    @property
    def name(self) -> str:
        """What lists show."""
        return self.short_title or self.title

    @property
    def has_decision(self) -> bool:
        """A bilatérale fiche waits for the receiving side's decision."""
        return self.variant == "bilaterale"

    def sender_blocks(self) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.filled_by == "sender")

    def fields(self, filled_by: str | None = "sender") -> Iterator[Field]:
        for block in self.blocks:
            if filled_by is None or block.filled_by == filled_by:
                yield from block.fields

    def field(self, field_id: str) -> Field | None:
        return next((f for f in self.fields(None) if f.id == field_id), None)

    def enabled_in(self, departement: str) -> bool:
        return self.departements is None or departement in self.departements


@dataclass(frozen=True)
class Catalogue:
    """Every form, every version; the newest version of each is the one offered."""

    forms: Mapping[str, Form] = field(default_factory=dict)  # by key id@version

    def get(self, key: str) -> Form | None:
        return self.forms.get(key)

    def latest(self, form_id: str) -> Form | None:
        versions = [f for f in self.forms.values() if f.id == form_id]
        return max(versions, key=lambda f: f.version) if versions else None

    def current(self) -> list[Form]:
        """The newest version of each form, by title."""
        ids = sorted({f.id for f in self.forms.values()})
        forms = [self.latest(i) for i in ids]
        return sorted((f for f in forms if f is not None), key=lambda f: f.title)

    def offered(self, departement: str, sender_kind: str) -> list[Form]:
        """The forms an organisation of *sender_kind* may send in *departement*."""
        return [f for f in self.current() if f.enabled_in(departement) and sender_kind in f.senders]


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _where(path: Iterable[Any], data: Any) -> str:
    """`blocs[2] « identification » > éléments[3] (champ « caf »)`: where an error is."""
    parts: list[str] = []
    node = data
    for step in path:
        node = node[step] if isinstance(node, (list, dict)) else None
        if isinstance(step, int):
            name = node.get("id") if isinstance(node, dict) else None
            parts[-1] = f"{parts[-1]}[{step + 1}]" + (f" « {name} »" if name else "")
        else:
            parts.append({"blocks": "blocs", "items": "éléments"}.get(str(step), str(step)))
    return " > ".join(parts) or "racine"


def _schema_message(error: jsonschema.ValidationError) -> str:
    validator = error.validator
    if validator == "required":
        missing = [p for p in error.validator_value if p not in (error.instance or {})]
        return f"propriété obligatoire absente : « {missing[0] if missing else '?'} »"
    if validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        shown = json.dumps(error.instance, ensure_ascii=False)
        return f"valeur inconnue {shown} (attendu : {allowed})"
    if validator == "additionalProperties":
        return f"propriété inconnue ({error.message.split('(')[-1].rstrip(')')})"
    if validator == "oneOf":
        # A block item: a notice or a field. Name the field's own error when it is one.
        best = None
        for sub in error.context or ():
            if "notice" in (error.instance or {}) and sub.relative_schema_path[0] == 0:
                best = best or sub
            if "notice" not in (error.instance or {}) and sub.relative_schema_path[0] == 1:
                best = best or sub
        if best is not None:
            return _schema_message(best)
        return "élément qui n'est ni un texte (notice) ni un champ"
    if validator in ("minLength", "minItems"):
        return "valeur vide"
    if validator == "pattern":
        return f"valeur mal formée {json.dumps(error.instance, ensure_ascii=False)}"
    if validator == "type":
        return f"type attendu : {error.validator_value}"
    return str(error.message)


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    if error.validator == "oneOf" and error.context:
        item = error.instance if isinstance(error.instance, dict) else {}
        branch = 0 if "notice" in item else 1
        subs = [s for s in error.context if s.relative_schema_path[0] == branch]
        if subs:
            return _deepest(min(subs, key=lambda s: len(s.absolute_path)))
    return error


def parse_form(data: Any, source: str) -> Form:
    """Check one file's content against the schema and the catalogue's rules; build the form."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.path)))
    if errors:
        error = _deepest(errors[0])
        raise CatalogueError(
            f"Catalogue des fiches, fichier {source} : {_where(error.absolute_path, data)} : "
            f"{_schema_message(error)}."
        )
    seen: set[str] = set()  # field ids (block ids have their own namespace)
    seen_blocks: set[str] = set()
    blocks: list[Block] = []

    def refuse(where: str, message: str) -> CatalogueError:
        return CatalogueError(f"Catalogue des fiches, fichier {source} : {where} : {message}.")

    for block in data["blocks"]:
        if block["id"] in seen_blocks:
            raise refuse(f"bloc « {block['id']} »", "identifiant déjà utilisé dans ce formulaire")
        seen_blocks.add(block["id"])
        items: list[Field | Notice] = []
        for item in block["items"]:
            if "notice" in item:
                items.append(Notice(item["notice"], item.get("id"), item.get("emphasis", False)))
                continue
            if item["id"] in seen:
                raise refuse(
                    f"champ « {item['id']} »", "identifiant déjà utilisé dans ce formulaire"
                )
            seen.add(item["id"])
            values = [c["value"] for c in item.get("choices", ())]
            if len(set(values)) != len(values):
                raise refuse(f"champ « {item['id']} »", "deux choix ont la même valeur")
            items.append(
                Field(
                    id=item["id"],
                    type=item["type"],
                    label=item["label"],
                    hint=item.get("hint"),
                    required=item.get("required", False),
                    required_if=Condition(**item["required_if"]) if "required_if" in item else None,
                    enabled_if=Condition(**item["enabled_if"]) if "enabled_if" in item else None,
                    choices=tuple(Choice(**c) for c in item.get("choices", ())),
                    min=item.get("min"),
                    max=item.get("max"),
                    org_kinds=tuple(item.get("org_kinds", ())),
                    organisation_field=item.get("organisation_field"),
                )
            )
        blocks.append(
            Block(block["id"], block["title"], tuple(items), block.get("filled_by", "sender"))
        )
    form = Form(
        id=data["id"],
        version=data["version"],
        title=data["title"],
        short_title=data.get("short_title"),
        description=data.get("description"),
        variant=data["variant"],
        senders=tuple(data["senders"]),
        recipients=tuple(data["recipients"]),
        forward_to=tuple(data.get("forward_to", ())),
        departements=frozenset(data["departements"]) if "departements" in data else None,
        blocks=tuple(blocks),
        person_identity=data.get("person", {}).get("identity"),
        person_birth_date=data.get("person", {}).get("birth_date"),
        source=source,
    )
    _check_references(form, refuse)
    return form


def _check_references(form: Form, refuse: Any) -> None:
    by_id = {f.id: f for f in form.fields(None)}
    for f in by_id.values():
        for rule in ("required_if", "enabled_if"):
            condition = getattr(f, rule)
            if condition is None:
                continue
            other = by_id.get(condition.field)
            if other is None:
                raise refuse(f"champ « {f.id} » > {rule}", f"champ inconnu « {condition.field} »")
            if condition.contains is not None and condition.contains not in {
                c.value for c in other.choices
            }:
                raise refuse(
                    f"champ « {f.id} » > {rule}", f"choix inconnu « {condition.contains} »"
                )
            if (
                isinstance(condition.equals, str)
                and other.choices
                and condition.equals not in {c.value for c in other.choices}
            ):
                raise refuse(f"champ « {f.id} » > {rule}", f"choix inconnu « {condition.equals} »")
        if f.type == "person" and f.organisation_field is not None:
            org = by_id.get(f.organisation_field)
            if org is None or org.type != "organisation":
                raise refuse(
                    f"champ « {f.id} » > organisation_field",
                    f"« {f.organisation_field} » n'est pas un champ de type organisation",
                )
        if f.min is not None and f.max is not None and f.min > f.max:
            raise refuse(f"champ « {f.id} »", "min est plus grand que max")
    for attribute, wanted in (("person_identity", "identity"), ("person_birth_date", "date")):
        field_id = getattr(form, attribute)
        if field_id is not None and (field_id not in by_id or by_id[field_id].type != wanted):
            raise refuse(
                f"person > {attribute.removeprefix('person_')}",
                f"« {field_id} » n'est pas un champ de type {wanted}",
            )
    if form.has_decision and not any(b.filled_by == "recipient" for b in form.blocks):
        raise refuse(
            "blocks", "une fiche bilatérale a besoin d'un bloc de décision (filled_by: recipient)"
        )


def load_catalogue(directories: Sequence[Path] = ()) -> Catalogue:
    """Read the shipped forms, then those of *directories*; refuse the first malformed file."""
    forms: dict[str, Form] = {}
    for directory in (BUILTIN_DIR, *directories):
        if not directory.is_dir():
            raise CatalogueError(f"Catalogue des fiches : le dossier {directory} n'existe pas.")
        for path in sorted(directory.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CatalogueError(
                    f"Catalogue des fiches, fichier {path.name} : illisible ({e})."
                ) from e
            form = parse_form(data, path.name)
            if form.key in forms:
                raise CatalogueError(
                    f"Catalogue des fiches, fichier {path.name} : le formulaire « {form.id} » "
                    f"version {form.version} est déjà défini par {forms[form.key].source}."
                )
            forms[form.key] = form
    return Catalogue(forms)
