"""The checks of one flow structure: its XSD, its "clean" XSD, the Python walk, record rules."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from lxml import etree

from portal.flows.core.rules import AGGREGATED_RULES, RecordValues, Rule, RuleContext
from portal.flows.core.spec import FlowSpec, GroupSpec
from portal.flows.core.tally import Tally
from portal.flows.core.walk import PATH_INDEX, Found, explains, groups_to_walk, walk
from portal.flows.core.xsd import (
    clean_record_schema,
    record_schema,
    spelled_clean_record_schema,
)


class RecordChecks:
    """Everything that checks an element once the header has fixed the flow's structure."""

    def __init__(self, spec: FlowSpec, context: RuleContext, tally: Tally) -> None:
        self.spec = spec
        self.context = context
        self.tally = tally
        self.schema = record_schema(spec)
        self.clean_schema = clean_record_schema(spec, context.today)
        self.breakdown_position = fixed_position(spec)
        self.breakdown_codes = codes_of(spec)

    def spelled_clean(
        self, spellings: Mapping[str, str]
    ) -> Callable[[etree._Element], bool] | None:
        """The clean check of records that spell names as `spellings` (canonical -> spelling)."""
        try:
            schema = spelled_clean_record_schema(self.spec, self.context.today, spellings)
        except etree.XMLSchemaParseError:  # a spelling XSD refuses as a name: the slow path
            return None
        return schema.validate if schema is not None else None

    def slow_record(
        self, element: etree._Element, errors: list[etree._LogEntry] | None = None
    ) -> None:
        """A record the clean schema did not settle: walked where the XSD points, then ruled."""
        values = self.check_element(
            element, self.spec.dossier, record=self.tally.record_count, errors=errors
        )
        self.record_rules(element, values)

    def record_rules(self, element: etree._Element, values: RecordValues) -> None:
        """The cross-field rules of a record, and its share of the breakdown."""
        spec = self.spec
        tally = self.tally
        for rule in spec.record_rules:
            for hit in rule(values, self.context):
                if hit.rule in AGGREGATED_RULES:
                    tally.aggregate(hit.rule, tally.record_count)
                else:
                    tally.add_hit(element, "dossier", hit, record=tally.record_count)
        if spec.breakdown is not None:
            group, name = spec.breakdown
            code = values.get(group, {}).get(name)
            if code is not None and code in self.breakdown_codes:
                tally.natures[code] += 1

    def schema_errors(self) -> list[etree._LogEntry]:
        """The errors of the last record-schema validation."""
        return list(self.schema.error_log)

    def check_element(
        self,
        element: etree._Element,
        spec: GroupSpec,
        *,
        record: int | None,
        errors: list[etree._LogEntry] | None = None,
    ) -> dict[str, dict[str, str | None]]:
        """Walk `element` against `spec`, report what is wrong, reconcile with the XSD.

        `errors` are the XSD errors of `element` when the caller already validated it: the walk
        is then limited to the groups they point at (the others passed the XSD, and the Python
        checks agree with it), which keeps a file with an error in every record affordable.
        """
        if errors is None:
            errors = [] if self.schema.validate(element) else self.schema_errors()
        found: list[Found] = []
        values: dict[str, dict[str, str | None]] = {}
        groups = groups_to_walk(errors, spec) if spec is self.spec.dossier else None
        if groups is None:
            walk(element, spec, spec.name, "", found, values)
        else:
            values.update(
                (str(group.tag), {str(field.tag): field.text for field in group})
                for group in element
            )
            for child in element:
                name = str(child.tag)
                position = spec.position(name)
                group_spec = spec.children[position] if position is not None else None
                if name in groups and isinstance(group_spec, GroupSpec):
                    walk(child, group_spec, f"{spec.name}/{name}", name, found, values)
                    groups.discard(name)  # a repeated group is the record's fault, seen above
        add = self.tally.add
        for item in found:
            add(
                item.rule,
                item.message,
                line=item.line,
                record=record,
                field=item.field,
                value=item.value,
                is_nir=item.is_nir,
            )
        for error in errors:
            path = PATH_INDEX.sub("", error.path or "").strip("/")
            if any(explains(item, path) for item in found):
                continue
            add(
                Rule.XML_SCHEMA,
                f"Non conforme au schéma XSD : {error.message}",
                line=error.line or element.sourceline,
                record=record,
                field=path or None,
            )
        return values


def fixed_position(spec: FlowSpec) -> tuple[int, int] | None:
    """Indexes of the breakdown field when every element before it is mandatory."""
    if spec.breakdown is None:
        return None
    group_name, field_name = spec.breakdown
    for group_index, group in enumerate(spec.dossier.children):
        if group.name == group_name and isinstance(group, GroupSpec):
            for field_index, field in enumerate(group.children):
                if field.name == field_name:
                    return group_index, field_index
                if not field.required:
                    return None
        if not group.required:
            return None
    return None


def codes_of(spec: FlowSpec) -> frozenset[str]:
    """The codes of the breakdown field (orientation natures for CGPEM)."""
    if spec.breakdown is None:
        return frozenset()
    group_name, field_name = spec.breakdown
    for path, field_spec in spec.dossier.fields():
        if path == f"dossier/{group_name}/{field_name}":
            return frozenset(field_spec.codes)
    return frozenset()
