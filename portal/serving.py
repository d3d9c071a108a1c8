"""The gunicorn worker of `filr serve`: gunicorn's own error answers get the portal's headers.

A request gunicorn cannot parse (a malformed request line, an oversized header) never reaches
the application, so the headers of `portal.gate` were missing from those answers, and
gunicorn's page echoed the request line back. The worker keeps gunicorn's decision (status,
log line) and sends a short French page with the same headers as every other answer instead.
Run gunicorn yourself with ``--worker-class portal.serving.PortalWorker`` to get the same.
"""

from __future__ import annotations

import gc
import re
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from portal.gate import CSP, HSTS, SECURITY_HEADERS

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


class PortalWorker(ThreadWorker):  # type: ignore[misc] # gunicorn has no type hints
    """gunicorn's threaded worker (`gthread`), whose own error answers carry the headers."""

    def load_wsgi(self) -> None:
        """Load the application, then take its objects out of the cyclic garbage collector.

        The application's hundreds of thousands of long-lived objects (modules, routes,
        templates, SQLAlchemy mappers) were traversed by every full collection, which the
        allocations of a large transfer trigger over and over: 15-20 % of a worker's CPU during
        uploads and downloads (perf, docs/storage.md). `gc.freeze()` moves them to the permanent
        generation; what requests allocate is collected as before.
        """
        super().load_wsgi()
        gc.collect()
        gc.freeze()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Let gunicorn choose the status and log, then answer with the portal's page."""
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)
        # The same HSTS decision as the application's (plain HTTP is only allowed on loopback).
        config = getattr(self.wsgi, "config", None)
        hsts = bool(config.get("SESSION_COOKIE_SECURE", True)) if config is not None else True
        try:
            util.write_nonblock(client, error_response(captured.status(), hsts=hsts))
        except Exception:  # the client is gone: nothing to tell it (gunicorn does the same)
            self.log.debug("Failed to send error message.")
