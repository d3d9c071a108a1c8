"""Declarative description of a flow's structure, from which both the XSD and the checks derive.

One `FlowSpec` per (flow type, version): a new structure of the convention is a new spec beside
the old one (see `registry.py`). The XSD files shipped in `xsd/` are rendered from these specs
(`python -m portal.flows.core.xsd`), and a test proves that they are in sync.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache

from portal.flows.core.rules import RecordRule, RecordValues, Rule, RuleContext, RuleHit, parse_date
from portal.flows.core.types import FlowType


class FieldKind(StrEnum):
    """The convention's formats: AN (alphanumeric), N (digits), dates aaaa-mm-jj."""

    TEXT = "AN"
    DIGITS = "N"
    DATE = "date"


@dataclass(frozen=True, slots=True)
class Advice:
    """A plausibility check of ours on a field: a warning, never a refusal.

    `pattern` must only narrow the field's own (error) pattern: the "clean" record schema uses
    it in its place, so that a record it accepts draws no warning either.
    """

    pattern: str
    rule: Rule
    hint: str  # French, completes "Le champ X …"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field (a leaf element holding text)."""

    name: str
    kind: FieldKind = FieldKind.TEXT
    max_length: int | None = None
    length: int | None = None  # fixed length (AN) or exact number of digits (N)
    required: bool = False
    codes: tuple[str, ...] = ()
    # Regex in the common subset of XSD and Python syntaxes, matched against the whole value.
    pattern: str | None = None
    rule: Rule | None = None  # rule reported for a code or pattern violation
    hint: str = ""  # French description of what the pattern expects
    label: str = ""
    is_nir: bool = False
    advice: Advice | None = None

    @property
    def allows_empty(self) -> bool:
        """Whether an empty element is valid."""
        return not self.required

    def describe(self) -> str:
        """The format in the convention's notation, e.g. `max 25 AN`, `3 N`, `aaaa-mm-jj`."""
        if self.kind is FieldKind.DATE:
            return "aaaa-mm-jj"
        if self.length is not None:
            return f"{self.length} {self.kind.value}"
        return f"max {self.max_length} {self.kind.value}"


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A group element holding fields and sub-groups in a fixed order."""

    name: str
    children: tuple[FieldSpec | GroupSpec, ...]
    required: bool = True
    label: str = ""
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {child.name: i for i, child in enumerate(self.children)})

    def position(self, name: str) -> int | None:
        """Index of the child named `name` in the expected order, or None if unknown."""
        return self._index.get(name)

    def fields(self, prefix: str = "") -> Iterator[tuple[str, FieldSpec]]:
        """Every field below this group with its path relative to the group's parent."""
        path = f"{prefix}{self.name}"
        for child in self.children:
            if isinstance(child, GroupSpec):
                yield from child.fields(f"{path}/")
            else:
                yield f"{path}/{child.name}", child


@dataclass(frozen=True, slots=True)
class Identity:
    """In `group`, a person is identified by `nir`, or by `code` and `identifier` together;
    `code` requires `identifier`. `nir` is the group's first field, the two others its last."""

    group: str
    nir: str
    code: str
    identifier: str


@dataclass(frozen=True, slots=True)
class CleanProfile:
    """What a record must look like for none of its flow's record rules to fire.

    Paths are relative to the record, e.g. `correspondant/nom`. The validator turns this into a
    stricter variant of the record's XSD type; a test proves, on mutated records, that every
    record it accepts is valid and breaks no record rule.
    """

    non_blank: tuple[str, ...] = ()  # present, with a character other than XML white space
    not_after_today: tuple[str, ...] = ()  # dates
    empty: tuple[str, ...] = ()  # absent or empty
    identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """Structure and rules of one flow type in one version of the convention."""

    flow_type: FlowType
    version: str
    entete: GroupSpec
    dossier: GroupSpec
    fin: GroupSpec
    record_rules: tuple[RecordRule, ...] = ()
    # (group, field) whose codes are counted for the sanity check, e.g. orientation/nature.
    breakdown: tuple[str, str] | None = None
    # Constraints under which no record rule can fire: records that meet them (checked in C by
    # a stricter XSD derived from this spec) skip the Python rules. See xsd.clean_record_schema.
    clean: CleanProfile | None = None

    @property
    def xsd_name(self) -> str:
        """File name of the XSD inside the package, e.g. `CGPEM_001_0.xsd`."""
        return f"{self.flow_type.value}_{self.version.replace(',', '_')}.xsd"


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_DIGITS = re.compile("[0-9]+")
_DATE_SHAPE = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}")
_XML_SPACE = " \t\r\n"


