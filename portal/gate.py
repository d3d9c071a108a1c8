"""Deny-by-default gate, security headers, request ids and error pages."""

from __future__ import annotations

import contextlib
import logging
import secrets
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers.response import Response as BaseResponse

import audit
import storage
from audit import AuditAction
from portal.api.problems import problem
from portal.auth.sessions import SESSION_DATABASE_ERROR, PortalSession
from portal.db import (
    DATABASE_RETRY_AFTER_SECONDS,
    DATABASE_UNAVAILABLE_FLAG,
    database_error_summary,
    db,
    is_database_unavailable,
)
from portal.settings import Settings
from portal.web import KEY_ENROLMENT_ONLY, audit_context

log = logging.getLogger("portal")

# The short explicit list of endpoints reachable without a logged-in, MFA-verified user.
PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "dsfr",
        "auth.login",
        "auth.forgot_password",
        "auth.reset_password",
        "auth.activate",
        "auth.activate_totp",
        "auth.mfa_enrol",
        "auth.login_key",
        "auth.proconnect_start",
        "auth.proconnect_callback",
        "auth.proconnect_code",
        "auth.proconnect_logged_out",
        "home.health",
        "ops.ready",
        "ops.metrics",  # its own bearer token (FILR_METRICS_TOKEN), 404 without it
        "home.accessibility",  # the accessibility statement, linked from every page's footer
    }
)

# What an account that must enrol a security key (deadline passed) may still reach.
KEY_ENROLMENT_ENDPOINTS = frozenset(
    {
        "accounts.key_required",
        "accounts.security_keys",
        "accounts.enrol_key",
        "auth.logout",
    }
)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HSTS = "max-age=63072000; includeSubDomains"
# Sent with every answer: the portal's own, and the server's error pages (portal.serving).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


