"""Hostile XML: DTDs, entities, network access, depth and size. Nothing is expanded or fetched."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from portal.flows.core import FlowType, Rule
from portal.flows.core.validator import open_events
from tests.flows.conftest import CORPUS, Sample, check, located


class Listener:
    """A TCP server on 127.0.0.1 that records every connection it receives."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.port: int = self._server.getsockname()[1]
        self.connections: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(0.5)
                try:
                    self.connections.append(connection.recv(4096))
                except OSError:
                    self.connections.append(b"")

    def close(self) -> None:
        time.sleep(0.2)  # let a late connection attempt arrive before counting
        self._stop.set()
        self._thread.join()
        self._server.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def _payload(listener: Listener) -> bytes:
    template = (CORPUS / "dtd_externe_reseau.xml.in").read_bytes()
    return template.replace(b"{port}", str(listener.port).encode())


def test_the_listener_does_see_a_real_connection(listener: Listener) -> None:
    # Control: proves that the "no connection" assertions below can fail.
    with socket.create_connection(("127.0.0.1", listener.port)) as client:
        client.sendall(b"ping")
    listener.close()

    assert listener.connections == [b"ping"]


def test_xxe_reading_a_local_file_is_refused_without_expansion() -> None:
    # Given the classic XXE payload on /etc/passwd
    data = (CORPUS / "xxe_fichier_local.xml").read_bytes()

    # When it is validated
    report = check(data)

    # Then the DOCTYPE is refused before parsing and nothing of the file leaks
    assert located(report) == [("xml.doctype", None, 2, None)]
    assert report.record_count == 0
    text = str(report.to_dict()) + report.to_csv()
    assert "root:" not in text and "/bin/" not in text


def test_billion_laughs_is_refused_at_once() -> None:
    data = (CORPUS / "billion_laughs.xml").read_bytes()

    started = time.perf_counter()
    report = check(data)

    assert located(report) == [("xml.doctype", None, 2, None)]
    assert time.perf_counter() - started < 1


def test_an_external_dtd_and_entities_on_the_network_are_never_fetched(
    listener: Listener,
) -> None:
    # Given a DOCTYPE whose DTD and entities live on a server that records connections
    data = _payload(listener)

    # When the file is validated
    report = check(data)
    listener.close()

    # Then it is refused and the server never heard from us
    assert [i.rule for i in report.issues] == [Rule.XML_DOCTYPE]
    assert listener.connections == []


def test_the_parser_itself_fetches_and_expands_nothing_even_past_the_guard(
    listener: Listener,
) -> None:
    # Given the hostile payloads handed to the parser directly (as if the guard were gone)
    names = []
    for data in (_payload(listener), (CORPUS / "billion_laughs.xml").read_bytes()):
        # When lxml parses them with the validator's options
        try:
            for _event, element in open_events(io.BytesIO(data)):
                names.extend(node.text or "" for node in element.iter("nom-naissance"))
        except etree.XMLSyntaxError:
            pass
    listener.close()

    # Then no entity was expanded and no connection was made
    assert all("lol" not in name for name in names)
    assert listener.connections == []


def test_schema_location_hints_and_xinclude_are_not_followed(
    listener: Listener, sample: Sample
) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    url = f"http://127.0.0.1:{listener.port}".encode()
    data = data.replace(
        b"<flux>",
        b'<flux xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:noNamespaceSchemaLocation="' + url + b'/flux.xsd">',
        1,
    )
    data = data.replace(
        b"<individu>",
        b'<individu><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="'
        + url
        + b'/x.xml"/>',
        1,
    )

    report = check(data)
    listener.close()

    assert [i.rule for i in report.issues] == [Rule.STRUCTURE_UNEXPECTED_ELEMENT]
    assert listener.connections == []


def test_undefined_entities_are_a_syntax_error(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    data = data.replace(b"<organisme>", b"<organisme>&secret;", 1)

    report = check(data)

    assert [i.rule for i in report.issues] == [Rule.XML_MALFORMED]


def test_excessive_depth_stops_the_parser(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 2)
    data = data.replace(b"<organisme>", b"<a>" * 5000 + b"<organisme>", 1)

    report = check(data)

    assert [i.rule for i in report.issues] == [Rule.XML_MALFORMED]


def test_a_file_over_the_size_limit_is_cut_short(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 200)

    report = check(data, max_bytes=50_000)

    assert [i.rule for i in report.issues] == [Rule.XML_TOO_LARGE]
    assert report.size_bytes <= 50_000 + 65_536


def test_an_oversized_record_is_cut_short_before_it_fills_memory(sample: Sample) -> None:
    data, _ = sample(FlowType.CGPEM, 3)
    data = data.replace(b"<organisme>", b"<organisme>" + b"X" * 300_000, 1)

    report = check(data, max_bytes_per_record=100_000)

    assert [i.rule for i in report.issues] == [Rule.XML_RECORD_TOO_LARGE]


def test_garbage_is_reported_as_malformed_not_as_a_crash() -> None:
    report = check(b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<flux><entete>')

    assert [i.rule for i in report.issues] == [Rule.XML_MALFORMED]


def test_an_empty_file_is_refused() -> None:
    assert [i.rule for i in check(b"").issues] == [Rule.ENCODING_DECLARATION]


def test_flows_code_never_imports_flask() -> None:
    # views.py is the blueprint, the package's only HTTP module (STYLE.md: views are HTTP only).
    package = Path(__file__).parents[2] / "portal" / "flows"
    for module in package.rglob("*.py"):
        if module.name == "views.py":
            continue
        source = module.read_text(encoding="utf-8")
        assert "import flask" not in source and "from flask" not in source, module
