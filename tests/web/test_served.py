"""The portal as `filr serve` runs it, spoken to on raw sockets: what the test client cannot show.

The Flask test client hands the application header values as Python text and never goes through
gunicorn's parser: the Latin-1 decoding of header bytes (PEP 3333) and gunicorn's own answers to
malformed requests only appear on a real server.
"""

from __future__ import annotations

import re
import socket
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import pytest

from portal.gate import CSP, HSTS, SECURITY_HEADERS
from portal.serving import error_response

# The real `filr serve` of the browser journeys, re-exported: a fixture of this module too.
from tests.browser.conftest import LiveServer
from tests.browser.conftest import live_server as live_server

UA = "Mozilla/5.0 (X11; Hélène Dupré ☃ 日本語)"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer read off the socket."""

    status: int
    headers: dict[str, str]
    body: bytes


def exchange(server: LiveServer, raw: bytes) -> Answer:
    """Send *raw* bytes on a new connection and read the whole answer (the server closes)."""
    parts = urlsplit(server.url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def request(server: LiveServer, method: str, path: str, headers: dict[str, bytes],
            body: bytes = b"") -> Answer:  # fmt: skip
    """One HTTP/1.1 request with header values as raw bytes (UTF-8 user agents included)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return exchange(server, b"\r\n".join(lines) + b"\r\n\r\n" + body)


def database(server: LiveServer) -> sqlite3.Connection:
    return sqlite3.connect(server.env["FILR_DATABASE_URL"].removeprefix("sqlite:///"))


def test_a_utf8_user_agent_is_stored_as_sent_in_the_session_and_the_audit_trail(
    live_server: LiveServer,
) -> None:
    # Given a browser whose user agent carries accents, a snowman and Japanese, in UTF-8
    ua = {"User-Agent": UA.encode()}
    page = request(live_server, "GET", "/connexion", ua)
    cookie = page.headers["set-cookie"].split(";")[0].encode()
    match = re.search(rb'name="csrf_token" value="([^"]+)"', page.body)
    assert match is not None
    # When it fails to log in (an audited event)
    form = urlencode({
        "csrf_token": match.group(1).decode(), "email": "personne@example.org",
        "password": "not the password", "code": "000000",
    }).encode()  # fmt: skip
    headers = {**ua, "Cookie": cookie, "Content-Type": b"application/x-www-form-urlencoded"}
    assert request(live_server, "POST", "/connexion", headers, form).status == 200
    # Then its session row and its audit row carry the user agent as sent, not Latin-1 mojibake
    # sqlite3's own context manager ends the transaction but leaves the connection open
    with closing(database(live_server)) as db:
        sessions = [r[0] for r in db.execute("SELECT user_agent FROM server_session")]
        audited = [
            r[0]
            for r in db.execute(
                "SELECT user_agent FROM audit_event WHERE action = 'auth:login:failure'"
            )
        ]
    assert UA in sessions
    assert audited and audited[-1] == UA


MALFORMED = [
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="request-line"),
    pytest.param(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, id="long-uri"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, id="big-header"
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, id="bad-header"),
]


@pytest.mark.parametrize(("raw", "status"), MALFORMED)
def test_gunicorns_own_error_answers_carry_the_security_headers_and_a_french_page(
    live_server: LiveServer, raw: bytes, status: int
) -> None:
    # Given the headers of an answer of the application itself
    normal = request(live_server, "GET", "/sante", {})
    assert normal.status == 200
    expected = {"content-security-policy": CSP, "cache-control": "no-store"}
    expected |= {name.lower(): value for name, value in SECURITY_HEADERS.items()}
    assert {k: normal.headers.get(k) for k in expected} == expected
    # When a request that gunicorn refuses before the application sees it arrives
    answer = exchange(live_server, raw)
    # Then the answer has gunicorn's status and the same security headers
    assert answer.status == status
    assert {k: answer.headers.get(k) for k in expected} == expected
    hsts = "strict-transport-security"
    assert answer.headers.get(hsts) == normal.headers.get(hsts)  # none on plain-HTTP loopback
    # And a short French page that does not echo the request back
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert int(answer.headers["content-length"]) == len(answer.body)
    page = answer.body.decode()
    assert '<html lang="fr">' in page and "Fil'R" in page
    assert "GARBAGE" not in page and "aaaa" not in page and "colon" not in page


def test_the_servers_error_answer_carries_hsts_when_the_portal_is_served_over_https() -> None:
    # Given the answer the worker writes for a portal whose cookies are Secure (HTTPS)
    head, _, body = error_response(431, hsts=True).partition(b"\r\n\r\n")
    # Then it has HSTS like every other answer, and its length is the page's
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large"
    assert f"Strict-Transport-Security: {HSTS}" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert "En-têtes trop volumineux" in body.decode()
