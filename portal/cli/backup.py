"""`filr backup`: the nightly backup, the restore, the weekly restore drill, the list.

`run` and `drill` are `@job`s (lock, `job:run` row on success: the last one is the backup's age
for the monitoring); a failure writes `backup:failed` or a failed `backup:drill`, alerts the
security officers and the platform operators, and exits 1. `restore` works without the portal's
database (it may be the one lost): it writes `backup:restored` into the restored trail.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import click

from portal.cli.job import Job, JobRun, job
from portal.cli.runtime import audit_context, settings_or_exit

RESTORE_STEPS = {
    "dump-checked": "sauvegarde de la base téléchargée, empreinte conforme au manifeste",
    "database-restored": "base de données restaurée",
    "objects-restored": "objets restaurés, empreintes conformes au manifeste",
    "purged": "purge faite : rien d'échu n'est lisible",
}
BACKUP_JOB = "backup"
DRILL_JOB = "backup-drill"


@click.group("backup")
def backup_group() -> None:
    """Sauvegardes vers le site de secours, restaurations, exercices de restauration."""


def _alert(run: Job, subject: str, error: str) -> None:
    """Raise the `backup_failed` alert now and e-mail it (national officers, operators)."""
    from portal.container import services
    from portal.db import db, utcnow
    from portal.securite.alerts import alert_at_once
    from portal.securite.detectors import Hit
    from portal.securite.models import AlertKind

    now = utcnow()
    svc = services()
    alert_at_once(
        db.session,
        svc.mailer,
        svc.settings.base_url,
        Hit(
            kind=AlertKind.BACKUP_FAILED,
            subject_type="backup",
            subject_id=subject,
            first_at=now,
            last_at=now,
            first_seq=None,
            last_seq=None,
            details={"error": error[:300]},
        ),
        run.context,
    )


def _describe(error: BaseException) -> str:
    from storage import StorageUnavailable
    from storage.backup import BackupTampered

    if isinstance(error, StorageUnavailable):
        return f"site de sauvegarde ou stockage injoignable ({error})"
    if isinstance(error, BackupTampered):
        return str(error)
    return f"{type(error).__name__}: {error}"


@backup_group.command("run")
@click.option(
    "--dry-run", is_flag=True, help="Vérifier les réglages et le site de secours, sans rien copier."
)
@job(BACKUP_JOB, busy="Une autre sauvegarde est en cours : rien à faire.")
def backup_run(run: Job) -> JobRun:
    """Sauvegarde la base et les nouveaux objets sur le site de secours (chaque nuit)."""
    import audit
    from audit import AuditAction, Outcome
    from portal.backup.services import run_backup
    from portal.backup.site import load_backup_key, open_backup_site
    from portal.container import services
    from portal.db import db

    settings = run.settings
    try:
        site = open_backup_site(settings)
        key = load_backup_key(settings)
        if run.dry_run:
            count = sum(1 for _ in site.list("backups/"))
            return JobRun(f"Site de sauvegarde joignable ({count} fichiers de sauvegarde).")
        report = run_backup(
            database_url=settings.migration_database_url,
            store=services().store.inner,
            site=site,
            key=key,
            retention_days=settings.backup_retention_days,
        )
    except Exception as e:  # every failure must be loud: audited, alerted, exit 1
        db.session.rollback()
        message = _describe(e)
        if run.dry_run:  # a check changes nothing, not even the trail
            click.echo(f"Sauvegarde impossible : {message}", err=True)
            return JobRun("Sauvegarde impossible.", exit_code=1)
        audit.record(
            db.session,
            AuditAction.BACKUP_FAILED,
            context=run.context,
            outcome=Outcome.FAILURE,
            details={"error": message[:300]},
        )
        db.session.commit()
        _alert(run, "backup", message)
        click.echo(f"Sauvegarde en échec : {message}", err=True)
        return JobRun("Sauvegarde en échec : alerte envoyée.", exit_code=1)
    details = {
        "outcome": "success",
        "backup_id": report.backup_id,
        "objects": report.objects,
        "objects_copied": report.objects_copied,
        "bytes_copied": report.bytes_copied,
        "dump_bytes": report.dump_bytes,
        "backups_deleted": report.backups_deleted,
        "objects_deleted": report.objects_deleted,
        "seconds": round(report.seconds, 3),
    }
    audit.record(db.session, AuditAction.BACKUP_COMPLETED, context=run.context, details=details)
    db.session.commit()
    return JobRun(
        f"Sauvegarde {report.backup_id} : {report.objects} objets dont {report.objects_copied} "
        f"nouveaux ({report.bytes_copied} octets), base {report.dump_bytes} octets chiffrés, "
        f"{report.backups_deleted} sauvegardes anciennes et {report.objects_deleted} objets "
        f"supprimés, en {report.seconds:.1f} s.",
        details=details,
    )


@backup_group.command("list")
def backup_list() -> None:
    """Liste les sauvegardes complètes du site de secours, la plus ancienne d'abord."""
    from portal.backup.site import BackupConfigurationError, load_backup_key, open_backup_site
    from storage.backup import BackupTampered, list_backups, read_manifest

    settings = settings_or_exit()
    try:
        site = open_backup_site(settings)
        key = load_backup_key(settings)
    except BackupConfigurationError as e:
        raise click.ClickException(str(e)) from None
    for backup_id in list_backups(site):
        try:
            manifest = read_manifest(site, key, backup_id)
        except BackupTampered as e:
            click.echo(f"{backup_id}  REFUSÉE : {e}")
            continue
        click.echo(
            f"{backup_id}  base du {manifest.dump.dumped_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"{len(manifest.objects)} objets ({manifest.total_bytes} octets)"
        )


