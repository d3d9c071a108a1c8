"""What the commands that touch the portal share: the app from the environment, the audit
context of a command, the settings, an organisation named on the command line."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import Flask

import audit
from portal.db import db
from portal.orgs.models import Organisation
from portal.orgs.services import find_organisation
from portal.settings import Settings, SettingsError


def audit_context() -> audit.Context:
    """The audit context of one command run (its rows share a `cli-…` request id)."""
    return audit.Context(user_agent="filr-cli", request_id="cli-" + secrets.token_hex(6))


@contextmanager
def app_context() -> Iterator[Flask]:
    """The portal configured from the environment, inside an application context."""
    from portal.app import create_app

    app = create_app(Settings.from_env())
    try:
        with app.app_context():
            yield app
    finally:
        db.bound(app).engine.dispose()


def settings_or_exit() -> Settings:
    """The settings from the environment; a wrong one is one line and exit 1, no traceback."""
    try:
        return Settings.from_env()
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def find_org(ref: str) -> Organisation:
    """The organisation of id or exact name *ref* (in the current app context), or exit 1."""
    org = find_organisation(db.session, ref)
    if org is None:
        raise click.ClickException(f"organisation inconnue : {ref}")
    return org
