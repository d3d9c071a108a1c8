"""`filr db`: migrations, and the application role on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import sqlalchemy as sa

from portal.cli.runtime import settings_or_exit
from portal.db import database_error_summary, is_database_unavailable, make_engine
from portal.settings import Settings


@click.group("db")
def db_group() -> None:
    """Migrations de la base de données."""


def migration_url_name(settings: Settings) -> str:
    """The variable that holds the URL migrations use (to name it in an error)."""
    return "FILR_DATABASE_OWNER_URL" if settings.database_owner_url else "FILR_DATABASE_URL"


@contextmanager
def database_errors(name: str) -> Iterator[None]:
    """A wrong database URL or a database out of reach: one line and exit 1, no traceback."""
    try:
        yield
    except sa.exc.SQLAlchemyError as e:
        if not is_database_unavailable(e):
            raise
        raise click.ClickException(
            f"base de données injoignable ({name}) : {database_error_summary(e)}"
        ) from None


def engine_or_exit(name: str, url: str) -> sa.Engine:
    """An engine on *url* (held in the variable *name*), or one line and exit 1."""
    try:
        return make_engine(url)
    except (sa.exc.ArgumentError, ImportError):  # ImportError: postgresql:// wants psycopg2
        # Never the URL itself in the message: it may hold a password.
        raise click.ClickException(
            f"{name} n'est pas une adresse de base de données utilisable "
            "(attendu : postgresql+psycopg://… ou sqlite:///…)"
        ) from None


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.option(
    "--app-role",
    default=None,
    metavar="NAME",
    help="PostgreSQL : crée ce rôle applicatif s'il manque (mot de passe lu dans "
    "FILR_DATABASE_APP_PASSWORD_FILE), lui donne exactement les droits du portail, vérifie qu'il "
    "n'en a pas d'autres.",
)
def db_upgrade(revision: str, app_role: str | None) -> None:
    """Applique les migrations (en propriétaire des tables)."""
    from audit.privileges import PrivilegeError
    from portal.migrate import set_up_app_role, upgrade

    settings = settings_or_exit()
    name = migration_url_name(settings)
    engine_or_exit(name, settings.migration_database_url).dispose()
    if app_role is None:
        with database_errors(name):
            upgrade(settings.migration_database_url, revision)
        click.echo("Base de données à jour.")
        return
    if settings.database_app_role and settings.database_app_role != app_role:
        raise click.ClickException(
            f"--app-role {app_role} ne correspond pas à FILR_DATABASE_APP_ROLE "
            f"({settings.database_app_role})"
        )
    try:
        with database_errors(name):
            report = set_up_app_role(
                settings.migration_database_url, app_role, settings.database_app_password, revision
            )
    except PrivilegeError as e:
        raise click.ClickException(str(e)) from None
    click.echo("Base de données à jour.")
    if report.created:
        click.echo(f"Rôle {app_role} créé : connexion par mot de passe, aucun autre attribut.")
    if report.problems:
        raise click.ClickException(
            f"le rôle {app_role} peut plus que ce dont le portail a besoin : "
            + " ; ".join(report.problems)
        )
    click.echo(
        f"Rôle {app_role} vérifié : les droits du portail, rien de plus (lecture et ajout "
        "seuls sur le journal d'audit)."
    )


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Annule les migrations jusqu'à REVISION."""
    from portal.migrate import downgrade

    downgrade(Settings.from_env().migration_database_url, revision)
    click.echo(f"Base de données ramenée à {revision}.")
