"""Jinja helpers: French formats (portal.formats), the current user, labels."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_login import current_user

from portal.accounts.models import ROLE_LABELS, Role
from portal.formats import date_fr, datetime_fr, number_fr, size_fr


def install(app: Flask) -> None:
    """Register filters and globals."""
    app.jinja_env.filters["datetime_fr"] = datetime_fr
    app.jinja_env.filters["date_fr"] = date_fr
    app.jinja_env.filters["number_fr"] = number_fr
    app.jinja_env.filters["size_fr"] = size_fr
    app.jinja_env.autoescape = True
    app.jinja_env.add_extension("jinja2.ext.do")  # the error summary collects fields

    @app.context_processor
    def _globals() -> dict[str, Any]:
        user = current_user if current_user.is_authenticated else None
        return {
            "me": user,
            "role_labels": ROLE_LABELS,
            "Role": Role,
            "service_name": "Fil'R",
        }
