"""Streamed exports of audit events: CSV (spreadsheet-safe), JSON Lines and a JSON array."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC
from typing import Any

from audit.models import EVENT_COLUMNS, AuditEvent

CSV_COLUMNS: tuple[str, ...] = EVENT_COLUMNS

# A cell starting with one of these is run as a formula by spreadsheet software (OWASP
# "CSV Injection"): such cells are prefixed with a quote, which is shown, never evaluated.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")

# Bidirectional controls reorder what a spreadsheet or a terminal shows ("Trojan Source",
# CVE-2021-42574): a user agent ending in U+202E would reverse the cells after it. They are
# written as visible escapes, as the security workspace shows them.
_BIDI_CONTROLS = str.maketrans(
    {
        code: f"\\u{code:04x}"
        for code in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    }
)


def event_as_dict(event: AuditEvent) -> dict[str, Any]:
    """The event as plain JSON-ready values, ``details`` parsed back into an object."""
    try:
        details: Any = json.loads(event.details or "{}")
    except ValueError:
        # A row altered outside the application: keep its text rather than lose it.
        details = {"unparsed": event.details}
    row: dict[str, Any] = {column: getattr(event, column) for column in EVENT_COLUMNS}
    row["occurred_at"] = event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    row["details"] = details
    return row


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    text = text.translate(_BIDI_CONTROLS)
    return "'" + text if text.startswith(_FORMULA_START) else text


class SafeCsvWriter:
    """A CSV writer (CRLF) whose every cell is neutralised as the trail's export does: a
    leading formula character is quoted, bidirectional controls are escaped. For any CSV a
    person opens in a spreadsheet (incident files, review progress)."""

    def __init__(self, buffer: io.StringIO, *, delimiter: str = ";") -> None:
        self._writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([_csv_cell(value) for value in row])


def _csv_line(cells: Iterable[str], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(list(cells))
    return buffer.getvalue()


def iter_csv(
    events: Iterable[AuditEvent],
    *,
    delimiter: str = ",",
    headers: Mapping[str, str] | None = None,
    derived: Iterable[tuple[str, Callable[[AuditEvent], str]]] = (),
) -> Iterator[str]:
    """CSV (RFC 4180) lines, header first; values with CR/LF stay inside one quoted cell.

    *headers* renames the columns (a spreadsheet in French); *derived* adds columns computed
    from each event (a label beside a code), written after the event's own columns.
    """
    extra = list(derived)
    names = [(headers or {}).get(c, c) for c in CSV_COLUMNS] + [name for name, _ in extra]
    yield _csv_line(names, delimiter)
    for event in events:
        row = event_as_dict(event)
        cells = [_csv_cell(row[column]) for column in CSV_COLUMNS]
        cells += [_csv_cell(compute(event)) for _, compute in extra]
        yield _csv_line(cells, delimiter)


def _json(event: AuditEvent) -> str:
    # ensure_ascii: control characters and line separators are escaped, one event per line.
    return json.dumps(event_as_dict(event), ensure_ascii=True, separators=(",", ":"))


def iter_jsonl(events: Iterable[AuditEvent]) -> Iterator[str]:
    """JSON Lines: one event object per line (the format SIEMs ingest)."""
    for event in events:
        yield _json(event) + "\n"


def iter_json_array(events: Iterable[AuditEvent]) -> Iterator[str]:
    """One valid JSON array, streamed element by element."""
    yield "["
    separator = "\n"
    for event in events:
        yield separator + _json(event)
        separator = ",\n"
    yield "\n]\n"


def iter_rows_csv(
    headers: Iterable[str], rows: Iterable[Iterable[Any]], *, delimiter: str = ","
) -> Iterator[str]:
    """Any table as CSV lines, header first, with the same neutralised cells as the audit
    export (formulas quoted, bidirectional controls escaped): the portal's other CSV files."""
    yield _csv_line([_csv_cell(h) for h in headers], delimiter)
    for row in rows:
        yield _csv_line([_csv_cell(cell) for cell in row], delimiter)
