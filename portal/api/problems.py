"""Errors of the API as RFC 9457 problem details, with a French title and a stable `code`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, g, jsonify
from werkzeug.http import HTTP_STATUS_CODES

PROBLEM_MIMETYPE = "application/problem+json"

TITLES = {
    400: "Requête incorrecte",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Ressource introuvable",
    405: "Méthode non autorisée",
    410: "Ressource plus disponible",
    413: "Envoi trop volumineux",
    422: "Requête invalide",
    429: "Trop de requêtes",
    500: "Erreur inattendue",
    502: "Contenu stocké invalide",
    503: "Service momentanément indisponible",
}


def default_code(status: int) -> str:
    """The stable code of a bare HTTP error ("not_found", "unauthorized"…)."""
    return HTTP_STATUS_CODES.get(status, "error").lower().replace(" ", "_").replace("'", "")


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """An `application/problem+json` response.

    The type stays "about:blank" (RFC 9457 §4.2.1: the status says it all); the machine-readable
    distinction lies in `code`, an extension member that never changes once published.
    """
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or TITLES.get(status, "Erreur"),
        "status": status,
        "detail": detail,
        "code": code or default_code(status),
        "request_id": g.get("request_id"),
    }
    body.update(extra or {})
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_MIMETYPE
    if status == 401:
        # RFC 9110 §15.5.2 and RFC 6750 §3: a 401 names the scheme that would be accepted.
        response.headers["WWW-Authenticate"] = 'Bearer realm="filr-api"'
    response.headers.update(headers or {})
    return response


class ApiProblem(Exception):
    """Raised by the API views; answered as a problem document by the blueprint."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> Response:
        """The problem document of this error."""
        return problem(
            self.status, self.detail, code=self.code, headers=self.headers, extra=self.extra
        )