def csp_for(settings: Settings) -> str:
    """The CSP of *settings*: the log-out's form may also be redirected to ProConnect's end of
    session (Chromium applies form-action to the redirects of a form's navigation)."""
    if not settings.proconnect_enabled or not settings.proconnect_issuer:
        return CSP
    parts = urlsplit(settings.proconnect_issuer)
    return CSP.replace("form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}")


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def install(app: Flask) -> None:
    """Register the gate, the headers and the error handlers on *app*."""

    csp = csp_for(app.config["FILR_SETTINGS"])

    def _request_id() -> None:
        g.request_id = secrets.token_hex(8)

    def _session_expiry_audit() -> None:
        sess = session
        if isinstance(sess, PortalSession) and sess.expired_user_id:
            audit.record(
                db.session,
                AuditAction.AUTH_SESSION_EXPIRED,
                actor=audit.Actor(sess.expired_user_id),
                context=audit_context(),
            )
            db.session.commit()
            sess.expired_user_id = None

    # CSRFProtect is initialised before this module, so its hook would run first: a request it
    # rejects would get no request id, and a session found expired by a form post (the usual
    # case after a long idle time) would go unaudited. Both hooks therefore run first.
    def _refuse_nul() -> None:
        # A NUL character is never part of a valid path or parameter, and PostgreSQL refuses it
        # in text: refused here, it can reach neither a query nor (in an error) the log.
        if "\x00" in request.path:
            abort(404)
        if any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
            abort(400)

    def _session_database_error() -> None:
        error = g.pop(SESSION_DATABASE_ERROR, None)
        if error is not None:
            raise error  # met while loading the session (ServerSessionInterface.open_session)

    app.before_request_funcs.setdefault(None, [])[:0] = [
        _request_id,
        _session_database_error,
        _refuse_nul,
        _session_expiry_audit,
    ]

    @app.before_request
    def _deny_by_default() -> BaseResponse | None:
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if current_user.is_authenticated:
            if session.get(KEY_ENROLMENT_ONLY) and request.endpoint not in KEY_ENROLMENT_ENDPOINTS:
                if _wants_json():
                    return _problem(403, "Une clé de sécurité doit d'abord être enregistrée.")
                return redirect(url_for("accounts.key_required"))
            return None
        if _wants_json():
            return _problem(401, "Authentification requise.")
        if request.endpoint is None:
            return None  # 404/405 handlers answer; nothing is served
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @app.after_request
    def _headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("Content-Security-Policy", csp)
        for name, value in SECURITY_HEADERS.items():
            h[name] = value
        if app.config["SESSION_COOKIE_SECURE"]:
            h["Strict-Transport-Security"] = HSTS
        if request.endpoint not in ("static", "dsfr", "tus_client"):
            h["Cache-Control"] = "no-store"
            h["Pragma"] = "no-cache"
        h["X-Request-ID"] = g.get("request_id", "")
        return response

    def _problem(status: int, detail: str) -> Response:
        return problem(status, detail)  # the API's format, for every path under /api/

    def _error_page(status: int, title: str, message: str) -> tuple[str | Response, int]:
        if _wants_json():
            return _problem(status, title), status
        return (
            render_template(
                "errors/error.html",
                status=status,
                title=title,
                message=message,
                request_id=g.get("request_id"),
            ),
            status,
        )

    @app.errorhandler(CSRFError)
    def _csrf(_e: CSRFError) -> tuple[str | Response, int]:
        db.session.rollback()
        return _error_page(
            400,
            "Formulaire expiré",
            "Le formulaire a expiré ou n'a pas été envoyé depuis le portail. "
            "Rechargez la page et recommencez.",
        )

    messages = {
        400: ("Requête incorrecte", "La requête n'a pas pu être comprise."),
        403: ("Page introuvable", "La page demandée n'existe pas ou vous n'y avez pas accès."),
        404: ("Page introuvable", "La page demandée n'existe pas ou vous n'y avez pas accès."),
        405: ("Méthode non autorisée", "Cette action n'est pas possible sur cette page."),
        413: ("Envoi trop volumineux", "Le contenu envoyé dépasse la taille autorisée."),
        429: ("Trop de tentatives", "Patientez avant de réessayer."),
    }

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> tuple[str | Response, int] | HTTPException:
        db.session.rollback()
        code = e.code or 500
        if code == 403:
            code = 404  # forbidden and unknown look the same
        title, message = messages.get(code, ("Erreur", "Une erreur est survenue."))
        return _error_page(code, title, message)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> tuple[str | Response, int]:
        db.session.rollback()
        # The exception goes to the server log with the request id; never to the page.
        log.exception("unhandled error (request %s)", g.get("request_id"))
        return _error_page(
            500,
            "Erreur inattendue",
            "Une erreur inattendue est survenue. Si elle persiste, contactez l'assistance en "
            "indiquant l'identifiant de requête ci-dessous.",
        )

    @app.errorhandler(sa.exc.SQLAlchemyError)
    @app.errorhandler(storage.StorageUnavailable)
    def _database(e: Exception) -> ResponseReturnValue:
        # Only a database out of reach is a 503; any other database error is a bug (500).
        if not is_database_unavailable(e):
            return _unexpected(e)
        return _database_unavailable(e)

    def _database_unavailable(e: Exception) -> ResponseReturnValue:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            db.session.rollback()
        # Nothing more may touch the database in this request: the session is not saved, and
        # the page is rendered for an anonymous visitor (knowing who is logged in needs it).
        g.setdefault(DATABASE_UNAVAILABLE_FLAG, True)
        g._login_user = current_app.login_manager.anonymous_user()  # type: ignore[attr-defined] # set by flask_login
        # One line, no traceback: during an outage every request lands here.
        log.warning(
            "database unavailable (request %s): %s", g.get("request_id"), database_error_summary(e)
        )
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
        detail = (
            "La base de données du portail est momentanément indisponible : réessayez plus tard."
        )
        if _wants_json():
            return problem(503, detail, code="database_unavailable", headers=headers)
        if request.mimetype == "application/octet-stream":
            # The pages' uploaders (upload.js, flows.js) send a file as the raw request body
            # and show the `error` of a JSON answer next to it.
            return jsonify(error=detail, code="database_unavailable"), 503, headers
        page = render_template(
            "errors/error.html",
            status=503,
            title="Service momentanément indisponible",
            message=(
                "Le portail ne peut pas joindre sa base de données pour le moment. Réessayez "
                "dans quelques instants ; si le problème persiste, contactez l'assistance en "
                "indiquant l'identifiant de requête ci-dessous."
            ),
            request_id=g.get("request_id"),
        )
        return page, 503, headers
