"""The clamd client against a real clamd on a local signature database."""

from __future__ import annotations

import io
import socket
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from portal.filecheck.clamd import ClamdClient, ClamdUnavailable, parse_url, signature_date
from tests.support.clamd import (
    EICAR,
    EICAR_SIGNATURE,
    FILR_SIGNATURE,
    FILR_TEST_STRING,
    ClamdServer,
    shared_clamd,
)


@pytest.fixture
def clamd() -> ClamdClient:
    return ClamdClient(shared_clamd().url, timeout=30)


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _docx(body: bytes) -> bytes:
    return _zip(
        {
            "[Content_Types].xml": b'<?xml version="1.0"?><Types/>',
            "word/document.xml": b'<?xml version="1.0"?><w:document/>',
            "word/media/image1.bin": body,
        }
    )


def _chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_clean_file_is_clean(clamd: ClamdClient) -> None:
    verdict = clamd.scan(_chunks(b"Bonjour, voici la fiche de liaison.\n" * 1000, 4096))
    assert verdict.is_clean
    assert verdict.signature is None


def test_eicar_is_found_by_name(clamd: ClamdClient) -> None:
    verdict = clamd.scan(_chunks(EICAR))
    assert not verdict.is_clean
    assert verdict.signature == EICAR_SIGNATURE


def test_the_projects_own_signature_is_found_inside_a_larger_file(clamd: ClamdClient) -> None:
    data = b"%PDF-1.7\n" + b"x" * 100_000 + FILR_TEST_STRING + b"y" * 1000
    assert clamd.scan(_chunks(data, 65536)).signature == FILR_SIGNATURE


def test_eicar_inside_a_zip_is_found(clamd: ClamdClient) -> None:
    archive = _zip({"notes.txt": b"rien", "dossier/eicar.com": EICAR})
    assert clamd.scan([archive]).signature == EICAR_SIGNATURE


def test_eicar_inside_an_ooxml_document_is_found(clamd: ClamdClient) -> None:
    assert clamd.scan([_docx(EICAR)]).signature == EICAR_SIGNATURE
    assert clamd.scan([_docx(b"image")]).is_clean


def test_ping_and_version(clamd: ClamdClient) -> None:
    assert clamd.ping()
    assert clamd.version().startswith("ClamAV ")


def test_a_daemon_that_is_not_there_is_unavailable(tmp_path: Path) -> None:
    client = ClamdClient(f"unix://{tmp_path / 'none.sock'}", timeout=1)
    assert not client.ping()
    with pytest.raises(ClamdUnavailable):
        client.scan([b"data"])


def test_a_daemon_killed_mid_scan_gives_no_verdict(tmp_path: Path) -> None:
    # Given a clamd of our own, and a scan under way
    server = ClamdServer(tmp_path).start()
    try:
        scan = ClamdClient(server.url, timeout=10).stream()
        scan.feed(b"a" * 65536)
        # When clamd dies before the end of the stream
        server.kill()
        # Then the scan fails: no verdict, never "clean"
        with pytest.raises(ClamdUnavailable):
            for _ in range(64):
                scan.feed(b"b" * 65536)
            scan.finish()
    finally:
        server.close()


def test_a_daemon_that_never_answers_times_out(tmp_path: Path) -> None:
    # A listener that accepts and says nothing: the client's timeout ends the wait.
    path = tmp_path / "mute.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]))
    thread.start()
    try:
        with pytest.raises(ClamdUnavailable):
            ClamdClient(f"unix://{path}", timeout=0.5).scan([b"data"])
    finally:
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_urls() -> None:
    assert parse_url("unix:///run/clamav/clamd.ctl") == (socket.AF_UNIX, "/run/clamav/clamd.ctl")
    assert parse_url("tcp://127.0.0.1:3310") == (socket.AF_INET, ("127.0.0.1", 3310))
    for wrong in ("clamd.sock", "tcp://host", "http://x:1"):
        with pytest.raises(ValueError, match="clamd URL"):
            parse_url(wrong)


def test_signature_date_is_read_from_the_version() -> None:
    assert signature_date("ClamAV 1.4.6/27123/Sun Dec  6 09:30:00 2026") == datetime(
        2026, 12, 6, 9, 30, tzinfo=UTC
    )
    assert signature_date("ClamAV 1.4.6") is None
    assert signature_date("ClamAV 1.4.6/27123/not a date") is None
