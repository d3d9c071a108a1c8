"""Byte-level guard in front of the XML parser: prolog, encoding traps, DTDs and size limits.

The guard sits between the source and lxml and sees every byte before the parser does, so a
DOCTYPE (with its entities, external DTD and the network access they imply) is refused before
the parser could act on it, and bytes that are not ISO-8859-1 text are located by line.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO, Final

from portal.flows.core.rules import Rule

EXPECTED_ENCODING: Final = "ISO-8859-1"
EXPECTED_PROLOG: Final = '<?xml version="1.0" encoding="ISO-8859-1"?>'

_DECLARATION: Final = re.compile(
    rb"<\?xml\s+version\s*=\s*([\"'])1\.[0-9]+\1"
    rb"(?:\s+encoding\s*=\s*([\"'])([A-Za-z][A-Za-z0-9._-]*)\2)?"
    rb"(?:\s+standalone\s*=\s*([\"'])(?:yes|no)\4)?\s*\?>"
)
_BOMS: Final = (
    (b"\xef\xbb\xbf", "UTF-8"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
# A valid UTF-8 multi-byte sequence, or a lone byte of the C1 range (0x80-0x9F), which
# ISO-8859-1 maps to control characters that never belong in these files.
_SUSPECT: Final = re.compile(
    rb"(?P<utf8>[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3})"
    rb"|(?P<c1>[\x80-\x9f])"
)
# A C-speed sieve before the regexes: bytes.translate maps every byte to its class, then a few
# searches tell whether a chunk may hold a C1 byte, a UTF-8 sequence or a character reference.
_C1_CLASS, _LEAD_CLASS, _TRAIL_CLASS = b"\x01", b"\x02", b"\x03"
_AMPERSAND_CLASS, _HASH_CLASS = b"\x04", b"\x05"


def _byte_class(byte: int) -> int:
    if 0x80 <= byte <= 0x9F:
        return 1
    if 0xC2 <= byte <= 0xF4:
        return 2
    if 0xA0 <= byte <= 0xBF:
        return 3
    return {ord("&"): 4, ord("#"): 5}.get(byte, 0)


_CLASSES: Final = bytes(_byte_class(b) for b in range(256))
# What may precede the root element: white space, the XML declaration, PIs and comments.
# A DOCTYPE (and the DTD, entities and network access it brings) can only appear there; after
# the root element starts, libxml2 treats `<!DOCTYPE` as a fatal syntax error.
_PROLOG_ITEM: Final = re.compile(rb"[ \t\r\n]+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_MAX_PROLOG: Final = 64 * 1024
_CHAR_REFERENCE: Final = re.compile(rb"&#(?:x([0-9A-Fa-f]{1,8})|([0-9]{1,10}));")
_MAX_PENDING: Final = 1 << 20  # bytes held back at most while looking for a safe cut


class GuardAbort(Exception):
    """The file cannot be parsed further; carries the issue that explains why."""

    def __init__(self, rule: Rule, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.line = line


@dataclass(frozen=True, slots=True)
class EncodingFinding:
    """Bytes on a line that are not ISO-8859-1 text."""

    rule: Rule
    line: int
    message: str
    text: str  # the offending characters as the parser will decode them (ISO-8859-1)


def check_prolog(head: bytes) -> None:
    """Refuse a file that does not start with an XML declaration of ISO-8859-1."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            raise GuardAbort(
                Rule.ENCODING_BOM,
                f"Le fichier commence par une marque d'ordre des octets {name} (BOM) : il est "
                f"encodé en {name}. Enregistrez-le en ISO-8859-1 (Latin-1), sans BOM, avec le "
                f"prologue {EXPECTED_PROLOG}",
                1,
            )
    match = _DECLARATION.match(head)
    if match is None:
        raise GuardAbort(
            Rule.ENCODING_DECLARATION,
            f"Le fichier doit commencer par le prologue {EXPECTED_PROLOG}",
            1,
        )
    declared = match.group(3)
    if declared is None:
        raise GuardAbort(
            Rule.ENCODING_DECLARATION,
            f"Le prologue ne déclare pas d'encodage : il doit déclarer {EXPECTED_ENCODING} "
            f"({EXPECTED_PROLOG}).",
            1,
        )
    name = declared.decode("ascii")
    if name.upper() != EXPECTED_ENCODING:
        raise GuardAbort(
            Rule.ENCODING_DECLARATION,
            f"Le prologue déclare l'encodage « {name} » : seul {EXPECTED_ENCODING} est accepté. "
            f"Enregistrez le fichier en ISO-8859-1 (Latin-1) avec le prologue {EXPECTED_PROLOG}",
            1,
        )