@backup_group.command("restore")
@click.option("--backup", "backup_id", default="latest", show_default=True)
@click.option("--database-url", required=True, help="La base VIDE où restaurer.")
@click.option("--storage-url", required=True, help="Le stockage VIDE (s3://… ou file:///…).")
def backup_restore(backup_id: str, database_url: str, storage_url: str) -> None:
    """Restaure une sauvegarde dans une base et un stockage vides, purge comprise.

    Le stockage prend les réglages S3 de production (FILR_S3_*) ; la clé maîtresse est
    FILR_MASTER_KEY_FILE.
    """
    from portal.backup.dump import DumpError
    from portal.backup.services import RestoreRefused, latest_backup, restore_backup
    from portal.backup.site import (
        BackupConfigurationError,
        load_backup_key,
        open_backup_site,
        production_options,
    )
    from storage import IntegrityError, MasterKey, StorageError, open_store

    settings = settings_or_exit()
    try:
        site = open_backup_site(settings)
        key = load_backup_key(settings)
        master_key = MasterKey.from_file(settings.master_key_file)
        chosen = latest_backup(site) if backup_id == "latest" else backup_id
        target = open_store(storage_url, **production_options(settings, storage_url))
        report = restore_backup(
            site=site,
            key=key,
            backup_id=chosen,
            database_url=database_url,
            target=target,
            master_key=master_key,
            ctx=audit_context(),
            progress=lambda step: click.echo(f"  … {RESTORE_STEPS.get(step, step)}", err=True),
        )
    except (BackupConfigurationError, RestoreRefused, DumpError) as e:
        raise click.ClickException(f"Restauration refusée : {e}") from None
    except IntegrityError as e:
        raise click.ClickException(f"Sauvegarde refusée, elle a été altérée : {e}") from None
    except StorageError as e:
        raise click.ClickException(f"Restauration impossible : {e}") from None
    click.echo(
        f"Sauvegarde {report.backup_id} (base du {report.dumped_at:%Y-%m-%d %H:%M:%S} UTC) "
        f"restaurée : {report.objects} objets, puis purge : {report.deposits_expired} dépôts "
        f"échus détruits, {report.files_destroyed} fichiers, {report.orphans_removed} objets "
        f"orphelins. Le portail peut ouvrir (après `filr db upgrade --app-role …` sur "
        f"PostgreSQL). Durée : {report.seconds:.1f} s."
    )


@backup_group.command("finish-restore")
@click.option("--database-url", required=True, help="La base restaurée.")
@click.option("--storage-url", required=True, help="Le stockage restauré.")
def backup_finish_restore(database_url: str, storage_url: str) -> None:
    """Relance la purge d'une restauration inachevée ; le portail peut ensuite servir."""
    from portal.backup.services import RestoreRefused, finish_restore
    from portal.backup.site import production_options
    from storage import MasterKey, StorageError, open_store

    settings = settings_or_exit()
    try:
        report = finish_restore(
            database_url=database_url,
            target=open_store(storage_url, **production_options(settings, storage_url)),
            master_key=MasterKey.from_file(settings.master_key_file),
            ctx=audit_context(),
        )
    except RestoreRefused as e:
        raise click.ClickException(f"Restauration toujours inachevée : {e}") from None
    except StorageError as e:
        raise click.ClickException(f"Restauration toujours inachevée : {e}") from None
    click.echo(
        f"Restauration de la sauvegarde {report.backup_id} achevée : {report.deposits_expired} "
        f"dépôts échus détruits, {report.files_destroyed} fichiers, {report.orphans_removed} "
        "objets orphelins. Le portail peut ouvrir."
    )