def check_field(spec: FieldSpec, text: str) -> tuple[Rule, str] | None:
    """The first rule that `text` breaks for this field, with a French message; None if valid.

    Mirrors the XSD rendered from the same spec exactly (the XSD is checked first; this gives
    the precise French message and must agree with it, which a test proves).
    """
    name = spec.name
    if text == "":
        if spec.required:
            return Rule.FIELD_REQUIRED, f"Le champ {name} est obligatoire."
        return None
    if spec.kind is FieldKind.DATE:
        # xs:date collapses white space before checking the value: do the same.
        stripped = text.strip(_XML_SPACE)
        if _DATE_SHAPE.fullmatch(stripped) is None:
            return (
                Rule.FIELD_DATE,
                f"Le champ {name} doit être une date au format aaaa-mm-jj (par exemple "
                "2026-11-01).",
            )
        if parse_date(stripped) is None:
            return Rule.FIELD_DATE, f"Le champ {name} contient une date qui n'existe pas."
    elif spec.kind is FieldKind.DIGITS:
        size = spec.length or spec.max_length or 0
        if _DIGITS.fullmatch(text) is None or (
            len(text) != size if spec.length is not None else len(text) > size
        ):
            if spec.length is not None:
                expected = f"exactement {spec.length} chiffres"
            else:
                expected = f"de 1 à {size} chiffres"
            return Rule.FIELD_DIGITS, f"Le champ {name} doit comporter {expected}."
    else:
        if spec.length is not None and len(text) != spec.length:
            return (
                Rule.FIELD_LENGTH,
                f"Le champ {name} doit comporter exactement {spec.length} caractères "
                f"(ici {len(text)}).",
            )
        if spec.max_length is not None and len(text) > spec.max_length:
            return (
                Rule.FIELD_MAX_LENGTH,
                f"Le champ {name} ne doit pas dépasser {spec.max_length} caractères "
                f"(ici {len(text)}).",
            )
    if spec.codes and text not in spec.codes:
        listed = ", ".join(spec.codes) if len(spec.codes) <= 12 else "voir la documentation"
        return (
            spec.rule or Rule.FIELD_CODE,
            f"Le champ {name} contient une valeur hors liste (valeurs acceptées : {listed}).",
        )
    if spec.pattern is not None and _compiled(spec.pattern).fullmatch(text) is None:
        return spec.rule or Rule.FIELD_CODE, f"Le champ {name} {spec.hint}"
    return None


def advice_rules(dossier: GroupSpec) -> RecordRule:
    """The record rule that runs the `Advice` of the fields of `dossier`'s groups (warnings).

    A value that already breaks its field's own rules is not advised on (one issue is enough).
    """
    advised = tuple(
        (group.name, child, child.advice, _compiled(child.advice.pattern).fullmatch)
        for group in dossier.children
        if isinstance(group, GroupSpec)
        for child in group.children
        if isinstance(child, FieldSpec) and child.advice is not None
    )

    def advise(values: RecordValues, context: RuleContext) -> list[RuleHit]:
        hits: list[RuleHit] = []
        for group, spec, advice, matches in advised:
            text = values.get(group, {}).get(spec.name)
            if not text or matches(text) is not None or check_field(spec, text) is not None:
                continue
            hits.append(
                RuleHit(
                    advice.rule, f"{group}/{spec.name}", f"Le champ {spec.name} {advice.hint}", text
                )
            )
        return hits

    return advise