def _size(count: int) -> str:
    if count >= 1 << 20:
        return f"{count / (1 << 20):.0f} Mio"
    return f"{count / 1024:.0f} Kio"


def _has_pair(classes: bytes, first: bytes, second: bytes) -> bool:
    """Whether `first` is immediately followed by `second` (both single bytes)."""
    position = classes.find(second, 1)
    for _ in range(64):
        if position < 0:
            return False
        if classes[position - 1] == first[0]:
            return True
        position = classes.find(second, position + 1)
    return first + second in classes


class GuardedReader:
    """File-like wrapper handed to lxml: checks each chunk before the parser receives it.

    Chunks are cut just after a newline (or a `>`), a place where no multi-byte sequence, no
    character reference and no `<!DOCTYPE` can straddle two chunks: each chunk is checked whole
    before the parser sees any of it.
    """

    def __init__(
        self,
        source: BinaryIO,
        *,
        max_bytes: int,
        max_bytes_between_marks: int,
        max_findings: int = 10_000,
    ) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._max_between_marks = max_bytes_between_marks
        self._max_findings = max_findings
        self._started = False
        self._at_eof = False
        self._pending = b""
        self._line = 1  # line number of the first byte of the next chunk
        self._lines_seen: set[tuple[Rule, int]] = set()
        self._mark = 0
        self._prolog: bytes | None = b""  # bytes before the root element, None once past it
        self.findings: list[EncodingFinding] = []
        self.dropped_findings: Counter[Rule] = Counter()
        self.bytes_read = 0

    @property
    def line(self) -> int:
        """Line number reached by the bytes handed to the parser so far."""
        return self._line

    def mark(self) -> None:
        """Called by the validator each time it consumes a top-level element."""
        self._mark = self.bytes_read

    def read(self, size: int = -1) -> bytes:
        """Next chunk for the parser, checked; b"" at the end."""
        size = size if size > 0 else 1 << 16
        if not self._started:
            self._started = True
            self._pending = self._take(1024)
            while len(self._pending) < 1024 and not self._at_eof:
                self._pending += self._take(1024 - len(self._pending))
            check_prolog(self._pending)
        while True:
            if self._at_eof:
                out, self._pending = self._pending, b""
                self._inspect(out)
                return out
            data = self._pending + self._take(size)
            cut = data.rfind(b"\n") + 1 or data.rfind(b">") + 1
            if cut == 0 and len(data) < _MAX_PENDING and not self._at_eof:
                self._pending = data
                continue
            if cut == 0 or self._at_eof:
                cut = len(data)
            out, self._pending = data[:cut], data[cut:]
            self._inspect(out)
            return out

    def _take(self, size: int) -> bytes:
        chunk = self._source.read(size)
        if not chunk:
            self._at_eof = True
            return b""
        self.bytes_read += len(chunk)
        if self.bytes_read > self._max_bytes:
            raise GuardAbort(
                Rule.XML_TOO_LARGE,
                f"Le fichier dépasse la taille maximale acceptée ({_size(self._max_bytes)}) : "
                "analyse interrompue.",
            )
        if self.bytes_read - self._mark > self._max_between_marks:
            raise GuardAbort(
                Rule.XML_RECORD_TOO_LARGE,
                f"Plus de {_size(self._max_between_marks)} sans fin d'en-tête, de dossier ou de "
                "pied de fichier : structure anormale, analyse interrompue.",
                self._line,
            )
        return chunk

    def _inspect(self, data: bytes) -> None:
        if not data:
            return
        if self._prolog is not None:
            self._check_prolog(data)
        classes = data.translate(_CLASSES)
        # Single-byte searches are memchr-fast; pairs are looked for only around their rarer byte.
        if _C1_CLASS in classes or _has_pair(classes, _LEAD_CLASS, _TRAIL_CLASS):
            self._scan_suspects(data)
        if _AMPERSAND_CLASS in classes and _AMPERSAND_CLASS + _HASH_CLASS in classes:
            self._scan_char_references(data)
        self._line += data.count(b"\n")

    def _check_prolog(self, data: bytes) -> None:
        """Refuse `<!` markup (DOCTYPE, ENTITY) before the root element; stop at the root."""
        assert self._prolog is not None  # noqa: S101 - only called while in the prolog
        prolog = self._prolog + data
        start_line = self._line - self._prolog.count(b"\n")
        position = 0
        while (item := _PROLOG_ITEM.match(prolog, position)) is not None:
            position = item.end()
        rest = prolog[position : position + 9]
        if rest.startswith(b"<!") and not b"<!--".startswith(rest[:4]):
            markup = "DOCTYPE" if rest.startswith(b"<!DOCTYPE") else rest.decode("latin-1")
            raise GuardAbort(
                Rule.XML_DOCTYPE,
                f"Déclaration {markup} interdite : les flux ne doivent contenir ni DOCTYPE ni "
                "entité (risque d'entités externes et d'expansion). Le fichier n'a pas été "
                "analysé plus loin.",
                start_line + prolog.count(b"\n", 0, position),
            )
        if rest.startswith(b"<") and not rest.startswith((b"<!", b"<?")):
            self._prolog = None  # the root element starts here
        elif len(prolog) > _MAX_PROLOG:
            raise GuardAbort(
                Rule.XML_MALFORMED,
                "Le prologue (avant l'élément racine) est anormalement long : analyse interrompue.",
                start_line,
            )
        else:
            self._prolog = prolog

    def _line_at(self, data: bytes, position: int) -> int:
        return self._line + data.count(b"\n", 0, position)

    def _add(self, rule: Rule, line: int, message: str, text: str) -> None:
        if (rule, line) in self._lines_seen:
            return
        if len(self.findings) >= self._max_findings:
            self.dropped_findings[rule] += 1
            return
        self._lines_seen.add((rule, line))
        self.findings.append(EncodingFinding(rule, line, message, text))

    def _scan_suspects(self, data: bytes) -> None:
        for match in _SUSPECT.finditer(data):
            raw = match.group()
            line = self._line_at(data, match.start())
            if match.lastgroup == "utf8":
                try:
                    decoded = raw.decode("utf-8")
                except UnicodeDecodeError:
                    continue  # e.g. an overlong form: plain ISO-8859-1 text after all
                self._add(
                    Rule.ENCODING_UTF8,
                    line,
                    f"Caractère « {decoded} » encodé en UTF-8 (octets {raw.hex(' ').upper()}) : "
                    "le fichier semble enregistré en UTF-8 alors qu'il déclare ISO-8859-1. "
                    "Enregistrez-le en ISO-8859-1 (Latin-1).",
                    raw.decode("latin-1"),
                )
            else:
                byte = raw[0]
                try:
                    windows = f" (« {raw.decode('cp1252')} » en Windows-1252)"
                except UnicodeDecodeError:
                    windows = ""
                self._add(
                    Rule.ENCODING_C1_CONTROL,
                    line,
                    f"Caractère de contrôle C1 (octet 0x{byte:02X}){windows} : le fichier semble "
                    "encodé en Windows-1252 et non en ISO-8859-1. Remplacez ce caractère.",
                    raw.decode("latin-1"),
                )

    def _scan_char_references(self, data: bytes) -> None:
        for match in _CHAR_REFERENCE.finditer(data):
            hexadecimal, decimal = match.group(1), match.group(2)
            code = int(hexadecimal, 16) if hexadecimal else int(decimal)
            if code <= 0xFF and not 0x80 <= code <= 0x9F:
                continue
            try:
                text = chr(code)
            except (ValueError, OverflowError):
                text = ""
            self._add(
                Rule.ENCODING_CHAR_REFERENCE,
                self._line_at(data, match.start()),
                f"La référence de caractère {match.group().decode('ascii')} désigne un "
                "caractère hors d'ISO-8859-1 (ou un caractère de contrôle) : elle est refusée.",
                text,
            )
