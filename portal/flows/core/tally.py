"""What one validation found and counted: issues, occurrences per rule, records, natures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from lxml import etree

from portal.flows.core.report import IssueCollector, ValidationReport
from portal.flows.core.rules import Rule, RuleHit, parse_date
from portal.flows.core.spec import FlowSpec
from portal.flows.core.spelling import Spellings
from portal.flows.core.walk import locate
from portal.orgs.departements import is_departement_code

_AGGREGATED_EXAMPLES: Final = 20


class Tally:
    """The issues of one file (capped by the collector) and what the report counts."""

    def __init__(self, collector: IssueCollector) -> None:
        self.issues = collector
        self.record_count = 0
        self.natures: Counter[str] = Counter()
        self.rule_counts: Counter[str] = Counter()
        self.aggregated: dict[Rule, list[int]] = {}

    def add(
        self,
        rule: Rule,
        message: str,
        *,
        line: int | None = None,
        record: int | None = None,
        field: str | None = None,
        value: str | None = None,
        is_nir: bool = False,
    ) -> None:
        """Count one issue and hand it to the collector."""
        self.rule_counts[rule.value] += 1
        self.issues.add(
            rule, message, line=line, record=record, field=field, value=value, is_nir=is_nir
        )

    def add_hit(
        self, element: etree._Element, prefix: str, hit: RuleHit, *, record: int | None
    ) -> None:
        """One broken cross-field rule of `element`, located at the line of its field."""
        self.add(
            hit.rule,
            hit.message,
            line=locate(element, hit.field),
            record=record,
            field=f"{prefix}/{hit.field}",
            value=hit.value,
        )

    def aggregate(self, rule: Rule, record: int) -> None:
        """One more record for a rule reported once for the whole file."""
        self.rule_counts[rule.value] += 1
        examples = self.aggregated.setdefault(rule, [])
        if len(examples) < _AGGREGATED_EXAMPLES:
            examples.append(record)

    def add_dropped(self, dropped: Mapping[Rule, int]) -> None:
        """Errors the encoding guard counted but did not keep."""
        for rule, count in dropped.items():
            self.issues.omitted[rule.value] += count
            self.issues.error_count += count
            self.rule_counts[rule.value] += count

    def add_aggregated(self) -> None:
        """The one issue of each aggregated rule, with its count and first records."""
        for rule, records in self.aggregated.items():
            total = self.rule_counts[rule.value]
            examples = ", ".join(str(n) for n in records)
            more = ", …" if total > len(records) else ""
            self.issues.add(
                rule,
                f"{total} dossier(s) ont un correspondant sans nom : France Travail effacera le "
                "référent qu'il connaît pour ces personnes. Vérifiez que c'est voulu (dossiers "
                f"{examples}{more}).",
                field="dossier/correspondant/nom",
            )

    def add_spellings(self, spellings: Spellings) -> None:
        """One warning per spelling of the convention met, naming our canonical name."""
        records = (
            f" ; {spellings.records} dossier(s) écrits avec les orthographes des tables"
            if spellings.records
            else ""
        )
        for tag, canonical in spellings.known.items():
            line = spellings.first_lines.get(tag)
            self.add(
                Rule.STRUCTURE_SPELLING,
                f"L'élément <{tag}> est écrit comme dans les tables de la convention : accepté "
                f"et lu comme <{canonical}>, le nom attendu par le schéma (première fois ligne "
                f"{line}{records}).",
                line=line,
                field=canonical,
                value=tag,
            )

    def report(
        self,
        spec: FlowSpec | None,
        header: Mapping[str, str | None],
        size_bytes: int,
        readings: Mapping[str, str],
    ) -> ValidationReport:
        """The frozen report of the file."""
        departement = header.get("departement")
        periodicite = header.get("periodicite")
        return ValidationReport(
            flow_type=spec.flow_type if spec is not None else None,
            version=spec.version if spec is not None else None,
            departement=departement
            if departement is not None and is_departement_code(departement)
            else None,
            date_reference=parse_date(header.get("date-reference")),
            date_fabrication=parse_date(header.get("date-fabrication")),
            periodicite=periodicite if periodicite in ("M", "H") else None,
            record_count=self.record_count,
            nature_counts=MappingProxyType(dict(sorted(self.natures.items()))),
            issues=self.issues.sorted_issues(),
            error_count=self.issues.error_count,
            warning_count=self.issues.warning_count,
            omitted_counts=self.issues.omitted_counts(),
            rule_counts=MappingProxyType(dict(sorted(self.rule_counts.items()))),
            size_bytes=size_bytes,
            readings=MappingProxyType(dict(readings)),
        )
