"""Home page per role, and the health check."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template
from werkzeug.wrappers.response import Response

from portal.accounts.permissions import can_manage_accounts
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.permissions import spaces_of
from portal.web import the_user

bp = Blueprint("home", __name__)


@bp.route("/")
def index() -> str:
    """What this user can do, by role, and the spaces it sees."""
    user = the_user()
    spaces = [(code, DEPARTEMENTS.get(code, code)) for code in sorted(spaces_of(user))]
    return render_template(
        "home/index.html", user=user, spaces=spaces, can_manage=can_manage_accounts(user)
    )


@bp.route("/accessibilite")
def accessibility() -> str:
    """The accessibility statement (public: the footer of every page links to it)."""
    return render_template("home/accessibility.html")


@bp.route("/sante")
def health() -> Response:
    """Liveness probe for the load balancer (public, says nothing else)."""
    return jsonify(status="ok")
