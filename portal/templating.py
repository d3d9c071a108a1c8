"""Jinja helpers: French dates in Europe/Paris, the current user, labels."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask_login import current_user

from portal.accounts.models import ROLE_LABELS, Role

PARIS = ZoneInfo("Europe/Paris")


def format_datetime(value: datetime | None) -> str:
    """`23/11/2026 à 10:05` in Paris time."""
    if value is None:
        return "—"
    return value.astimezone(PARIS).strftime("%d/%m/%Y à %H:%M")


def install(app: Flask) -> None:
    """Register filters and globals."""
    app.jinja_env.filters["datetime_fr"] = format_datetime
    app.jinja_env.autoescape = True

    @app.context_processor
    def _globals() -> dict[str, Any]:
        user = current_user if current_user.is_authenticated else None
        return {
            "me": user,
            "role_labels": ROLE_LABELS,
            "Role": Role,
            "service_name": "Fil'R",
        }
