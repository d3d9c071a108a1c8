"""Streaming validator of the XML flows: hardened parsing, XSD, business rules, every error.

The file is read once, in chunks, through `GuardedReader` (prolog, encoding traps, DOCTYPE,
size limits). lxml's `iterparse` builds one top-level element at a time (`entete`, each
`dossier`, `fin`); each is validated against the flow's XSD types, then its cross-field rules
run, then it is dropped, so memory stays flat whatever the number of records.

Each record is first checked in C against a stricter "clean" variant of its XSD type, derived
from the flow's spec so that no business rule can fire on a record it accepts: on a valid file
that settles nearly every record. Otherwise the record is checked against the flow's XSD and the
Python rules run; when the XSD refuses it, a Python walk of the faulty groups tells precisely and
in French what is wrong, and XSD errors that the walk does not explain are still reported (rule
`xml.schema`), so the XSD stays the reference.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, BinaryIO, Final
from zoneinfo import ZoneInfo

from lxml import etree

from portal.flows.core.encoding import EncodingFinding, GuardAbort, GuardedReader
from portal.flows.core.registry import get_spec, latest_spec, supported_versions
from portal.flows.core.report import (
    DEFAULT_MAX_ISSUES,
    DEFAULT_MAX_ISSUES_PER_RULE,
    IssueCollector,
    ValidationReport,
)
from portal.flows.core.rules import (
    AGGREGATED_RULES,
    RecordValues,
    Rule,
    RuleContext,
    RuleHit,
    entete_rules,
    fin_rules,
    parse_date,
)
from portal.flows.core.spec import FieldSpec, FlowSpec, GroupSpec, check_field
from portal.flows.core.types import FlowType
from portal.flows.core.xsd import clean_record_schema, record_schema
from portal.orgs.departements import is_departement_code

DEFAULT_MAX_BYTES: Final = 512 * 1024 * 1024
#: No legitimate header, record or footer comes close: a record is about one kilobyte.
DEFAULT_MAX_BYTES_PER_RECORD: Final = 1024 * 1024

PARIS: Final = ZoneInfo("Europe/Paris")
_TOP_LEVEL: Final = ("entete", "dossier", "fin")
_XSI: Final = "{http://www.w3.org/2001/XMLSchema-instance}"
_XML_SPACE: Final = " \t\r\n"
_PATH_INDEX: Final = re.compile(r"\[[0-9]+\]")
_AGGREGATED_EXAMPLES: Final = 20

if TYPE_CHECKING:
    _Events = etree.iterparse[tuple[str, etree._Element]]


def open_events(source: BinaryIO | GuardedReader) -> _Events:
    """The hardened streaming parser: end events of `entete`, `dossier` and `fin`.

    No DTD is loaded, no entity is resolved, nothing is fetched, libxml2 keeps its default
    limits (depth 256, text nodes of 10 MB, no `huge_tree`); the guard in front of it already
    refuses any DOCTYPE. Whitespace-only text between elements is dropped (not needed, and
    cheaper to parse); comments and processing instructions too.
    """
    return etree.iterparse(
        source,
        events=("end",),
        tag=_TOP_LEVEL,
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        attribute_defaults=False,
        remove_blank_text=True,
        remove_comments=True,
        remove_pis=True,
        strip_cdata=True,
    )


def paris_today() -> date:
    """Today's date in Europe/Paris, the convention's clock."""
    return datetime.now(PARIS).date()


def validate(
    source: BinaryIO | Path,
    *,
    expected_type: FlowType | None = None,
    departement: str | None = None,
    today: date | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_bytes_per_record: int = DEFAULT_MAX_BYTES_PER_RECORD,
    max_issues: int = DEFAULT_MAX_ISSUES,
    max_issues_per_rule: int = DEFAULT_MAX_ISSUES_PER_RULE,
) -> ValidationReport:
    """Validate one flow file in a single streaming pass and report every problem found.

    `expected_type` is the flow the depositor announced (read from the header otherwise);
    `departement` is the code of the space the file is deposited in.
    """
    if departement is not None and not is_departement_code(departement):
        raise ValueError(f"invalid département code: {departement!r}")
    run = _Run(
        expected_type=expected_type,
        departement=departement,
        context=RuleContext(today=today or paris_today()),
        collector=IssueCollector(max_issues=max_issues, max_per_rule=max_issues_per_rule),
    )
    if isinstance(source, Path):
        with source.open("rb") as stream:
            run.execute(stream, max_bytes=max_bytes, max_bytes_per_record=max_bytes_per_record)
    else:
        run.execute(source, max_bytes=max_bytes, max_bytes_per_record=max_bytes_per_record)
    return run.report()


@dataclass(frozen=True, slots=True)
class _Found:
    """An issue found by the Python walk of one element, before it gets its record number."""

    rule: Rule
    message: str
    line: int | None
    field: str
    value: str | None = None
    is_nir: bool = False

    @property
    def is_structural(self) -> bool:
        return self.rule.value.startswith("structure.")


_BEFORE_HEADER, _IN_RECORDS, _AFTER_FOOTER = 0, 1, 2


class _Run:
    """State of one validation."""

    def __init__(
        self,
        *,
        expected_type: FlowType | None,
        departement: str | None,
        context: RuleContext,
        collector: IssueCollector,
    ) -> None:
        self.expected_type = expected_type
        self.departement = departement
        self.context = context
        self.issues = collector
        self.spec: FlowSpec | None = None
        self.schema: etree.XMLSchema | None = None
        self.clean_schema: etree.XMLSchema | None = None
        self.breakdown_position: tuple[int, int] | None = None
        self.root: etree._Element | None = None
        self.last: etree._Element | None = None
        self.phase = _BEFORE_HEADER
        self.header_seen = False
        self.fatal = False
        self.breakdown_codes: frozenset[str] = frozenset()
        self.header: dict[str, str | None] = {}
        self.flow_type: FlowType | None = None
        self.version: str | None = None
        self.record_count = 0
        self.natures: Counter[str] = Counter()
        self.rule_counts: Counter[str] = Counter()
        self.aggregated: dict[Rule, list[int]] = {}
        self.footer_count: tuple[str | None, int | None] | None = None
        self.reader: GuardedReader | None = None
        self.next_finding = 0
        self.size_bytes = 0

    # -- driving the parser -------------------------------------------------------------------

    def execute(self, stream: BinaryIO, *, max_bytes: int, max_bytes_per_record: int) -> None:
        reader = GuardedReader(
            stream, max_bytes=max_bytes, max_bytes_between_marks=max_bytes_per_record
        )
        self.reader = reader
        events = open_events(reader)
        try:
            self._consume(events, reader)
        except GuardAbort as abort:
            self._add(abort.rule, abort.message, line=abort.line)
            self.fatal = True
        except etree.XMLSyntaxError as error:
            self._add(
                Rule.XML_MALFORMED,
                f"Le fichier n'est pas un XML bien formé (ligne {error.lineno}) : "
                f"{error.msg}. L'analyse s'arrête à cette erreur.",
                line=error.lineno,
            )
            self.fatal = True
        self.size_bytes = reader.bytes_read
        if self.root is None and events.root is not None:
            self._adopt_root(events.root)
        self._finish()

    def _consume(self, events: _Events, reader: GuardedReader) -> None:
        mark = reader.mark
        findings = reader.findings
        natures = self.natures
        root: etree._Element | None = None
        # Set whenever a header (or its absence) fixes the flow's spec; None outside records.
        is_clean: Callable[[etree._Element], bool] | None = None
        is_valid: Callable[[etree._Element], bool] | None = None
        breakdown: tuple[int, int] | None = None
        for _event, element in events:
            if root is None:
                self._adopt_root(element)
                root = self.root
            if element.getparent() is not root:
                continue  # nested where it does not belong: reported with its enclosing element
            mark()
            previous = element.getprevious()
            if previous is not None:
                if previous is self.last and previous.tail is None and root is not None:
                    root.remove(previous)
                else:
                    self._sweep(element, previous)
            if self.next_finding < len(findings):
                self._attach_findings(element)
            if is_valid is not None and element.tag == "dossier":
                # The hot path. Most records pass the "clean" schema (no rule can fire) in C;
                # the others are checked against the flow's XSD, then by the Python rules.
                self.record_count += 1
                if is_clean is not None and is_clean(element):
                    if breakdown is not None:
                        code = element[breakdown[0]][breakdown[1]].text
                        if code:
                            natures[code] += 1
                elif is_valid(element):
                    values: RecordValues = {
                        str(group.tag): {str(field.tag): field.text for field in group}
                        for group in element
                    }
                    self._record_rules(element, values)
                else:
                    self._slow_record(element, self._schema_errors())
            else:
                if element.tag == "dossier":
                    self._on_misplaced_dossier(element)
                elif element.tag == "entete":
                    self._on_entete(element)
                else:
                    self._on_fin(element)
                if self.phase == _IN_RECORDS and self.schema is not None:
                    is_valid = self.schema.validate
                    is_clean = self.clean_schema.validate if self.clean_schema else None
                    breakdown = self.breakdown_position
                else:
                    is_valid = is_clean = None
            self.last = element
            if self.fatal:
                break

    # -- top-level structure -------------------------------------------------------------------

    def _adopt_root(self, element: etree._Element) -> None:
        root = element
        while (parent := root.getparent()) is not None:
            root = parent
        self.root = root
        if root.tag != "flux":
            namespace = (
                " (les flux n'utilisent pas d'espace de noms XML)" if "}" in str(root.tag) else ""
            )
            self._add(
                Rule.XML_ROOT,
                f"L'élément racine doit être <flux> (trouvé <{_name(root)}>){namespace}.",
                line=root.sourceline,
                field=_name(root),
            )
        self._check_attributes(root, "flux", record=None)
        if not _blank(root.text):
            self._add(
                Rule.STRUCTURE_UNEXPECTED_TEXT,
                "Du texte figure directement dans <flux>, hors de tout champ.",
                line=root.sourceline,
                field="flux",
            )

    def _sweep(self, element: etree._Element, previous: etree._Element | None) -> None:
        """Drop what precedes `element` in <flux>, reporting anything that is not ours."""
        while previous is not None:
            self._drop(previous)
            previous = element.getprevious()

    def _drop(self, node: etree._Element) -> None:
        assert self.root is not None  # noqa: S101 - set on the first event
        if node is not self.last:
            self._add(
                Rule.STRUCTURE_UNEXPECTED_ELEMENT,
                f"L'élément <{_name(node)}> n'est pas prévu dans <flux> : seuls <entete>, "
                "<dossier> et <fin> y figurent.",
                line=node.sourceline,
                field=_name(node),
            )
        if not _blank(node.tail):
            self._add(
                Rule.STRUCTURE_UNEXPECTED_TEXT,
                "Du texte figure directement dans <flux>, hors de tout champ.",
                line=node.sourceline,
                field="flux",
            )
        self.root.remove(node)

    def _on_misplaced_dossier(self, element: etree._Element) -> None:
        if self.phase == _BEFORE_HEADER:
            self._missing_header(element)
            if self.fatal:
                return
        if self.phase == _AFTER_FOOTER:
            self._add(
                Rule.STRUCTURE_ORDER,
                "Ce dossier figure après le pied de fichier <fin>.",
                line=element.sourceline,
                record=self.record_count + 1,
                field="dossier",
            )
            self.phase = _IN_RECORDS  # report it once, then check the records normally
        self.record_count += 1
        self._slow_record(element)
        self.phase = _AFTER_FOOTER if self.footer_count is not None else _IN_RECORDS

    def _missing_header(self, element: etree._Element) -> None:
        message = "L'en-tête <entete> manque : il doit être le premier élément de <flux>."
        if self.expected_type is None:
            self._add(
                Rule.STRUCTURE_MISSING_ELEMENT,
                message + " Le type de flux ne peut pas être déterminé : analyse interrompue.",
                line=element.sourceline,
                field="entete",
            )
            self.fatal = True
            return
        self._add(Rule.STRUCTURE_MISSING_ELEMENT, message, line=element.sourceline, field="entete")
        self._use(latest_spec(self.expected_type))
        self.phase = _IN_RECORDS

    def _use(self, spec: FlowSpec) -> None:
        self.spec = spec
        self.schema = record_schema(spec)
        self.clean_schema = clean_record_schema(spec, self.context.today)
        self.breakdown_position = _fixed_position(spec)
        self.flow_type = spec.flow_type
        self.version = spec.version
        self.breakdown_codes = _codes_of(spec)

    def _on_entete(self, element: etree._Element) -> None:
        if self.header_seen or self.phase != _BEFORE_HEADER:
            self._add(
                Rule.STRUCTURE_DUPLICATE_ELEMENT if self.header_seen else Rule.STRUCTURE_ORDER,
                "L'en-tête <entete> doit figurer une seule fois, en premier dans <flux>.",
                line=element.sourceline,
                field="entete",
            )
            return
        self.phase = _IN_RECORDS
        self.header_seen = True
        raw: dict[str, etree._Element] = {}
        for child in element:
            if isinstance(child.tag, str):
                raw.setdefault(child.tag, child)
        fichier_element = raw.get("fichier")
        fichier = (fichier_element.text or "") if fichier_element is not None else ""
        detected = FlowType.from_fichier(fichier)
        line = fichier_element.sourceline if fichier_element is not None else element.sourceline
        if self.expected_type is not None and detected not in (None, self.expected_type):
            assert detected is not None  # noqa: S101 - narrowed by the test above
            self._fatal(
                Rule.ENTETE_FICHIER,
                f"Ce fichier est un flux {detected.value} (fichier {fichier}) alors qu'un flux "
                f"{self.expected_type.value} est attendu : rien d'autre n'a été vérifié.",
                line=line,
                field="entete/fichier",
                value=fichier,
            )
            return
        flow_type = self.expected_type or detected
        if flow_type is None:
            known = ", ".join(f"{kind.fichier} ({kind.value})" for kind in FlowType)
            self._fatal(
                Rule.ENTETE_FICHIER,
                f"Type de fichier inconnu dans l'en-tête : valeurs acceptées {known}. "
                "Rien d'autre n'a été vérifié.",
                line=line,
                field="entete/fichier",
                value=fichier,
            )
            return
        version_element = raw.get("version")
        version = (version_element.text or "") if version_element is not None else ""
        spec = get_spec(flow_type, version)
        if spec is None:
            versions = ", ".join(supported_versions(flow_type))
            problem = (
                f"La version de structure « {version} » n'est pas prise en charge"
                if version
                else "La version de structure (entete/version) manque"
            )
            self._fatal(
                Rule.ENTETE_VERSION,
                f"{problem} pour le flux {flow_type.value} (versions acceptées : {versions}). "
                "Rien d'autre n'a été vérifié.",
                line=version_element.sourceline
                if version_element is not None
                else element.sourceline,
                field="entete/version",
                value=version,
            )
            return
        self._use(spec)
        header = self._check_element(element, spec.entete, record=None)
        self.header = dict(header.get("", {}))
        for hit in entete_rules(self.header, departement=self.departement):
            self._add_hit(element, "entete", hit, record=None)

    def _on_fin(self, element: etree._Element) -> None:
        if self.phase == _BEFORE_HEADER:
            self._missing_header(element)
            if self.fatal:
                return
        if self.phase == _AFTER_FOOTER or self.spec is None:
            self._add(
                Rule.STRUCTURE_DUPLICATE_ELEMENT,
                "Le pied de fichier <fin> doit figurer une seule fois, en dernier dans <flux>.",
                line=element.sourceline,
                field="fin",
            )
            return
        self.phase = _AFTER_FOOTER
        footer = self._check_element(element, self.spec.fin, record=None).get("", {})
        for hit in fin_rules(footer, self.header):
            self._add_hit(element, "fin", hit, record=None)
        count = element.find("nb-dossier")
        self.footer_count = (
            footer.get("nb-dossier"),
            count.sourceline if count is not None else element.sourceline,
        )

    # -- records ---------------------------------------------------------------------------------

    def _slow_record(
        self, element: etree._Element, errors: list[etree._LogEntry] | None = None
    ) -> None:
        assert self.spec is not None  # noqa: S101 - records are only checked once a spec is known
        values = self._check_element(
            element, self.spec.dossier, record=self.record_count, errors=errors
        )
        self._record_rules(element, values)

    def _record_rules(self, element: etree._Element, values: RecordValues) -> None:
        spec = self.spec
        assert spec is not None  # noqa: S101 - see _slow_record
        for rule in spec.record_rules:
            for hit in rule(values, self.context):
                if hit.rule in AGGREGATED_RULES:
                    self.rule_counts[hit.rule.value] += 1
                    self.aggregated.setdefault(hit.rule, [])
                    if len(self.aggregated[hit.rule]) < _AGGREGATED_EXAMPLES:
                        self.aggregated[hit.rule].append(self.record_count)
                else:
                    self._add_hit(element, "dossier", hit, record=self.record_count)
        if spec.breakdown is not None:
            group, name = spec.breakdown
            code = values.get(group, {}).get(name)
            if code is not None and code in self.breakdown_codes:
                self.natures[code] += 1

    def _add_hit(
        self, element: etree._Element, prefix: str, hit: RuleHit, *, record: int | None
    ) -> None:
        self._add(
            hit.rule,
            hit.message,
            line=_locate(element, hit.field),
            record=record,
            field=f"{prefix}/{hit.field}",
            value=hit.value,
        )

    # -- the Python walk (precise French messages) ---------------------------------------------

    def _check_element(
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
            errors = [] if self.schema is None or self.schema.validate(element) else None
            if errors is None and self.schema is not None:
                errors = list(self.schema.error_log)
        assert errors is not None  # noqa: S101 - set just above
        found: list[_Found] = []
        values: dict[str, dict[str, str | None]] = {}
        groups = _groups_to_walk(errors, spec) if spec is self._dossier_spec() else None
        if groups is None:
            _walk(element, spec, spec.name, "", found, values)
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
                    _walk(child, group_spec, f"{spec.name}/{name}", name, found, values)
                    groups.discard(name)  # a repeated group is the record's fault, seen above
        for item in found:
            self._add(
                item.rule,
                item.message,
                line=item.line,
                record=record,
                field=item.field,
                value=item.value,
                is_nir=item.is_nir,
            )
        for error in errors:
            path = _PATH_INDEX.sub("", error.path or "").strip("/")
            if any(_explains(item, path) for item in found):
                continue
            self._add(
                Rule.XML_SCHEMA,
                f"Non conforme au schéma XSD : {error.message}",
                line=error.line or element.sourceline,
                record=record,
                field=path or None,
            )
        return values

    def _schema_errors(self) -> list[etree._LogEntry]:
        """The errors of the last record-schema validation."""
        return list(self.schema.error_log) if self.schema is not None else []

    def _dossier_spec(self) -> GroupSpec | None:
        return self.spec.dossier if self.spec is not None else None

    def _check_attributes(self, element: etree._Element, path: str, *, record: int | None) -> None:
        for name in element.attrib:
            if not str(name).startswith(_XSI):
                self._add(
                    Rule.STRUCTURE_UNEXPECTED_ATTRIBUTE,
                    f"L'élément <{_name(element)}> ne doit pas porter d'attribut ({name!s}).",
                    line=element.sourceline,
                    record=record,
                    field=path,
                )

    # -- encoding findings -----------------------------------------------------------------------

    def _attach_findings(self, element: etree._Element) -> None:
        """Give the encoding findings that fall inside `element` its record number and field."""
        assert self.reader is not None  # noqa: S101 - set by execute
        findings = self.reader.findings
        start = element.sourceline or 0
        end: int | None = None
        record = self.record_count + 1 if element.tag == "dossier" else None
        while self.next_finding < len(findings):
            finding = findings[self.next_finding]
            if finding.line < start:
                self._add_finding(finding)
            else:
                if end is None:
                    end = max((node.sourceline or 0) for node in element.iter())
                if finding.line > end:
                    break
                self._add_finding(finding, record=record, field=_field_at(element, finding))
            self.next_finding += 1

    def _add_finding(
        self, finding: EncodingFinding, *, record: int | None = None, field: str | None = None
    ) -> None:
        self._add(
            finding.rule,
            finding.message,
            line=finding.line,
            record=record,
            field=field,
            value=finding.text,
        )

    # -- end of file -------------------------------------------------------------------------

    def _finish(self) -> None:
        if self.root is not None and not self.fatal:
            for child in list(self.root):
                self._drop(child)
        if not self.fatal:
            end_line = self.reader.line if self.reader is not None else None
            if self.phase == _BEFORE_HEADER:
                self._add(
                    Rule.STRUCTURE_MISSING_ELEMENT,
                    "L'en-tête <entete> manque : il doit être le premier élément de <flux>.",
                    line=end_line,
                    field="entete",
                )
            if self.footer_count is None:
                self._add(
                    Rule.STRUCTURE_MISSING_ELEMENT,
                    "Le pied de fichier <fin> manque : il doit être le dernier élément de <flux>.",
                    line=end_line,
                    field="fin",
                )
            if self.footer_count is not None:
                announced, line = self.footer_count
                if (
                    announced is not None
                    and announced.isdigit()
                    and int(announced) != self.record_count
                ):
                    self._add(
                        Rule.FIN_NB_DOSSIER,
                        f"Le pied de fichier annonce {int(announced)} dossier(s) alors que le "
                        f"fichier en contient {self.record_count}.",
                        line=line,
                        field="fin/nb-dossier",
                        value=announced,
                    )
        if self.reader is not None:
            for finding in self.reader.findings[self.next_finding :]:
                self._add_finding(finding)
            self.next_finding = len(self.reader.findings)
            for rule, count in self.reader.dropped_findings.items():
                self.issues.omitted[rule.value] += count
                self.issues.error_count += count
                self.rule_counts[rule.value] += count
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

    def report(self) -> ValidationReport:
        header = self.header
        departement = header.get("departement")
        periodicite = header.get("periodicite")
        return ValidationReport(
            flow_type=self.flow_type,
            version=self.version,
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
            size_bytes=self.size_bytes,
        )

    # -- helpers -------------------------------------------------------------------------------

    def _add(
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
        self.rule_counts[rule.value] += 1
        self.issues.add(
            rule, message, line=line, record=record, field=field, value=value, is_nir=is_nir
        )

    def _fatal(self, rule: Rule, message: str, *, line: int | None, field: str, value: str) -> None:
        self._add(rule, message, line=line, field=field, value=value)
        self.fatal = True


def _fixed_position(spec: FlowSpec) -> tuple[int, int] | None:
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


def _codes_of(spec: FlowSpec) -> frozenset[str]:
    if spec.breakdown is None:
        return frozenset()
    group_name, field_name = spec.breakdown
    for path, field_spec in spec.dossier.fields():
        if path == f"dossier/{group_name}/{field_name}":
            return frozenset(field_spec.codes)
    return frozenset()


def _blank(text: str | None) -> bool:
    return text is None or text.strip(_XML_SPACE) == ""


def _groups_to_walk(errors: list[etree._LogEntry], spec: GroupSpec) -> set[str] | None:
    """The record's groups that the XSD errors point at; None when the record itself is at
    fault (its own content, a group missing, misplaced or repeated): then walk it all."""
    groups: set[str] = set()
    for error in errors:
        parts = _local_path(_PATH_INDEX.sub("", error.path or "").strip("/")).split("/")
        if error.type_name == "SCHEMAV_ELEMENT_CONTENT":
            parts = parts[:-1]  # about the content of the parent
        if len(parts) < 2 or spec.position(parts[1]) is None:
            return None
        groups.add(parts[1])
    return groups


def _name(element: etree._Element) -> str:
    """The element's name as written in the file: prefix:local, or {namespace}local when it
    is in a default namespace (the flows use none)."""
    tag = str(element.tag)
    if tag.startswith("{"):
        local = tag.rpartition("}")[2]
        return f"{element.prefix}:{local}" if element.prefix else tag
    return tag


def _local_path(path: str) -> str:
    """`a/{ns}b/p:c[2]` -> `a/b/c`: XSD error paths and ours compared on local names."""
    parts = (part.rpartition("}")[2].rpartition(":")[2] for part in path.split("/"))
    return "/".join(_PATH_INDEX.sub("", part) for part in parts)


def _explains(item: _Found, xsd_path: str) -> bool:
    """Whether a Python finding accounts for an XSD error at `xsd_path`."""
    path = _local_path(item.field)
    xsd_path = _local_path(xsd_path)
    if path == xsd_path or path.startswith(xsd_path + "/") or xsd_path.startswith(path + "/"):
        return True
    return item.is_structural and path.rpartition("/")[0] == xsd_path.rpartition("/")[0]


def _locate(element: etree._Element, relative_path: str) -> int | None:
    """Line of the deepest existing element along `relative_path` below `element`."""
    line = element.sourceline
    node = element
    for part in relative_path.split("/"):
        child = node.find(part)
        if child is None:
            break
        node, line = child, child.sourceline
    return line


def _path_of(node: etree._Element, top: etree._Element) -> str:
    parts: list[str] = []
    current: etree._Element | None = node
    while current is not None:
        parts.append(_name(current))
        if current is top:
            break
        current = current.getparent()
    return "/".join(reversed(parts))


def _field_at(element: etree._Element, finding: EncodingFinding) -> str:
    """Path of the field of `element` whose text holds the finding, as well as it can be told."""
    exact: etree._Element | None = None
    containing: etree._Element | None = None
    last_leaf: etree._Element | None = None
    for node in element.iter():
        line = node.sourceline or 0
        if line > finding.line:
            break
        if finding.text and finding.text in (node.text or ""):
            containing = node
            if line == finding.line and exact is None:
                exact = node
        if len(node) == 0:
            last_leaf = node
    for candidate in (exact, containing, last_leaf):
        if candidate is not None:
            return _path_of(candidate, element)
    return _path_of(element, element)


def _walk(
    element: etree._Element,
    spec: GroupSpec,
    path: str,
    key: str,
    found: list[_Found],
    values: dict[str, dict[str, str | None]],
) -> None:
    """Check `element` against `spec`: attributes, text, order, presence, every field."""
    _attributes(element, path, found)
    if not _blank(element.text):
        found.append(
            _Found(
                Rule.STRUCTURE_UNEXPECTED_TEXT,
                f"Du texte figure directement dans <{spec.name}>, hors de tout champ.",
                element.sourceline,
                path,
            )
        )
    fields: dict[str, str | None] = {}
    values[key] = fields
    seen: set[str] = set()
    furthest, furthest_name = -1, ""
    for child in element:
        if not _blank(child.tail):
            found.append(
                _Found(
                    Rule.STRUCTURE_UNEXPECTED_TEXT,
                    f"Du texte figure directement dans <{spec.name}>, hors de tout champ.",
                    child.sourceline,
                    path,
                )
            )
        if not isinstance(child.tag, str):
            continue
        tag = _name(child)
        child_path = f"{path}/{tag}"
        position = spec.position(tag)
        if position is None:
            found.append(
                _Found(
                    Rule.STRUCTURE_UNEXPECTED_ELEMENT,
                    f"L'élément <{tag}> n'est pas prévu dans <{spec.name}> (éléments prévus : "
                    f"{', '.join(c.name for c in spec.children)}).",
                    child.sourceline,
                    child_path,
                )
            )
            continue
        if tag in seen:
            found.append(
                _Found(
                    Rule.STRUCTURE_DUPLICATE_ELEMENT,
                    f"L'élément <{tag}> apparaît plusieurs fois dans <{spec.name}>.",
                    child.sourceline,
                    child_path,
                )
            )
            continue
        seen.add(tag)
        if position < furthest:
            found.append(
                _Found(
                    Rule.STRUCTURE_ORDER,
                    f"L'élément <{tag}> est mal placé : il doit précéder <{furthest_name}> "
                    f"(ordre attendu : {', '.join(c.name for c in spec.children)}).",
                    child.sourceline,
                    child_path,
                )
            )
        else:
            furthest, furthest_name = position, tag
        child_spec = spec.children[position]
        if isinstance(child_spec, GroupSpec):
            _walk(child, child_spec, child_path, f"{key}/{tag}" if key else tag, found, values)
        else:
            _check_leaf(child, child_spec, child_path, found, fields)
    for child_spec in spec.children:
        if child_spec.required and child_spec.name not in seen:
            kind = "Le groupe" if isinstance(child_spec, GroupSpec) else "Le champ"
            found.append(
                _Found(
                    Rule.STRUCTURE_MISSING_ELEMENT,
                    f"{kind} obligatoire <{child_spec.name}> manque dans <{spec.name}>.",
                    element.sourceline,
                    f"{path}/{child_spec.name}",
                )
            )


def _check_leaf(
    element: etree._Element,
    spec: FieldSpec,
    path: str,
    found: list[_Found],
    fields: dict[str, str | None],
) -> None:
    _attributes(element, path, found)
    if len(element):
        found.append(
            _Found(
                Rule.STRUCTURE_UNEXPECTED_ELEMENT,
                f"Le champ <{spec.name}> ne doit contenir que du texte, pas d'élément.",
                element.sourceline,
                path,
            )
        )
        fields[spec.name] = None
        return
    text = element.text
    fields[spec.name] = text
    problem = check_field(spec, text or "")
    if problem is not None:
        rule, message = problem
        found.append(_Found(rule, message, element.sourceline, path, text, spec.is_nir))


def _attributes(element: etree._Element, path: str, found: list[_Found]) -> None:
    for name in element.attrib:
        if not str(name).startswith(_XSI):
            found.append(
                _Found(
                    Rule.STRUCTURE_UNEXPECTED_ATTRIBUTE,
                    f"L'élément <{_name(element)}> ne doit pas porter d'attribut ({name!s}).",
                    element.sourceline,
                    path,
                )
            )
