"""The gunicorn worker sends body chunks that are buffers itself, each before asking for the next.

Downloads hand over their plaintext in a few reused buffers (`memoryview`s) when the server says
it sends each chunk before asking for the next (`portal.web.SENDS_BUFFERS`); gunicorn's own
response takes `bytes` only, so `portal.serving` sends the buffers with its bookkeeping.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http.wsgi import Response
from gunicorn.workers.gthread import ThreadWorker

from portal.serving import PortalWorker, _BufferSending
from portal.web import SENDS_BUFFERS

Environ = dict[str, Any]


def reusing_app(pieces: list[bytes], *, length: bool = True) -> Callable[..., Iterator[Any]]:
    """A WSGI app that yields `pieces` through one reused buffer when the server allows it."""

    def app(environ: Environ, start_response: Callable[..., Any]) -> Iterator[Any]:
        headers = [("Content-Type", "application/octet-stream")]
        if length:
            headers.append(("Content-Length", str(sum(map(len, pieces)))))
        start_response("200 OK", headers)
        buffer = bytearray(max(map(len, pieces)))
        for piece in pieces:
            if environ.get(SENDS_BUFFERS) is not True:
                yield piece
                continue
            buffer[: len(piece)] = piece  # overwrites what the previous chunk showed
            yield memoryview(buffer)[: len(piece)]

    return app


def serve_once(app: Callable[..., Any], method: str = "GET") -> tuple[Environ, bytes]:
    """Run `app` as gunicorn's threaded worker does, on a socket pair; return what was sent."""
    server, client = socket.socketpair()
    request = SimpleNamespace(version=(1, 1), method=method, should_close=lambda: False)
    response = Response(request, server, Config())
    environ: Environ = {"REQUEST_METHOD": method}
    body = _BufferSending(app)(environ, response.start_response)
    try:
        for item in body:  # gunicorn.workers.gthread.ThreadWorker.handle_request
            response.write(item)
        response.close()
    finally:
        body.close()
        server.close()
    received = bytearray()
    while data := client.recv(1 << 16):
        received += data
    client.close()
    return environ, bytes(received)


def test_buffer_chunks_are_sent_each_before_the_next_is_asked_for() -> None:
    # Given an app that reuses one buffer for every chunk when the server sends them at once
    pieces = [b"a" * 70_000, b"b" * 70_000, b"c" * 123]
    # When the portal's worker serves it
    environ, sent = serve_once(reusing_app(pieces))
    # Then the flag was set, and the body is every piece as it was when yielded, after the
    # headers and with the promised length
    assert environ[SENDS_BUFFERS] is True
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 140123" in head
    assert body == b"".join(pieces)


def test_buffers_of_an_answer_without_length_or_body_are_framed_by_gunicorn() -> None:
    pieces = [b"x" * 1000, b"y" * 10]
    # Without Content-Length gunicorn chunks the body: it gets copies
    _, sent = serve_once(reusing_app(pieces, length=False))
    assert sent.endswith(b"3E8\r\n" + b"x" * 1000 + b"\r\nA\r\n" + b"y" * 10 + b"\r\n0\r\n\r\n")
    # A HEAD answer carries no body
    _, sent = serve_once(reusing_app(pieces), method="HEAD")
    assert sent.endswith(b"\r\n\r\n") and b"x" not in sent


def test_another_server_gets_bytes() -> None:
    # Given a server that is not the portal's worker (a test client, another WSGI server)
    environ: Environ = {}
    started: list[str] = []
    body = _BufferSending(reusing_app([b"z" * 10, b"w" * 10]))(
        environ, lambda status, headers: started.append(status)
    )
    # Then the flag is not set, and the app yields bytes it never overwrites
    chunks = list(body)
    assert SENDS_BUFFERS not in environ
    assert chunks == [b"z" * 10, b"w" * 10] and started == ["200 OK"]


def test_the_worker_serves_the_application_through_the_buffer_sending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given gunicorn's own loading of the application
    def app(environ: Environ, start_response: Callable[..., Any]) -> list[bytes]:
        return []

    def load_wsgi(worker: PortalWorker) -> None:
        worker.wsgi = app

    monkeypatch.setattr(ThreadWorker, "load_wsgi", load_wsgi)
    worker = object.__new__(PortalWorker)
    try:
        # When the portal's worker loads it
        PortalWorker.load_wsgi(worker)
    finally:
        import gc

        gc.unfreeze()
    # Then requests reach it through the wrapper that sends buffers
    assert isinstance(worker.wsgi, _BufferSending) and worker.wsgi.app is app
