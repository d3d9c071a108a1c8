"""`filr flows …`: check a flow file offline, write synthetic files. No server, no database."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from portal.flows.core.codes import NATURES_ORIENTATION
from portal.flows.core.registry import all_specs
from portal.flows.core.report import ValidationReport
from portal.flows.core.rules import Rule
from portal.flows.core.sample import injectable_rules, write_sample
from portal.flows.core.types import FlowType, Severity
from portal.flows.core.validator import validate
from portal.flows.core.xsd import xsd_bytes
from portal.orgs.departements import is_departement_code

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class InputError(click.ClickException):
    """The file could not be read: a usage problem (exit 2), not an invalid flow (exit 1)."""

    exit_code = EXIT_USAGE


def _departement(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> str | None:
    if value is not None and not is_departement_code(value):
        raise click.BadParameter("code département attendu : 01 à 95 (sauf 20), 2A, 2B, 971 à 976.")
    return value


_FLOW_TYPE = click.Choice([kind.value for kind in FlowType], case_sensitive=False)


@click.group("flows", help="Flux XML CGPEM, PECGM, PECDH : vérification hors ligne et exemples.")
def flows() -> None:
    """The `flows` command group (attached to `filr`)."""


@flows.command("validate")
@click.argument(
    "file", metavar="FICHIER", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--type", "flow_type", type=_FLOW_TYPE, help="Flux attendu (lu dans l'en-tête sinon)."
)
@click.option(
    "--departement", callback=_departement, help="Département de l'espace de dépôt (ex. 62)."
)
@click.option("--json", "as_json", is_flag=True, help="Rapport JSON sur la sortie standard.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Écrire aussi le rapport CSV dans ce fichier.",
)
def validate_command(
    file: Path,
    flow_type: str | None,
    departement: str | None,
    as_json: bool,
    csv_path: Path | None,
) -> None:
    """Vérifie FICHIER comme le portail le fera au dépôt (code 0 : valide, 1 : refusé)."""
    try:
        report = validate(
            file,
            expected_type=FlowType(flow_type.upper()) if flow_type else None,
            departement=departement,
        )
    except OSError as error:
        raise InputError(f"lecture impossible de {file} : {error.strerror or error}") from error
    if csv_path is not None:
        try:
            csv_path.write_text(report.to_csv(), encoding="utf-8-sig")
        except OSError as error:
            raise InputError(f"écriture impossible de {csv_path} : {error}") from error
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(_human(file, report))
    sys.exit(EXIT_VALID if report.is_valid else EXIT_INVALID)


def _human(file: Path, report: ValidationReport) -> str:
    lines = [f"Fichier : {file}"]
    if report.flow_type is not None:
        parts = [f"Flux : {report.flow_type.value} (structure {report.version})"]
        if report.departement:
            parts.append(f"département {report.departement}")
        if report.date_reference:
            parts.append(f"date de référence {report.date_reference.isoformat()}")
        lines.append(" — ".join(parts))
    lines.append(f"Dossiers : {report.record_count}")
    if report.nature_counts:
        lines.append("Natures d'orientation :")
        lines.extend(
            f"  {code} {NATURES_ORIENTATION.get(code, '')} : {count}"
            for code, count in report.nature_counts.items()
        )
    if report.readings:
        lines.append("Lecture des tables de la convention :")
        lines.extend(f"  {where} : {reading}" for where, reading in report.readings.items())
    verdict = "VALIDE" if report.is_valid else "REFUSÉ"
    lines.append(
        f"Résultat : {verdict} — {report.error_count} erreur(s), "
        f"{report.warning_count} avertissement(s)"
    )
    for issue in report.issues:
        where = ", ".join(
            part
            for part in (
                f"ligne {issue.line}" if issue.line is not None else "",
                f"dossier {issue.record}" if issue.record is not None else "",
                issue.field or "",
            )
            if part
        )
        label = "ERREUR" if issue.severity is Severity.ERROR else "AVERTISSEMENT"
        value = f" — valeur : « {issue.value} »" if issue.value is not None else ""
        lines.append(f"  {label} [{issue.rule.value}] {where} : {issue.message}{value}")
    if report.omitted_issue_count:
        detail = ", ".join(f"{rule} : {count}" for rule, count in report.omitted_counts.items())
        lines.append(
            f"  … et {report.omitted_issue_count} autre(s) anomalie(s) non listée(s) ({detail})."
        )
    return "\n".join(lines)


@flows.command("sample")
@click.option("--type", "flow_type", type=_FLOW_TYPE, required=True, help="Flux à produire.")
@click.option("--records", type=click.IntRange(min=0), required=True, help="Nombre de dossiers.")
@click.option("--departement", default="62", show_default=True, callback=_departement)
@click.option(
    "--errors",
    default="",
    help="Règles à enfreindre, séparées par des virgules (voir `filr flows rules`).",
)
@click.option("--seed", type=int, default=None, help="Graine du tirage (fichier reproductible).")
@click.option(
    "--date-reference",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Date de référence (aaaa-mm-jj ; mois courant par défaut).",
)
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Fichier."
)
def sample_command(
    flow_type: str,
    records: int,
    departement: str,
    errors: str,
    seed: int | None,
    date_reference: datetime | None,
    output: Path,
) -> None:
    """Écrit un fichier d'exemple aux identités inventées (jamais réelles)."""
    kind = FlowType(flow_type.upper())
    names = [name.strip() for name in errors.split(",") if name.strip()]
    reference = date_reference.date() if date_reference is not None else None
    try:
        result = write_sample(
            output, kind, records, departement, names, seed, date_reference=reference
        )
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--errors") from error
    except OSError as error:
        raise InputError(f"écriture impossible de {output} : {error}") from error
    click.echo(
        f"{output} : flux {kind.value}, {result.records} dossier(s), département "
        f"{departement}, {result.size_bytes} octets."
    )
    for injected in result.injected:
        where = ", ".join(
            part
            for part in (
                f"ligne {injected.line}" if injected.line is not None else "",
                f"dossier {injected.record}" if injected.record is not None else "",
                injected.field or "",
            )
            if part
        )
        click.echo(f"  erreur injectée [{injected.rule.value}] {where}")


