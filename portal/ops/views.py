"""Readiness probe and Prometheus metrics (the liveness probe `/sante` is `home.health`)."""

from __future__ import annotations

import hmac

from flask import Blueprint, Flask, abort, current_app, g, jsonify, request
from werkzeug.wrappers.response import Response

from portal.container import services
from portal.db import DATABASE_UNAVAILABLE_FLAG, db
from portal.ops.health import check_readiness
from portal.ops.metrics import (
    DATABASE_UNAVAILABLE_ENVIRON_KEY,
    ROUTE_ENVIRON_KEY,
    MetricsMiddleware,
    exposition,
)
from portal.ops.schedule import SCHEDULE
from portal.settings import Settings

bp = Blueprint("ops", __name__)


@bp.route("/sante/pret")
def ready() -> tuple[Response, int]:
    """Readiness probe: 200 when the database, the store and Redis (if set) answer, else 503."""
    svc = services()
    result = check_readiness(db.engine, svc.store.inner, svc.settings.redis_url)
    status = "pret" if result.is_ready else "indisponible"
    checks = {name: "ok" if ok else "indisponible" for name, ok in result.checks.items()}
    return jsonify(statut=status, verifications=checks), 200 if result.is_ready else 503


@bp.route("/metrics")
def metrics() -> Response:
    """Prometheus metrics, for the bearer of `FILR_METRICS_TOKEN` only (404 for anyone else)."""
    settings: Settings = current_app.config["FILR_SETTINGS"]
    token = settings.metrics_token
    given = request.headers.get("Authorization", "")
    # Without a token configured the endpoint does not exist; with one, a wrong or missing
    # token sees the same 404 (nothing tells a scanner that metrics live here).
    if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        abort(404)
    body, content_type = exposition(db.session, (entry.name for entry in SCHEDULE))
    return Response(body, content_type=content_type)


def install(app: Flask) -> None:
    """Measure every request of *app* (see `portal.ops.metrics.MetricsMiddleware`)."""

    def _route_family() -> None:
        request.environ[ROUTE_ENVIRON_KEY] = request.endpoint

    # First of all: the gate's hooks may answer (a redirect to the log-in page) before others.
    app.before_request_funcs.setdefault(None, []).insert(0, _route_family)

    @app.teardown_request
    def _database_unavailable(_exc: BaseException | None) -> None:
        if g.get(DATABASE_UNAVAILABLE_FLAG):
            request.environ[DATABASE_UNAVAILABLE_ENVIRON_KEY] = True

    app.wsgi_app = MetricsMiddleware(app.wsgi_app)  # type: ignore[method-assign] # WSGI wrap
