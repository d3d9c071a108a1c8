"""The Fil'R portal: the Flask application (the only package that imports Flask)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portal.app import create_app
    from portal.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): `filr flows validate` and the jobs import portal.flows or portal.settings
    # without paying for Flask and every blueprint.
    if name == "create_app":
        from portal.app import create_app

        return create_app
    if name == "Settings":
        from portal.settings import Settings

        return Settings
    raise AttributeError(f"module 'portal' has no attribute {name!r}")