class DrillInterrupted(BaseException):
    """The drill received SIGTERM, SIGINT or SIGHUP: clean up, then stop."""


@contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """Turn SIGTERM/SIGINT/SIGHUP into DrillInterrupted, so `finally` blocks clean up."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    interrupted: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        if interrupted:
            return  # a second signal must not interrupt the clean-up the first one started
        interrupted.append(signum)
        raise DrillInterrupted(signal.Signals(signum).name)

    saved = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield stop
    finally:
        for s, previous in saved.items():
            signal.signal(s, previous)


@backup_group.command("drill")
@click.option("--dry-run", is_flag=True, help="Nommer la sauvegarde qui serait restaurée.")
@click.option("--backup", "backup_id", default=None, help="Par défaut : la plus récente.")
@click.option(
    "--sample-bytes",
    default=1024**3,
    show_default=True,
    type=int,
    help="Tous les fichiers sont déchiffrés s'ils tiennent dans ce volume, sinon un échantillon.",
)
@click.option(
    "--scratch-storage-url", default=None, help="Par défaut : FILR_BACKUP_DRILL_STORAGE_URL."
)
@job(DRILL_JOB, busy="Un autre exercice de restauration est en cours : rien à faire.")
def backup_drill(
    run: Job, backup_id: str | None, sample_bytes: int, scratch_storage_url: str | None
) -> JobRun:
    """Restaure la dernière sauvegarde à part, la vérifie, mesure RTO et RPO, puis nettoie."""
    import audit
    from audit import AuditAction, Outcome
    from portal.backup.drill import DrillReport, run_drill
    from portal.backup.services import latest_backup
    from portal.backup.site import load_backup_key, open_backup_site
    from portal.db import db
    from storage import MasterKey

    settings = run.settings
    report: DrillReport | None
    try:
        site = open_backup_site(settings)
        key = load_backup_key(settings)
        if run.dry_run:
            return JobRun(f"Sauvegarde à restaurer : {backup_id or latest_backup(site)}.")
        with _interruptible() as stop:
            report = run_drill(
                settings,
                site=site,
                key=key,
                master_key=MasterKey.from_file(settings.master_key_file),
                ctx=run.context,
                backup_id=backup_id,
                sample_bytes=sample_bytes,
                scratch_storage_url=scratch_storage_url,
                stop=stop,
            )
    except DrillInterrupted as e:
        failure, report = f"exercice interrompu ({e}) ; fichiers temporaires supprimés", None
    except Exception as e:
        failure, report = _describe(e), None
    else:
        failure = "" if report.is_ok else "; ".join(report.failures)
    if run.dry_run:  # only the latest backup could not be named: say so, write nothing
        click.echo(f"Exercice impossible : {failure}", err=True)
        return JobRun("Exercice impossible.", exit_code=1)
    details: dict[str, object] = {"outcome": "success" if not failure else "failure"}
    if report is not None:
        details.update(
            backup_id=report.backup_id,
            rto_seconds=round(report.rto_seconds, 3),
            rpo_seconds=round(report.rpo_seconds, 3),
            files_checked=report.files_checked,
            files_total=report.files_total,
            bytes_checked=report.bytes_checked,
            chain_valid=report.chain_valid,
        )
    if failure:
        details["error"] = failure[:300]
    db.session.rollback()
    audit.record(
        db.session,
        AuditAction.BACKUP_DRILL,
        context=run.context,
        outcome=Outcome.SUCCESS if not failure else Outcome.FAILURE,
        details=details,
    )
    db.session.commit()
    text = "\n".join(report.lines()) if report is not None else f"Exercice en échec : {failure}"
    if failure:
        _alert(run, "drill", failure)
        click.echo(text, err=True)
        return JobRun("Exercice de restauration en échec : alerte envoyée.", exit_code=1)
    return JobRun(text, details=details)
