"""The Fil'R portal: the Flask application (the only package that imports Flask)."""

from portal.app import create_app
from portal.settings import Settings

__all__ = ["Settings", "create_app"]
