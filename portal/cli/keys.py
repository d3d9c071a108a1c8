"""`filr keys`: département key rotation, data key re-wrapping and master key rotation.

The verbs live in `storage.Keyring`; these commands only build it from the settings, take the
job lock, write what was done to the audit trail and print it. Key material is never printed:
only key fingerprints (`master_key_id`) and counts.

The key store works in its own short transactions: no database session of the portal is open
while a job runs (SQLite would wait on itself), the audit row is written afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

import audit
from audit import AuditAction, Outcome
from portal.cli.runtime import app_context, audit_context
from portal.container import services
from portal.db import db, job_lock
from storage import (
    InvalidConfiguration,
    Keyring,
    KeyringError,
    MasterKey,
    generate_master_key_file,
    validate_departement,
)

_LOCK = "filr.keys"


@click.group("keys")
def keys() -> None:
    """Clés de chiffrement : rotation des clés de département et de la clé maîtresse."""


@contextmanager
def _keyring_job() -> Iterator[Keyring]:
    """The portal's keyring, inside an app context, holding the key jobs' lock."""
    with app_context(), job_lock(db.engine, _LOCK) as acquired:
        if not acquired:
            click.echo("Une autre opération sur les clés est en cours : rien à faire.")
            raise SystemExit(1)
        yield services().store.keyring


@contextmanager
def _recorded_if_it_fails(target: audit.Target, details: dict[str, object]) -> Iterator[None]:
    """Write a failed KEY_ROTATED row if the block raises (the job stopped half-way: the
    version was added, or some keys re-wrapped, and the trail must say so), then re-raise."""
    try:
        yield
    except Exception as e:
        db.session.rollback()
        _record(
            AuditAction.KEY_ROTATED,
            target=target,
            details={**details, "error": type(e).__name__},
            failed=True,
        )
        raise


def _record(
    action: AuditAction,
    *,
    target: audit.Target,
    details: dict[str, object],
    failed: bool,
) -> None:
    audit.record(
        db.session,
        action,
        target=target,
        context=audit_context(),
        outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
        details=details,
    )
    db.session.commit()


def _departement(code: str) -> str:
    try:
        return validate_departement(code)
    except KeyringError:
        raise click.BadParameter("code de département invalide", param_hint="CODE") from None


# --- status --------------------------------------------------------------------------


@dataclass(frozen=True)
class KekStatus:
    """One département key version, as `filr keys status` shows it."""

    departement: str
    version: int
    master_key_id: str
    is_current_version: bool
    is_under_current_master_key: bool
    data_keys: int


def key_status(keyring: Keyring) -> list[KekStatus]:
    """Describe every département key version: its master key and the data keys it wraps."""
    keystore = keyring.keystore
    counts = keystore.data_key_counts()
    records = keystore.keks()
    newest: dict[str, int] = {}
    for record in records:
        newest[record.departement] = max(newest.get(record.departement, 0), record.version)
    return [
        KekStatus(
            departement=record.departement,
            version=record.version,
            master_key_id=record.master_key_id,
            is_current_version=record.version == newest[record.departement],
            is_under_current_master_key=record.master_key_id == keyring.master_key_id,
            data_keys=counts.get((record.departement, record.version), 0),
        )
        for record in records
    ]


@keys.command("status")
@click.option("--json", "as_json", is_flag=True, help="Sortie lisible par un programme (JSON).")
def keys_status(as_json: bool) -> None:
    """Affiche la clé maîtresse en service et, par département, ses versions de clé.

    Aucun secret n'est affiché.
    """
    with app_context():
        keyring = services().store.keyring
        rows = key_status(keyring)
        previous = keyring.previous_master_key_ids
    to_master = sum(not row.is_under_current_master_key for row in rows)
    to_rewrap = sum(row.data_keys for row in rows if not row.is_current_version)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "master_key_id": keyring.master_key_id,
                    "previous_master_key_ids": list(previous),
                    "keks_under_previous_master_key": to_master,
                    "data_keys_to_rewrap": to_rewrap,
                    "keks": [row.__dict__ for row in rows],
                },
                indent=2,
            )
        )
        return
    click.echo(f"Clé maîtresse actuelle : {keyring.master_key_id}")
    click.echo(f"Clés maîtresses précédentes : {', '.join(previous) or 'aucune'}")
    for row in rows:
        marks = []
        if row.is_current_version:
            marks.append("version en service")
        if not row.is_under_current_master_key:
            marks.append("sous une ancienne clé maîtresse")
        click.echo(
            f"  département {row.departement:3} version {row.version:3} : "
            f"{row.data_keys} clés de fichier, clé maîtresse {row.master_key_id}"
            + (f" ({', '.join(marks)})" if marks else "")
        )
    click.echo(
        f"À reprendre : {to_master} clés de département sous une ancienne clé maîtresse "
        f"(filr keys rotate-master), {to_rewrap} clés de fichier sous une ancienne version "
        f"(filr keys rewrap)."
    )


# --- département keys ----------------------------------------------------------------


@keys.command("rotate-departement")
@click.argument("code")
@click.option(
    "--no-rewrap",
    is_flag=True,
    help="Ajoute seulement la version ; rechiffrer plus tard avec `keys rewrap`.",
)
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(min=1))
def keys_rotate_departement(code: str, no_rewrap: bool, batch_size: int) -> None:
    """Donne au département CODE une nouvelle version de clé, puis rechiffre ses clés de fichier
    sous elle.
    """
    departement = _departement(code)
    with _keyring_job() as keyring:
        if departement not in keyring.departements():
            click.echo(f"Le département {departement} n'a pas encore de clé.")
            raise SystemExit(1)
        version = keyring.rotate(departement)
        target = audit.Target("departement-key", departement, departement=departement)
        details: dict[str, object] = {"scope": "departement", "version": version}
        rewrapped = 0
        failed: tuple[str, ...] = ()
        if not no_rewrap:
            with _recorded_if_it_fails(target, details):
                report = keyring.rewrap(departement, batch_size=batch_size)
            rewrapped, failed = report.rewrapped, report.failed
        _record(
            AuditAction.KEY_ROTATED,
            target=target,
            details={**details, "rewrapped": rewrapped, "failed": len(failed)},
            failed=bool(failed),
        )
    click.echo(
        f"Département {departement} : version {version} en service, "
        f"{rewrapped} clés de fichier reprises."
    )
    _report_failed_objects(failed)


@keys.command("rewrap")
@click.option("--departement", "codes", multiple=True, help="Seulement ce département (répétable).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(min=1))
@click.option("--dry-run", is_flag=True, help="Compte ce qui serait rechiffré ; ne change rien.")
def keys_rewrap(codes: tuple[str, ...], batch_size: int, dry_run: bool) -> None:
    """Rechiffre les clés de fichier encore sous une ancienne version de clé de département
    (reprenable).
    """
    wanted = [_departement(code) for code in codes]
    with _keyring_job() as keyring:
        known = keyring.departements()
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            click.echo(f"Pas encore de clé pour : {', '.join(unknown)}.")
            raise SystemExit(1)
        departements = wanted or known
        if dry_run:
            pending = sum(
                row.data_keys
                for row in key_status(keyring)
                if row.departement in departements and not row.is_current_version
            )
            click.echo(f"[essai] {pending} clés de fichier à reprendre.")
            return
        rewrapped = 0
        failed: list[str] = []
        for departement in departements:
            report = keyring.rewrap(departement, batch_size=batch_size)
            rewrapped += report.rewrapped
            failed.extend(report.failed)
        _record(
            AuditAction.JOB_RUN,
            target=audit.Target("departement-key"),
            details={
                "job": "keys-rewrap",
                "departements": len(departements),
                "rewrapped": rewrapped,
                "failed": len(failed),
            },
            failed=bool(failed),
        )
    click.echo(f"{rewrapped} clés de fichier reprises ({len(departements)} départements).")
    _report_failed_objects(tuple(failed))


def _report_failed_objects(failed: tuple[str, ...]) -> None:
    if not failed:
        return
    # Object keys are generated ids, not personal data: the operator needs them to investigate.
    click.echo(f"{len(failed)} clés de fichier illisibles (ligne altérée ?) :")
    for object_key in failed:
        click.echo(f"  {object_key}")
    raise SystemExit(1)


# --- master key ----------------------------------------------------------------------


@keys.command("generate-master-key")
@click.argument("path", metavar="CHEMIN", type=click.Path(dir_okay=False, path_type=Path))
def keys_generate_master_key(path: Path) -> None:
    """Écrit une nouvelle clé maîtresse aléatoire dans CHEMIN (mode 0600 ; ne remplace jamais un
    fichier).
    """
    if not generate_master_key_file(path):
        click.echo(f"{path} existe déjà : il n'est pas remplacé.")
        raise SystemExit(1)
    click.echo(f"Nouvelle clé maîtresse {MasterKey.from_file(path).key_id} écrite dans {path}.")


@keys.command("rotate-master")
@click.option(
    "--new-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="La nouvelle clé maîtresse : refus si ce n'est pas la clé actuelle configurée.",
)
@click.option("--batch-size", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--dry-run", is_flag=True, help="Compte ce qui serait rechiffré ; ne change rien.")
def keys_rotate_master(new_key_file: Path | None, batch_size: int, dry_run: bool) -> None:
    """Rechiffre chaque clé de département sous la clé maîtresse actuelle (reprenable, rejouable).

    Le fichier de clé maîtresse (FILR_MASTER_KEY_FILE) doit donner la nouvelle clé
    d'abord, l'ancienne ensuite, sur chaque serveur (voir docs/storage.md : rotation de la
    clé maîtresse).
    """
    expected = None
    if new_key_file is not None:
        try:
            expected = MasterKey.from_file(new_key_file).key_id
        except InvalidConfiguration as e:
            raise click.BadParameter(str(e), param_hint="--new-key-file") from None
    with _keyring_job() as keyring:
        if expected is not None and expected != keyring.master_key_id:
            click.echo(
                f"La clé maîtresse en service est {keyring.master_key_id}, pas la nouvelle clé "
                f"{expected} : placez-la en tête du fichier FILR_MASTER_KEY_FILE (l'ancienne "
                "clé à la ligne suivante) sur tous les serveurs, redémarrez-les, puis relancez."
            )
            raise SystemExit(1)
        pending = [row for row in key_status(keyring) if not row.is_under_current_master_key]
        if dry_run:
            click.echo(
                f"[essai] {len(pending)} clés de département à reprendre sous la clé maîtresse "
                f"{keyring.master_key_id}."
            )
            return
        with _recorded_if_it_fails(
            audit.Target("master-key", keyring.master_key_id), {"scope": "master"}
        ):
            report = keyring.rewrap_master(batch_size=batch_size)
        remaining = sum(not row.is_under_current_master_key for row in key_status(keyring))
        _record(
            AuditAction.KEY_ROTATED,
            target=audit.Target("master-key", keyring.master_key_id),
            details={
                "scope": "master",
                "rewrapped": report.rewrapped,
                "failed": len(report.failed),
                "remaining": remaining,
            },
            failed=bool(report.failed),
        )
    click.echo(
        f"{report.rewrapped} clés de département reprises sous la clé maîtresse "
        f"{report.master_key_id} ; {remaining} restent sous une ancienne clé."
    )
    if report.failed:
        click.echo("Clés de département qu'aucune clé maîtresse configurée ne déchiffre :")
        for departement, version in report.failed:
            click.echo(f"  département {departement} version {version}")
        raise SystemExit(1)
    if remaining == 0:
        click.echo(
            "Rotation terminée : l'ancienne clé maîtresse peut être retirée du fichier "
            "(gardez-la sous séquestre tant que des sauvegardes antérieures sont conservées)."
        )
