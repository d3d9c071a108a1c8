"""The application factory: reading it tells you the whole app."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import IO

from flask import Flask, Request, abort, send_from_directory
from flask import Response as FlaskResponse
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers.response import Response

from portal import gate
from portal.accounts.models import User
from portal.auth.sessions import PortalSession, ServerSessionInterface
from portal.container import build_services
from portal.db import db, is_database_unavailable, refuse_superuser
from portal.settings import Settings

login_manager = LoginManager()
csrf = CSRFProtect()


@login_manager.request_loader  # type: ignore[untyped-decorator] # flask_login has no type hints
def _load_user_from_session(_request: object) -> User | None:
    # Only a session that passed password AND TOTP carries a user: a password-only or
    # half-enrolled session never loads one (deny by default).
    from flask import request, session

    from portal.api.auth import API_BLUEPRINT, user_from_bearer_token

    if request.blueprint == API_BLUEPRINT:
        return user_from_bearer_token()  # a bearer token only, never the session cookie
    if not isinstance(session, PortalSession):
        return None
    if session.user_id is None or session.mfa_verified_at is None:
        return None
    user = db.session.get(User, session.user_id)
    if user is None or not user.is_active:
        return None
    return user


class PortalRequest(Request):
    """A request whose multipart file parts are refused, never spooled to a temporary file.

    The portal takes files only as a raw request body, encrypted as it arrives. Werkzeug would
    otherwise write any multipart file part above 500 KB to a temporary file, in plaintext,
    as soon as anything reads `request.form` (CSRFProtect does, on every POST).
    """

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        raise UnsupportedMediaType(
            "Envoyez le fichier comme corps de la requête (application/octet-stream), "
            "pas dans un formulaire multipart."
        )


class PortalFlask(Flask):
    """Flask, answering a database outage met outside a view as one met inside it."""

    def handle_exception(self, e: Exception) -> FlaskResponse:
        # Loading or saving the server-side session happens outside the view's error handling:
        # Flask would answer a generic 500 with a traceback per request (and re-raise under
        # TESTING). A database out of reach gets its 503 handler instead, wherever it was met.
        if is_database_unavailable(e):
            return self.finalize_request(self.handle_user_exception(e), from_error_handler=True)
        return super().handle_exception(e)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the portal for *settings* (default: `Settings.from_env()`)."""
    settings = settings or Settings.from_env()
    app = PortalFlask(__name__)
    app.request_class = PortalRequest
    app.config.update(
        SECRET_KEY=settings.secret_key,
        FILR_SETTINGS=settings,
        TESTING=settings.testing,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # __Host- requires Secure; plain-HTTP development (embedded default on 127.0.0.1)
        # cannot send Secure cookies, so only there the prefix and Secure are dropped.
        PREFERRED_URL_SCHEME="https" if settings.secure_cookies else "http",
        SESSION_COOKIE_NAME="__Host-filr" if settings.secure_cookies else "filr",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        WTF_I18N_ENABLED=False,  # WTForms' own French catalogue, chosen by portal.forms
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the (server-side) session
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
    )
    if settings.trusted_proxy_count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign] # Flask's documented way
            app.wsgi_app, x_for=settings.trusted_proxy_count, x_proto=settings.trusted_proxy_count
        )

    db.init_app(app, settings.database_url)
    if not settings.testing:  # the test suite's throw-away databases belong to a superuser
        refuse_superuser(db.bound(app).engine, allowed=settings.allow_superuser)
    app.extensions["filr"] = build_services(settings, db, db.bound(app).engine)
    app.session_interface = ServerSessionInterface(
        idle=timedelta(minutes=settings.session_idle_minutes),
        absolute=timedelta(hours=settings.session_absolute_hours),
    )
    login_manager.init_app(app)
    csrf.init_app(app)
    gate.install(app)

    import portal.api.tus  # noqa: F401 - its routes join the API blueprint
    from portal.accounts.review_views import bp as review_bp
    from portal.accounts.views import bp as accounts_bp
    from portal.api.token_views import bp as api_tokens_bp
    from portal.api.views import bp as api_bp
    from portal.auth.views import bp as auth_bp
    from portal.deposits.views import bp as deposits_bp
    from portal.deposits.views import preferences_bp
    from portal.fiches.views import bp as fiches_bp
    from portal.flows.views import bp as flows_bp
    from portal.home.views import bp as home_bp
    from portal.ops.views import bp as ops_bp
    from portal.ops.views import install as install_metrics
    from portal.orgs.views import bp as usage_bp
    from portal.securite.incident_views import bp as incidents_bp
    from portal.securite.views import bp as securite_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(review_bp)
    app.register_blueprint(home_bp)
    app.register_blueprint(deposits_bp)
    app.register_blueprint(flows_bp)
    app.register_blueprint(fiches_bp)
    app.register_blueprint(api_tokens_bp)
    app.register_blueprint(api_bp)
    csrf.exempt(api_bp)  # bearer tokens only: no cookie, nothing for a forged request to ride
    app.register_blueprint(preferences_bp)
    app.register_blueprint(securite_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(usage_bp)
    install_metrics(app)
    app.register_blueprint(incidents_bp)

    dsfr_dir = settings.dsfr_dir

    @app.route("/dsfr/<path:filename>", endpoint="dsfr")
    def _dsfr(filename: str) -> Response:
        # The DSFR's dist/ folder, installed by npm at setup, never committed.
        if dsfr_dir is None or not Path(dsfr_dir).is_dir():
            abort(404)
        return send_from_directory(dsfr_dir, filename, max_age=86400)

    from portal.templating import install as install_templating

    install_templating(app)
    return app
