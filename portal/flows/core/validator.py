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

Here the driver (parser, root, what lies between elements, encoding findings, end of file);
`frame` the header and footer, `records` the checks of a structure, `walk` the Python walk,
`tally` the issues and counts that make the report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final
from zoneinfo import ZoneInfo

from lxml import etree

from portal.flows.core.encoding import EncodingFinding, GuardAbort, GuardedReader
from portal.flows.core.frame import BEFORE_HEADER, IN_RECORDS, Frame
from portal.flows.core.records import RecordChecks
from portal.flows.core.report import (
    DEFAULT_MAX_ISSUES,
    DEFAULT_MAX_ISSUES_PER_RULE,
    IssueCollector,
    ValidationReport,
)
from portal.flows.core.rules import RecordValues, Rule, RuleContext
from portal.flows.core.spelling import Spellings
from portal.flows.core.tally import Tally
from portal.flows.core.types import FlowType
from portal.flows.core.walk import XSI, field_at, is_blank, name_of
from portal.orgs.departements import is_departement_code

DEFAULT_MAX_BYTES: Final = 512 * 1024 * 1024
#: No legitimate header, record or footer comes close: a record is about one kilobyte.
DEFAULT_MAX_BYTES_PER_RECORD: Final = 1024 * 1024

PARIS: Final = ZoneInfo("Europe/Paris")
_TOP_LEVEL: Final = ("entete", "dossier", "fin")
_ELEMENT_CONTENT: Final = etree.ErrorTypes.SCHEMAV_ELEMENT_CONTENT

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


def _names_refused(schema: etree.XMLSchema) -> bool:
    """Whether the last check refused an element's name or place (maybe a table spelling)."""
    return any(error.type == _ELEMENT_CONTENT for error in schema.error_log)


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
    tally = Tally(IssueCollector(max_issues=max_issues, max_per_rule=max_issues_per_rule))
    frame = Frame(
        expected_type=expected_type,
        departement=departement,
        context=RuleContext(today=today or paris_today()),
        tally=tally,
    )
    run = _Run(frame, tally)
    if isinstance(source, Path):
        with source.open("rb") as stream:
            run.execute(stream, max_bytes=max_bytes, max_bytes_per_record=max_bytes_per_record)
    else:
        run.execute(source, max_bytes=max_bytes, max_bytes_per_record=max_bytes_per_record)
    return run.report()


