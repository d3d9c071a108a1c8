"""`filr audit`: verify the chain, export a period, print a day's head, grant the app role."""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import click

import audit
from audit import AuditAction
from portal.cli.runtime import app_context, audit_context
from portal.db import db, utcnow
from portal.settings import Settings


@click.group("audit")
def audit_group() -> None:
    """Le journal d'audit."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Vérifie la chaîne d'empreintes ; code 1 et première entrée rompue si elle est rompue."""
    with app_context():
        result = audit.verify_chain(db.session)
        db.session.rollback()
        if result.is_valid:
            click.echo(f"Chaîne intègre : {result.checked} entrées, tête {result.head_hash}")
            return
        click.echo(
            f"Chaîne rompue à l'entrée n° {result.first_broken_seq} ({result.reason}) "
            f"après {result.checked} entrées valides.",
            err=True,
        )
        sys.exit(1)


def _parse_when(value: str, *, end: bool) -> datetime:
    """A UTC date or date-time; a bare date given as an end includes that whole day."""
    try:
        if len(value) == 10:
            day = datetime.combine(date.fromisoformat(value), time(), UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter(f"date attendue (AAAA-MM-JJ ou ISO 8601) : {value!r}") from e
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@audit_group.command("export")
@click.option("--from", "start", required=True, help="Premier jour (AAAA-MM-JJ, UTC), inclus.")
@click.option("--to", "end", required=True, help="Dernier jour (AAAA-MM-JJ, UTC), inclus.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def audit_export(start: str, end: str, fmt: str, output: Path | None) -> None:
    """Exporte les entrées d'une période en JSON Lines (pour un SIEM) ou en CSV ; l'export est
    journalisé.
    """
    from audit.export import iter_csv, iter_jsonl
    from audit.query import AuditFilter, Scope, iter_matching

    begin_at, end_at = _parse_when(start, end=False), _parse_when(end, end=True)
    if end_at <= begin_at:
        raise click.BadParameter("--to doit suivre --from")
    with app_context():
        # Fail closed: the export is on the trail before a single row leaves the database.
        audit.record(db.session, AuditAction.AUDIT_EXPORTED, context=audit_context(), details={
            "via": "cli", "format": fmt, "from": begin_at.isoformat(), "to": end_at.isoformat(),
            "destination": "file" if output else "stdout",
        })  # fmt: skip
        db.session.commit()
        events = iter_matching(
            db.session,
            AuditFilter(start=begin_at, end=end_at),
            Scope(departements=None),
            batch=5000,
            end_read_transactions=True,
        )
        chunks = iter_jsonl(events) if fmt == "jsonl" else iter_csv(events)
        if output is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
            return
        # The trail is sensitive: the file is readable by its owner only.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            for chunk in chunks:
                f.write(chunk)
        click.echo(f"Export écrit dans {output}", err=True)


def utc_day(day: str | None) -> date:
    """The UTC day given as AAAA-MM-JJ, yesterday if none (exit 2 if malformed)."""
    try:
        return date.fromisoformat(day) if day else utcnow().date() - timedelta(days=1)
    except ValueError as e:
        raise click.BadParameter(f"date attendue (AAAA-MM-JJ) : {day!r}") from e


@audit_group.command("head")
@click.option("--date", "day", default=None, help="Jour UTC (AAAA-MM-JJ) ; par défaut : hier.")
def audit_head(day: str | None) -> None:
    """Affiche la tête de chaîne (numéro et empreinte de la dernière entrée) à la fin d'un jour
    UTC.
    """
    from audit.retention import head_of_day

    when = utc_day(day)
    with app_context():
        head = head_of_day(db.session, when)
        db.session.rollback()
    if head is None:
        raise click.ClickException(f"aucune entrée du journal avant la fin du {when}")
    click.echo(f"{when.isoformat()} {head.seq} {head.hash}")


@audit_group.command("grant-app-role")
def audit_grant_app_role() -> None:
    """Donne à FILR_DATABASE_APP_ROLE ses droits (PostgreSQL ; à lancer en propriétaire ;
    rejouable).
    """
    from audit.privileges import PrivilegeError, grant_app_role
    from portal.db import make_engine

    settings = Settings.from_env()
    if not settings.database_app_role:
        raise click.ClickException("FILR_DATABASE_APP_ROLE n'est pas défini")
    engine = make_engine(settings.migration_database_url)
    try:
        if engine.dialect.name != "postgresql":
            raise click.ClickException("les rôles ne concernent que PostgreSQL")
        with engine.begin() as conn:
            grant_app_role(conn, settings.database_app_role)
    except PrivilegeError as e:
        raise click.ClickException(str(e)) from e
    finally:
        engine.dispose()
    click.echo(
        f"Rôle {settings.database_app_role} : lecture et ajout seuls sur le journal d'audit."
    )
