"""The validation report: typed issues, NIR masking, bounded collection, dict and CSV forms."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, Final

from portal.flows.core.rules import Rule
from portal.flows.core.types import FlowType, Severity

DEFAULT_MAX_ISSUES: Final = 10_000
DEFAULT_MAX_ISSUES_PER_RULE: Final = 1_000

_NIR_VISIBLE: Final = 7  # sex, year, month and département stay readable: 2850762******
# Anything that looks like a NIR (with or without its key) wherever it appears in a text.
_NIR_LIKE: Final = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[ABab])[0-9]{5,}")
_CSV_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")


def mask_nir(value: str) -> str:
    """`2850762123456` -> `2850762******`: never more than 7 characters, never the last 6."""
    visible = max(0, min(_NIR_VISIBLE, len(value) - 6))
    return value[:visible] + "*" * (len(value) - visible)


# A birth date with its year kept (`1985-**-**`): the year is what a technician needs to find
# the record again; day and month with the NIR's first digits would single the person out.
_BIRTH_DATE_FIELD: Final = "/date-naissance"
_YEAR: Final = re.compile(r"(?<![0-9])(?:19|20)[0-9]{2}(?![0-9])")


def mask_birth_date(value: str) -> str:
    """`1985-07-12` -> `1985-**-**`: every digit hidden but those of the year."""
    year = _YEAR.search(value)
    keep = range(year.start(), year.end()) if year else range(0)
    return "".join("*" if ch.isdigit() and i not in keep else ch for i, ch in enumerate(value))


def redact(text: str) -> str:
    """`text` with every NIR-like run of digits masked."""
    return _NIR_LIKE.sub(lambda match: mask_nir(match.group()), text)


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One broken rule at one place of the file."""

    severity: Severity
    rule: Rule
    message: str  # French, for the technician
    line: int | None = None
    record: int | None = None  # 1-based index of the `dossier`; None for header, footer, file
    field: str | None = None  # e.g. "dossier/individu/nir"
    value: str | None = None  # as found in the file, NIR masked

    def to_dict(self, *, include_values: bool = True) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "severity": self.severity.value,
            "rule": self.rule.value,
            "message": self.message,
            "line": self.line,
            "record": self.record,
            "field": self.field,
            "value": self.value if include_values else None,
        }


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating one flow file: what it is, what it holds, what is wrong with it."""

    flow_type: FlowType | None
    version: str | None
    departement: str | None
    date_reference: date | None
    date_fabrication: date | None
    periodicite: str | None
    record_count: int
    nature_counts: Mapping[str, int]  # CGPEM: records per orientation nature, for sanity checks
    issues: tuple[ValidationIssue, ...]  # stored issues, errors and warnings, in file order
    error_count: int  # every error found, including those past the storage cap
    warning_count: int
    omitted_counts: Mapping[str, int]  # rule -> issues found but not stored (cap reached)
    rule_counts: Mapping[str, int]  # rule -> occurrences (records, for aggregated warnings)
    size_bytes: int
    # Which reading of the convention's contradictory tables the file follows, e.g.
    # "fin/date-reference" -> "premier jour du mois de l'en-tête (tables des pieds de fichier)".
    readings: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def is_valid(self) -> bool:
        """True when the file may be delivered: no error (warnings allowed)."""
        return self.error_count == 0

    @property
    def errors(self) -> tuple[ValidationIssue, ...]:
        """Stored errors."""
        return tuple(i for i in self.issues if i.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[ValidationIssue, ...]:
        """Stored warnings."""
        return tuple(i for i in self.issues if i.severity is Severity.WARNING)

    @property
    def omitted_issue_count(self) -> int:
        """Issues found but not stored, all rules together."""
        return sum(self.omitted_counts.values())

    def to_dict(self, *, include_values: bool = True) -> dict[str, Any]:
        """JSON-ready form (API, `--json`); `include_values=False` drops every field value."""
        return {
            "is_valid": self.is_valid,
            "flow_type": self.flow_type.value if self.flow_type else None,
            "version": self.version,
            "departement": self.departement,
            "date_reference": self.date_reference.isoformat() if self.date_reference else None,
            "date_fabrication": (
                self.date_fabrication.isoformat() if self.date_fabrication else None
            ),
            "periodicite": self.periodicite,
            "record_count": self.record_count,
            "nature_counts": dict(self.nature_counts),
            "size_bytes": self.size_bytes,
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "omitted_issue_count": self.omitted_issue_count,
            "omitted_counts": dict(self.omitted_counts),
            "rule_counts": dict(self.rule_counts),
            "readings": dict(self.readings),
            "issues": [issue.to_dict(include_values=include_values) for issue in self.issues],
        }

    def to_csv(self, *, include_values: bool = True) -> str:
        """The issues as a CSV text (`;`-separated, as French spreadsheets expect)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
        writer.writerow(["gravite", "ligne", "dossier", "champ", "regle", "message", "valeur"])
        for issue in self.issues:
            writer.writerow(
                [
                    issue.severity.label,
                    "" if issue.line is None else issue.line,
                    "" if issue.record is None else issue.record,
                    issue.field or "",
                    issue.rule.value,
                    _csv_safe(issue.message),
                    _csv_safe(issue.value or "") if include_values else "",
                ]
            )
        for rule, count in sorted(self.omitted_counts.items()):
            writer.writerow(
                [
                    Severity.WARNING.label,
                    "",
                    "",
                    "",
                    Rule.REPORT_TRUNCATED.value,
                    f"{count} autre(s) anomalie(s) {rule} non listée(s).",
                    "",
                ]
            )
        return buffer.getvalue()


def _csv_safe(text: str) -> str:
    """Neutralise spreadsheet formulas coming from the file (CSV injection)."""
    return "'" + text if text.startswith(_CSV_FORMULA_PREFIXES) else text


@dataclass
class IssueCollector:
    """Stores issues up to a cap (overall and per rule) and counts the rest."""

    max_issues: int = DEFAULT_MAX_ISSUES
    max_per_rule: int = DEFAULT_MAX_ISSUES_PER_RULE
    issues: list[ValidationIssue] = field(default_factory=list)
    stored_per_rule: Counter[Rule] = field(default_factory=Counter)
    omitted: Counter[str] = field(default_factory=Counter)
    error_count: int = 0
    warning_count: int = 0

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
        severity: Severity | None = None,
    ) -> None:
        """Record one issue; its value is masked if it is a NIR and redacted anyway."""
        severity = severity or rule.severity
        if severity is Severity.ERROR:
            self.error_count += 1
        else:
            self.warning_count += 1
        if len(self.issues) >= self.max_issues or self.stored_per_rule[rule] >= self.max_per_rule:
            self.omitted[rule.value] += 1
            return
        self.stored_per_rule[rule] += 1
        if value is not None:
            nir_field = is_nir or (field is not None and field.endswith("/nir"))
            if field is not None and field.endswith(_BIRTH_DATE_FIELD):
                masked = mask_birth_date(value)
                message, value = message.replace(value, masked) if value else message, masked
            value = mask_nir(value) if nir_field else redact(value)
        self.issues.append(
            ValidationIssue(severity, rule, redact(message), line, record, field, value)
        )

    def sorted_issues(self) -> tuple[ValidationIssue, ...]:
        """Issues in file order; those without a line (whole-file findings) last."""
        return tuple(
            sorted(
                self.issues,
                key=lambda issue: (issue.line is None, issue.line or 0, issue.record or 0),
            )
        )

    def omitted_counts(self) -> Mapping[str, int]:
        """Read-only view of the omitted counts."""
        return MappingProxyType(dict(self.omitted))