@flows.command("xsd")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Dossier où écrire les schémas.",
)
def xsd_command(output: Path) -> None:
    """Écrit les schémas XSD des flux (un par flux et par version) dans un dossier."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        for spec in all_specs():
            target = output / spec.xsd_name
            target.write_bytes(xsd_bytes(spec))
            click.echo(str(target))
    except OSError as error:
        raise InputError(f"écriture impossible dans {output} : {error}") from error


@flows.command("rules")
@click.option("--type", "flow_type", type=_FLOW_TYPE, help="Seulement les règles injectables.")
def rules_command(flow_type: str | None) -> None:
    """Liste les codes de règle des rapports : gravité, source (convention ou nous), sens.

    Une erreur refuse le fichier entier ; un avertissement est montré aux deux parties et le
    fichier est transmis. Source « nous » : contrôle de plausibilité du portail, que la
    convention n'écrit pas (jamais une erreur).
    """
    wanted = set(injectable_rules(FlowType(flow_type.upper()))) if flow_type else set(Rule)
    for rule in Rule:
        if rule in wanted:
            click.echo(f"{rule.value:34} {rule.severity.label:14} {rule.description}")
            click.echo(f"{'':34} {'':14} source : {rule.source}")


def _month(_context: click.Context, _parameter: click.Parameter, value: str) -> tuple[int, int]:
    try:
        moment = datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise click.BadParameter("mois attendu au format AAAA-MM (ex. 2026-11).") from None
    return moment.year, moment.month


@flows.command("calendar")
@click.argument("departement", callback=_departement)
@click.argument("month", metavar="AAAA-MM", callback=_month)
def calendar_command(departement: str, month: tuple[int, int]) -> None:
    """Dates du mois pour DEPARTEMENT : échéance CGPEM, PECGM, semaines PECDH.

    L'échéance CGPEM est à 17 h à l'heure du département (outre-mer : son propre fuseau),
    écrite en ISO 8601 avec son décalage, pour les scripts d'export.
    """
    from portal.flows import calendar

    year, number = month
    schedule = calendar.month_schedule(departement, year, number)
    zone = calendar.time_zone(departement).key
    click.echo(f"Département {departement} — {year}-{number:02d} — fuseau {zone}")
    click.echo(f"CGPEM  échéance     {schedule.cgpem_deadline.isoformat()}")
    click.echo(f"PECGM  disponible   {schedule.pecgm_available_from.isoformat()}")
    for week in schedule.pecdh_weeks:
        iso_year, iso_week = week.iso_week
        due = week.due_on.isoformat() if week.due_on else "aucun jour ouvré"
        click.echo(
            f"PECDH  semaine {iso_year}-W{iso_week:02d} du {week.monday.isoformat()} "
            f"au {week.sunday.isoformat()}, au plus tard {due}"
        )
