"""The gunicorn worker of `filr serve`: gunicorn's own error answers get the portal's headers.

A request gunicorn cannot parse (a malformed request line, an oversized header) never reaches
the application, so the headers of `portal.gate` were missing from those answers, and
gunicorn's page echoed the request line back. The worker keeps gunicorn's decision (status,
log line) and sends a short French page with the same headers as every other answer instead.
Run gunicorn yourself with ``--worker-class portal.serving.PortalWorker`` to get the same.

The worker also sends body chunks that are buffers (`memoryview`) itself, each before asking for
the next, and says so in the environ (`portal.web.SENDS_BUFFERS`): downloads then hand over
their plaintext in a few reused buffers (docs/storage.md, "Where a download's CPU goes").
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any, cast

from gunicorn import util
from gunicorn.http.wsgi import Response as GunicornResponse
from gunicorn.workers.gthread import ThreadWorker

from portal.gate import CSP, HSTS, SECURITY_HEADERS
from portal.web import SENDS_BUFFERS

# French title and message of each status gunicorn answers by itself; others get the last pair.
_MESSAGES = {
    400: ("Requête incorrecte", "La requête n'a pas pu être comprise."),
    403: ("Requête refusée", "La requête a été refusée."),
    414: ("Adresse trop longue", "L'adresse demandée dépasse la longueur autorisée."),
    417: ("Requête incorrecte", "L'en-tête « Expect » de la requête n'est pas pris en charge."),
    431: ("En-têtes trop volumineux", "Les en-têtes de la requête dépassent la taille autorisée."),
    501: ("Requête non prise en charge", "Ce codage de transfert n'est pas pris en charge."),
}
_UNEXPECTED = ("Erreur inattendue", "Une erreur inattendue est survenue.")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) ")


def error_response(status: int, *, hsts: bool) -> bytes:
    """The whole HTTP answer for *status*: the portal's headers and a short French page."""
    title, message = _MESSAGES.get(status, _UNEXPECTED)
    body = (
        '<!doctype html>\n<html lang="fr">\n<head><meta charset="utf-8">'
        f"<title>{title} — Fil'R</title></head>\n"
        f"<body><h1>{title}</h1><p>{message}</p></body>\n</html>\n"
    ).encode()
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Length": str(len(body)),
        "Connection": "close",
        "Content-Security-Policy": CSP,
        **SECURITY_HEADERS,
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
    }
    if hsts:
        headers["Strict-Transport-Security"] = HSTS
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + body


class _Captured:
    """Stands for the client socket while gunicorn writes its own page: only its status is kept."""

    def __init__(self) -> None:
        self.data = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # "non-blocking": gunicorn then writes without touching the socket's mode

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status(self) -> int:
        match = _STATUS_LINE.match(bytes(self.data))
        return int(match.group(1)) if match else HTTPStatus.INTERNAL_SERVER_ERROR


class _BufferSending:
    """WSGI wrapper: body chunks that are buffers, not `bytes`, are sent by the worker itself.

    gunicorn's response accepts `bytes` only (PEP 3333). For a plain HTTP/1 response of known
    length, this sends a buffer chunk with the response's own bookkeeping (headers first, never
    more than `Content-Length`) and one `sendall`, before asking the application for the next
    chunk, as gunicorn does for `bytes`. Any other response sees no buffer: the flag is not set.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        response = getattr(start_response, "__self__", None)
        if type(response) is not GunicornResponse:  # HTTP/2 frames bodies otherwise
            return self.app(environ, start_response)
        environ[SENDS_BUFFERS] = True
        return _SentBody(self.app(environ, start_response), response)


class _SentBody(Iterator[bytes]):
    """The application's body: `bytes` go to gunicorn, buffers are sent here, in order."""

    def __init__(self, body: Iterable[bytes], response: GunicornResponse) -> None:
        self._body = body
        self._chunks = iter(body)
        self._response = response

    def __next__(self) -> bytes:
        response = self._response
        for chunk in self._chunks:
            if type(chunk) is bytes:
                return chunk
            if response.chunked or response.response_length is None:
                response.write(bytes(chunk))  # framed by gunicorn (not what downloads do)
                continue
            response.send_headers()
            view = memoryview(chunk)
            remaining = response.response_length - response.sent
            if len(view) > remaining:
                view = view[:remaining]  # never more than promised, as gunicorn does
            if view and response.req.method != "HEAD":
                response.sent += len(view)
                response.sock.sendall(view)
        raise StopIteration

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


class PortalWorker(ThreadWorker):  # type: ignore[misc] # gunicorn has no type hints
    """gunicorn's threaded worker (`gthread`), whose own error answers carry the headers."""

    def load_wsgi(self) -> None:
        """Load the application, then take its objects out of the cyclic garbage collector.

        The application's hundreds of thousands of long-lived objects (modules, routes,
        templates, SQLAlchemy mappers) were traversed by every full collection, which the
        allocations of a large transfer trigger over and over: 15-20 % of a worker's CPU during
        uploads and downloads (perf, docs/storage.md). `gc.freeze()` moves them to the permanent
        generation; what requests allocate is collected as before. The application is served
        through `_BufferSending`.
        """
        super().load_wsgi()
        self.wsgi = _BufferSending(cast(Any, self).wsgi)
        gc.collect()
        gc.freeze()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Let gunicorn choose the status and log, then answer with the portal's page."""
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)
        # The same HSTS decision as the application's (plain HTTP is only allowed on loopback).
        app = self.wsgi.app if isinstance(self.wsgi, _BufferSending) else self.wsgi
        config = getattr(app, "config", None)
        hsts = bool(config.get("SESSION_COOKIE_SECURE", True)) if config is not None else True
        try:
            util.write_nonblock(client, error_response(captured.status(), hsts=hsts))
        except Exception:  # the client is gone: nothing to tell it (gunicorn does the same)
            self.log.debug("Failed to send error message.")
