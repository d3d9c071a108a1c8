"""No secret and no NIR in the application's logs or audit rows, over the whole test session.

The test session remembers the secrets it hands out or sees go by (factory passwords, TOTP
secrets, session cookies, download-link and other URL tokens), keeps every log record, and reads
the audit rows of every functional test's database when its app is torn down. Anything found is
reported once, at the end of the session (tests/conftest.py), with the secret itself masked.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from http.cookies import SimpleCookie

import sqlalchemy as sa

# A NIR (French social security number): sex, year, month, département (2A/2B for Corsica),
# commune, order number, optional key; with or without the usual spaces. Bounded by
# non-alphanumerics so that hashes and hexadecimal ids, full of digit runs, do not match.
NIR = re.compile(
    r"(?<![0-9A-Za-z])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3}"
    r"(?: ?\d{2})?(?![0-9A-Za-z])"
)
# URL paths that carry a bearer token (download links, activation, reset, MFA enrolment).
TOKEN_PATH = re.compile(
    r"/(?:telechargement|activation|mot-de-passe/reinitialiser|mfa/enrolement)/"
    r"([A-Za-z0-9_.\-]{16,})"
)
# Audit columns holding free text (hashes and timestamps cannot carry a secret).
AUDIT_TEXT_COLUMNS = (
    "action",
    "actor_id",
    "actor_org_id",
    "target_type",
    "target_id",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
)


@dataclass(frozen=True)
class Finding:
    """One secret or NIR seen where it must not be."""

    kind: str
    where: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.kind} in {self.where}: {self.excerpt}"


def _mask(text: str, value: str) -> str:
    start = max(0, text.find(value) - 30)
    window = text[start : start + len(value) + 60]
    return window.replace(value, "<" + "*" * 6 + ">")


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lock_records = threading.Lock()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" | {record.exc_info[1]!r}"
        except Exception:  # a malformed record must not break the test it is in
            text = f"{record.name}: {record.msg!r} {record.args!r}"
        with self.lock_records:
            self.lines.append(text)

    def drain(self) -> list[str]:
        with self.lock_records:
            lines, self.lines = self.lines, []
        return lines


class LeakScanner:
    """Remembers secrets, collects texts, and reports where a secret or a NIR appears."""

    def __init__(self) -> None:
        self.handler = _Collector()
        self.findings: list[Finding] = []
        self._lasting: dict[str, str] = {}  # value -> kind, for the whole session
        self._current: dict[str, str] = {}  # value -> kind, for the running test
        self._pending: list[tuple[str, str | None]] = []  # (where, text) read, not yet scanned
        self.scanned_texts = 0

    # --- secrets --------------------------------------------------------------------------

    def remember(self, kind: str, value: str | None, *, lasting: bool = False) -> None:
        """Watch for *value* (too short a value would match by chance: ignored)."""
        if value and len(value) >= 8:
            (self._lasting if lasting else self._current)[value] = kind

    def remember_response(self, set_cookies: Iterable[str], location: str | None) -> None:
        """Session cookies and URL tokens handed to a browser."""
        for header in set_cookies:
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(header)
            except Exception:  # noqa: S112 - not a cookie we can parse: nothing to watch
                continue
            for morsel in cookie.values():
                self.remember(f"cookie {morsel.key}", morsel.value)
        if location:
            for match in TOKEN_PATH.finditer(location):
                self.remember("URL token", match.group(1))

    def remember_mails(self, messages: Iterable[Message]) -> None:
        """Tokens of the links sent by e-mail (activation, password reset, MFA enrolment)."""
        for message in messages:
            for part in message.walk():
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    for match in TOKEN_PATH.finditer(payload.decode("utf-8", "replace")):
                        self.remember("URL token", match.group(1))

    def end_test(self) -> None:
        """Scan what the test logged and the audit rows it wrote, then forget its secrets."""
        pending, self._pending = self._pending, []
        for where, text in pending:
            self.scan(where, [text])
        self.scan("log", self.handler.drain())
        self._current.clear()

    # --- scanning -------------------------------------------------------------------------

    def scan(self, where: str, texts: Iterable[str | None]) -> None:
        """Record a finding for every secret or NIR in *texts*."""
        secrets = {**self._lasting, **self._current}
        for text in texts:
            if not text:
                continue
            self.scanned_texts += 1
            match = NIR.search(text)
            if match:
                self.findings.append(Finding("NIR", where, _mask(text, match.group(0))))
            for value, kind in secrets.items():
                if value in text:
                    self.findings.append(Finding(kind, where, _mask(text, value)))

    def collect_audit(self, engine: sa.Engine, where: str) -> None:
        """Read the free-text columns of every audit row in *engine*'s database, to scan."""
        columns = ", ".join(AUDIT_TEXT_COLUMNS)
        try:
            with engine.connect() as conn:
                rows = conn.exec_driver_sql(f"SELECT seq, {columns} FROM audit_event").all()  # noqa: S608 - constant column list
        except sa.exc.DBAPIError:
            return  # no audit table here (a test of migrations or of an empty database)
        for row in rows:
            self._pending.extend((f"{where}, audit row {row[0]}", text) for text in row[1:])

    def report(self) -> str:
        """A readable list of the findings (secrets masked)."""
        unique = list(dict.fromkeys(str(f) for f in self.findings))
        return "\n".join(unique)


# The session's one scanner: tests/conftest.py installs it; the factories and fixtures tell it
# the secrets they hand out.
LEAKS = LeakScanner()
