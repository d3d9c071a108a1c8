"""The usage statistics page and its CSV (managers, security officers, the platform operator)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request

from portal.accounts.models import User
from portal.accounts.permissions import can_see_usage
from portal.db import db, utcnow
from portal.orgs import usage
from portal.web import the_user

bp = Blueprint("usage", __name__)


def _args() -> tuple[User, usage.Month, str | None]:
    user = the_user()
    if not can_see_usage(user):
        abort(404)
    return (
        user,
        usage.month_of(request.args.get("mois"), utcnow()),
        request.args.get("organisation") or None,
    )


@bp.route("/statistiques")
def page() -> str:
    """The month's figures of every organisation the user may see."""
    user, month, org_id = _args()
    rows = usage.usage_for(db.session, user, month, org_id, now=utcnow())
    if rows is None:
        abort(404)
    return render_template(
        "orgs/usage.html",
        rows=rows,
        month=month,
        org_id=org_id,
        previous_month=str(month.shift(-1)),
        next_month=str(month.shift(1)),
        month_label=usage.month_label(month),
    )


@bp.route("/statistiques.csv")
def export() -> Response:
    """The same figures as a French CSV (`;`, UTF-8 with BOM)."""
    user, month, org_id = _args()
    rows = usage.usage_for(db.session, user, month, org_id, now=utcnow())
    if rows is None:
        abort(404)
    body = "\ufeff" + "".join(usage.iter_usage_csv(rows, month))
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="statistiques-{month}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response