class _Run:
    """One validation: drives the parser, hands each top-level element to its checks."""

    def __init__(self, frame: Frame, tally: Tally) -> None:
        self.frame = frame
        self.tally = tally
        self.root: etree._Element | None = None
        self.last: etree._Element | None = None
        self.reader: GuardedReader | None = None
        self.next_finding = 0
        self.size_bytes = 0
        self.spellings = Spellings()

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
            self.tally.add(abort.rule, abort.message, line=abort.line)
            self.frame.fatal = True
        except etree.XMLSyntaxError as error:
            self.tally.add(
                Rule.XML_MALFORMED,
                f"Le fichier n'est pas un XML bien formé (ligne {error.lineno}) : "
                f"{error.msg}. L'analyse s'arrête à cette erreur.",
                line=error.lineno,
            )
            self.frame.fatal = True
        self.size_bytes = reader.bytes_read
        if self.root is None and events.root is not None:
            self._adopt_root(events.root)
        self._finish()

    def _consume(self, events: _Events, reader: GuardedReader) -> None:
        mark = reader.mark
        findings = reader.findings
        frame = self.frame
        tally = self.tally
        natures = tally.natures
        spellings = self.spellings
        root: etree._Element | None = None
        # Set whenever a header (or its absence) fixes the flow's spec; None outside records.
        checks: RecordChecks | None = None
        is_clean: Callable[[etree._Element], bool] | None = None
        is_valid: Callable[[etree._Element], bool] | None = None
        # The clean schema with the names the file spells as the tables do (see spelling.py).
        is_spelled_clean: Callable[[etree._Element], bool] | None = None
        spelled_version = 0
        clean_schema: etree.XMLSchema | None = None
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
            if is_valid is not None and element.tag == "dossier" and checks is not None:
                # The hot path. Most records pass the "clean" schema (no rule can fire) in C;
                # the others are checked against the flow's XSD, then by the Python rules.
                # Records written with the convention's spellings pass a clean schema that
                # names its elements as they do; otherwise they are renamed, then checked.
                tally.record_count += 1
                if is_spelled_clean is not None:
                    # A file that spells as the tables do: its schema first (a failed check
                    # costs its error log), and a record it refuses is renamed then checked.
                    clean = is_spelled_clean(element)
                    if clean or spellings.rename_new(element):
                        spellings.records += 1
                else:
                    clean = is_clean is not None and is_clean(element)
                    if (
                        not clean
                        and (clean_schema is None or _names_refused(clean_schema))
                        and spellings.rename_new(element)
                    ):
                        spellings.records += 1
                        clean = is_clean is not None and is_clean(element)
                if spellings.version != spelled_version:
                    spelled_version = spellings.version
                    is_spelled_clean = checks.spelled_clean(spellings.spelled)
                if clean:
                    if breakdown is not None:
                        code = element[breakdown[0]][breakdown[1]].text
                        if code:
                            natures[code] += 1
                elif is_valid(element):
                    values: RecordValues = {
                        str(group.tag): {str(field.tag): field.text for field in group}
                        for group in element
                    }
                    checks.record_rules(element, values)
                else:
                    checks.slow_record(element, checks.schema_errors())
            else:
                spellings.rename_new(element)
                if element.tag == "dossier":
                    frame.on_misplaced_dossier(element)
                elif element.tag == "entete":
                    frame.on_entete(element)
                else:
                    frame.on_fin(element)
                checks = frame.checks if frame.phase == IN_RECORDS else None
                is_spelled_clean, spelled_version = None, spellings.version
                if checks is not None:
                    is_valid = checks.schema.validate
                    clean_schema = checks.clean_schema
                    is_clean = clean_schema.validate if clean_schema is not None else None
                    breakdown = checks.breakdown_position
                else:
                    is_valid = is_clean = None
            self.last = element
            if frame.fatal:
                break

    # -- what surrounds the frame ----------------------------------------------------------------

    def _adopt_root(self, element: etree._Element) -> None:
        root = element
        while (parent := root.getparent()) is not None:
            root = parent
        self.root = root
        if root.tag != "flux":
            namespace = (
                " (les flux n'utilisent pas d'espace de noms XML)" if "}" in str(root.tag) else ""
            )
            self.tally.add(
                Rule.XML_ROOT,
                f"L'élément racine doit être <flux> (trouvé <{name_of(root)}>){namespace}.",
                line=root.sourceline,
                field=name_of(root),
            )
        for name in root.attrib:
            if not str(name).startswith(XSI):
                self.tally.add(
                    Rule.STRUCTURE_UNEXPECTED_ATTRIBUTE,
                    f"L'élément <{name_of(root)}> ne doit pas porter d'attribut ({name!s}).",
                    line=root.sourceline,
                    field="flux",
                )
        if not is_blank(root.text):
            self.tally.add(
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
            self.tally.add(
                Rule.STRUCTURE_UNEXPECTED_ELEMENT,
                f"L'élément <{name_of(node)}> n'est pas prévu dans <flux> : seuls <entete>, "
                "<dossier> et <fin> y figurent.",
                line=node.sourceline,
                field=name_of(node),
            )
        if not is_blank(node.tail):
            self.tally.add(
                Rule.STRUCTURE_UNEXPECTED_TEXT,
                "Du texte figure directement dans <flux>, hors de tout champ.",
                line=node.sourceline,
                field="flux",
            )
        self.root.remove(node)

    # -- encoding findings -----------------------------------------------------------------------

    def _attach_findings(self, element: etree._Element) -> None:
        """Give the encoding findings that fall inside `element` its record number and field."""
        assert self.reader is not None  # noqa: S101 - set by execute
        findings = self.reader.findings
        start = element.sourceline or 0
        end: int | None = None
        record = self.tally.record_count + 1 if element.tag == "dossier" else None
        while self.next_finding < len(findings):
            finding = findings[self.next_finding]
            if finding.line < start:
                self._add_finding(finding)
            else:
                if end is None:
                    end = max((node.sourceline or 0) for node in element.iter())
                if finding.line > end:
                    break
                self._add_finding(finding, record=record, field=field_at(element, finding))
            self.next_finding += 1

    def _add_finding(
        self, finding: EncodingFinding, *, record: int | None = None, field: str | None = None
    ) -> None:
        self.tally.add(
            finding.rule,
            finding.message,
            line=finding.line,
            record=record,
            field=field,
            value=finding.text,
        )

    # -- end of file -------------------------------------------------------------------------

    def _finish(self) -> None:
        frame, tally = self.frame, self.tally
        if self.root is not None and not frame.fatal:
            for child in list(self.root):
                self._drop(child)
        if not frame.fatal:
            end_line = self.reader.line if self.reader is not None else None
            if frame.phase == BEFORE_HEADER:
                tally.add(
                    Rule.STRUCTURE_MISSING_ELEMENT,
                    "L'en-tête <entete> manque : il doit être le premier élément de <flux>.",
                    line=end_line,
                    field="entete",
                )
            if frame.footer_count is None:
                tally.add(
                    Rule.STRUCTURE_MISSING_ELEMENT,
                    "Le pied de fichier <fin> manque : il doit être le dernier élément de <flux>.",
                    line=end_line,
                    field="fin",
                )
            if frame.footer_count is not None:
                announced, line = frame.footer_count
                if (
                    announced is not None
                    and announced.isdigit()
                    and int(announced) != tally.record_count
                ):
                    tally.add(
                        Rule.FIN_NB_DOSSIER,
                        f"Le pied de fichier annonce {int(announced)} dossier(s) alors que le "
                        f"fichier en contient {tally.record_count}.",
                        line=line,
                        field="fin/nb-dossier",
                        value=announced,
                    )
        if self.reader is not None:
            for finding in self.reader.findings[self.next_finding :]:
                self._add_finding(finding)
            self.next_finding = len(self.reader.findings)
            tally.add_dropped(self.reader.dropped_findings)
        tally.add_aggregated()
        tally.add_spellings(self.spellings)

    def report(self) -> ValidationReport:
        frame = self.frame
        return self.tally.report(frame.spec, frame.header, self.size_bytes, frame.readings)
