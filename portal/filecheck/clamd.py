"""A small client of the ClamAV daemon (`clamd`), over its UNIX socket or TCP.

Only what the portal needs of the protocol (clamd(8), "COMMANDS"): `PING`, `VERSION` and
`INSTREAM`, each on its own connection, with the `z` prefix (NUL-terminated commands and
replies). `INSTREAM` sends the file as chunks, each prefixed by its length as a 4-byte
big-endian integer, and a zero length to end; clamd answers `stream: OK`,
`stream: <signature> FOUND` or `<message> ERROR`.

Why not a package from PyPI: `clamd` (the historical client) was last released in 2017 and
`pyclamd` in 2017 too; the protocol is four commands, and this module is tested against a real
clamd (tests/filecheck/test_clamd.py).

`ClamdStream` lets a caller feed the scan while the upload streams into the store: each chunk
is written to the socket as it goes by, and the verdict is read once the last one is sent.
Anything that goes wrong with the daemon (not running, killed mid-scan, too slow, a reply it
should not give, its stream size limit) is `ClamdUnavailable`: the caller fails closed.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

from portal.filecheck.verdict import Chunk

DEFAULT_TIMEOUT: Final = 120.0
_MAX_REPLY: Final = 4096
# A signature name as clamd prints it; anything else in a reply is not put in a message.
_SIGNATURE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,199}")
_FOUND: Final = re.compile(rb"^stream: (.+) FOUND$")


class ClamdUnavailable(Exception):
    """clamd could not give a verdict: not running, killed, too slow, or an error reply."""


@dataclass(frozen=True, slots=True)
class ScanVerdict:
    """What clamd found in a stream: nothing (`signature` None) or a named signature."""

    signature: str | None

    @property
    def is_clean(self) -> bool:
        """True when no signature matched."""
        return self.signature is None


def parse_url(url: str) -> tuple[int, str | tuple[str, int]]:
    """The socket family and address of `unix:///path` or `tcp://host:port`."""
    parts = urlsplit(url)
    if parts.scheme == "unix" and parts.path:
        return socket.AF_UNIX, parts.path
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        return socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET, (
            parts.hostname,
            parts.port,
        )
    raise ValueError("clamd URL must be unix:///path/to/clamd.sock or tcp://host:port")


def signature_date(version: str) -> datetime | None:
    """The date of the signature databases in a `VERSION` reply, or None when it has none.

    `ClamAV 1.4.6/27123/Sun Dec  6 09:30:00 2026`: the third part is the build time of the
    newest official database (daily.cvd). A daemon on local databases only answers
    `ClamAV 1.4.6`: its signatures have no date.
    """
    parts = version.split("/", 2)
    if len(parts) < 3:
        return None
    try:
        # The time is clamd's local time without a zone; clamd runs in UTC on our hosts and
        # two days of tolerance make an hour of offset irrelevant.
        return datetime.strptime(" ".join(parts[2].split()), "%a %b %d %H:%M:%S %Y").replace(
            tzinfo=UTC
        )
    except ValueError:
        return None


class ClamdClient:
    """Talks to one clamd; every call opens its own connection (clamd serves them in threads)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.family, self.address = parse_url(url)
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.address)
        except OSError as e:
            sock.close()
            raise ClamdUnavailable(f"clamd unreachable: {e.strerror or e}") from e
        return sock

    def _command(self, command: bytes) -> str:
        sock = self._connect()
        try:
            sock.sendall(b"z" + command + b"\0")
            return _read_reply(sock)
        except OSError as e:
            raise ClamdUnavailable(f"clamd failed: {e}") from e
        finally:
            sock.close()

    def ping(self) -> bool:
        """True when clamd answers PONG."""
        try:
            return self._command(b"PING") == "PONG"
        except ClamdUnavailable:
            return False

    def version(self) -> str:
        """clamd's `VERSION` reply (engine, database version and date)."""
        return self._command(b"VERSION")

    def stream(self) -> ClamdStream:
        """Start an INSTREAM scan: feed it chunks, then `finish` for the verdict."""
        return ClamdStream(self._connect())

    def scan(self, chunks: Iterable[Chunk]) -> ScanVerdict:
        """Scan a whole stream."""
        scan = self.stream()
        try:
            for chunk in chunks:
                scan.feed(chunk)
            return scan.finish()
        finally:
            scan.close()


class ClamdStream:
    """One INSTREAM scan in progress: `feed` every chunk, then `finish` (or `close` to drop)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock
        self._size = 0
        try:
            sock.sendall(b"zINSTREAM\0")
        except OSError as e:
            self.close()
            raise ClamdUnavailable(f"clamd failed: {e}") from e

    @property
    def size(self) -> int:
        """Bytes sent so far."""
        return self._size

    def feed(self, chunk: Chunk) -> None:
        """Send one chunk (of at most 4 GiB, as the protocol's length field allows)."""
        sock = self._sock
        if sock is None:
            raise ClamdUnavailable("the scan is closed")
        view = memoryview(chunk).cast("B")
        if not len(view):
            return  # a zero length would end the stream
        try:
            sock.sendall(struct.pack("!L", len(view)))
            sock.sendall(view)
        except OSError as e:
            # clamd killed, or it refused the stream (its StreamMaxLength) and closed it.
            self.close()
            raise ClamdUnavailable(f"clamd failed while receiving the stream: {e}") from e
        self._size += len(view)

    def finish(self) -> ScanVerdict:
        """End the stream and return clamd's verdict."""
        sock = self._sock
        if sock is None:
            raise ClamdUnavailable("the scan is closed")
        try:
            sock.sendall(b"\0\0\0\0")
            reply = _read_reply(sock)
        except OSError as e:
            raise ClamdUnavailable(f"clamd failed while scanning: {e}") from e
        finally:
            self.close()
        if reply == "stream: OK":
            return ScanVerdict(None)
        found = _FOUND.match(reply.encode())
        if found:
            name = found.group(1).decode("ascii", "replace")
            if not _SIGNATURE.fullmatch(name):
                name = "signature-inconnue"
            return ScanVerdict(name)
        # "INSTREAM size limit exceeded. ERROR", "... ERROR": no verdict.
        raise ClamdUnavailable(f"clamd gave no verdict: {reply[:200]!r}")

    def close(self) -> None:
        """Drop the connection (clamd abandons the scan)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _read_reply(sock: socket.socket) -> str:
    data = bytearray()
    while not data.endswith(b"\0"):
        part = sock.recv(_MAX_REPLY)
        if not part:
            raise ClamdUnavailable("clamd closed the connection without a verdict")
        data += part
        if len(data) > _MAX_REPLY:
            raise ClamdUnavailable("clamd's reply is too long")
    return data[:-1].decode("utf-8", "replace").strip()
