"""Alembic, driven from code (`filr db upgrade`), on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from audit.privileges import (
    PrivilegeError,
    app_role_problems,
    create_app_role,
    grant_app_role,
    role_exists,
)
from portal.db import make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic configuration for *database_url*, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(
    database_url: str,
    revision: str = "head",
    *,
    app_role: str | None = None,
    connection: sa.Connection | None = None,
) -> None:
    """Apply migrations up to *revision*; *app_role* overrides FILR_DATABASE_APP_ROLE.

    With *connection*, the migrations run in its transaction (committed by the caller).
    """
    config = alembic_config(database_url)
    if app_role:
        config.attributes["filr_app_role"] = app_role
    if connection is not None:
        config.attributes["connection"] = connection
    command.upgrade(config, revision)


@dataclass(frozen=True)
class AppRoleReport:
    """What `set_up_app_role` did, and what the role may still do beyond the portal's needs."""

    created: bool
    problems: list[str]


def set_up_app_role(
    owner_url: str, role: str, password: str | None, revision: str = "head"
) -> AppRoleReport:
    """Create the application's role if missing, migrate, grant it exactly what it needs, check.

    Run as the tables' owner (docs/operations.md). A role that exists is never altered (its
    password stays); it is checked, and what a grant cannot take back is reported.
    """
    engine = make_engine(owner_url)
    try:
        if engine.dialect.name != "postgresql":
            raise PrivilegeError("les rôles ne concernent que PostgreSQL")
        # One transaction (PostgreSQL's DDL is transactional): a set-up that fails half-way
        # leaves neither a role nor a migration behind.
        with engine.begin() as conn:
            created = not role_exists(conn, role)
            if created:
                if not password:
                    raise PrivilegeError(
                        f"le rôle {role} n'existe pas : donnez son mot de passe dans "
                        "FILR_DATABASE_APP_PASSWORD_FILE (ou FILR_DATABASE_APP_PASSWORD) "
                        "pour qu'il soit créé"
                    )
                create_app_role(conn, role, password)
            upgrade(owner_url, revision, app_role=role, connection=conn)
            grant_app_role(conn, role)
            problems = app_role_problems(conn, role)
    finally:
        engine.dispose()
    return AppRoleReport(created, problems)


def downgrade(database_url: str, revision: str) -> None:
    """Revert migrations down to *revision*."""
    command.downgrade(alembic_config(database_url), revision)
