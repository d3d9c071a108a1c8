"""`filr jobs`: the scheduled jobs (cron, systemd timers, Kubernetes CronJobs).

Each is a service function returning a small report; `@job` takes the lock, writes the
`job:run` row and prints. See docs/operations.md for the schedule.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import click

from portal.cli.job import DRY_RUN_MARK, Job, JobRun, job
from portal.cli.runtime import app_context
from portal.container import services
from portal.db import db, utcnow
from portal.settings import Settings


@click.group("jobs")
def jobs() -> None:
    """Tâches planifiées (cron, minuteries systemd, CronJobs Kubernetes)."""


@jobs.command("sessions")
@click.option("--dry-run", is_flag=True)
def jobs_sessions(dry_run: bool) -> None:
    """Supprime les sessions expirées et les compteurs de limitation périmés."""
    from portal.auth.sessions import delete_expired_sessions

    # Not a `@job`: no lock (two runs at once delete the same rows, harmlessly) and no
    # `job:run` row (a run every 15 minutes would fill the trail with ticks).
    with app_context() as app:
        settings: Settings = app.config["FILR_SETTINGS"]
        done = delete_expired_sessions(
            db.session,
            utcnow(),
            idle=timedelta(minutes=settings.session_idle_minutes),
            absolute=timedelta(hours=settings.session_absolute_hours),
            dry_run=dry_run,
        )
        click.echo(
            f"{DRY_RUN_MARK if dry_run else ''}{done.sessions} sessions expirées, "
            f"{done.throttle_events} compteurs anciens supprimés."
        )


@jobs.command("purge")
@click.option("--dry-run", is_flag=True, help="Dit ce qui serait détruit ; ne change rien.")
@click.option("--batch-size", default=100, show_default=True, type=int)
@job("purge", busy="Une autre purge est en cours : rien à faire.")
def jobs_purge(run: Job, batch_size: int) -> JobRun:
    """Détruit les dépôts expirés, retirés et abandonnés, puis les objets et envois orphelins."""
    from portal.deposits.purge import (
        abort_stale_uploads,
        cleanup_orphans,
        finish_destructions,
        purge_expired_deposits,
    )
    from portal.deposits.resumable import expire_uploads

    dry_run, ctx, store = run.dry_run, run.context, services().store
    # First what an earlier destruction recorded but could not finish (store unavailable).
    late = finish_destructions(db.session, store, dry_run=dry_run)
    report = purge_expired_deposits(
        db.session, store, batch_size=batch_size, dry_run=dry_run, ctx=ctx
    )
    orphans = cleanup_orphans(db.session, store, dry_run=dry_run, ctx=ctx)
    # Multipart uploads interrupted by a crash hold storage until aborted (S3 only); after the
    # purge, so that the uploads of the drafts it destroyed go too.
    aborted = abort_stale_uploads(db.session, store, dry_run=dry_run)
    if not dry_run:
        aborted += expire_uploads(db.session, store, utcnow())
    from portal.fiches.services import purge as purge_fiches

    fiches = 0 if dry_run else purge_fiches(db.session, services(), utcnow())
    pending = late.pending + report.removal_pending
    return JobRun(
        f"{report.expired} dépôts expirés, "
        f"{report.withdrawn} retirés, {report.abandoned_drafts} brouillons abandonnés, "
        f"{report.files_destroyed} fichiers détruits, {fiches} fiches de liaison détruites, "
        f"{orphans} objets orphelins, "
        f"{aborted} envois interrompus annulés, {late.removed} contenus de dépôts déjà "
        f"détruits supprimés du stockage ({late.shredded} clés effacées en retard)"
        + (
            f" ; {pending} contenus en attente de suppression (stockage indisponible)."
            if pending
            else "."
        ),
        details={
            "expired": report.expired,
            "withdrawn": report.withdrawn,
            "abandoned_drafts": report.abandoned_drafts,
            "files_destroyed": report.files_destroyed,
            "orphans": orphans,
            "fiches_destroyed": fiches,
            "aborted_uploads": aborted,
            "late_shreds": late.shredded,
            "late_removals": late.removed,
            "removals_pending": pending,
        },
        exit_code=1 if pending else 0,  # the monitoring should see a store refusing removals
    )


@jobs.command("antivirus")
@click.option(
    "--dry-run", is_flag=True, help="Compter ce qui attend une analyse, sans rien changer."
)
@job("antivirus", busy="Une autre analyse antivirus est en cours : rien à faire.")
def jobs_antivirus(run: Job) -> JobRun:
    """Analyse les fichiers non analysés au dépôt, transmet les dépôts qui les attendaient."""
    from portal.deposits.rescan import rescan_pending

    report = rescan_pending(db.session, services(), run.context, dry_run=run.dry_run)
    summary = (
        f"Antivirus : {report.pending} fichiers en attente d'analyse, {report.clean} sains, "
        f"{report.infected} refusés (signature détectée), {report.published} dépôts transmis, "
        f"{report.still_held} dépôts encore en attente."
    )
    if report.unavailable is not None:
        summary += " L'antivirus (clamd) est indisponible : rien n'a été publié sans analyse."
    if report.unscannable:
        summary += (
            f" {report.unscannable} fichiers n'ont pas pu être analysés (trop gros pour clamd "
            "ou erreur) : ils restent en attente."
        )
    return JobRun(
        summary,
        details={
            "pending": report.pending,
            "clean": report.clean,
            "infected": report.infected,
            "published": report.published,
            "still_held": report.still_held,
            "clamd_available": report.unavailable is None,
            "unscannable": report.unscannable,
        },
        # Monitoring must see a clamd that is down, or files it cannot scan: deposits wait.
        exit_code=1 if report.unavailable is not None or report.unscannable else 0,
    )


@jobs.command("antivirus-signatures")
@click.option("--dry-run", is_flag=True, help="Dire l'âge des signatures, sans lever d'alerte.")
@job("antivirus-signatures", busy="Une autre vérification est en cours : rien à faire.")
def jobs_antivirus_signatures(run: Job) -> JobRun:
    """Alerte si les signatures de clamd dépassent FILR_ANTIVIRUS_MAX_SIGNATURE_AGE_HOURS."""
    from portal.deposits.rescan import signatures_job

    version, stale = signatures_job(
        db.session, services(), run.context, now=utcnow(), dry_run=run.dry_run
    )
    if version is None:
        return JobRun(
            "L'antivirus (clamd) est indisponible : signatures non vérifiées.",
            details={"clamd_available": False},
            exit_code=1,
        )
    summary = f"Antivirus : {version}. " + (
        "Signatures périmées ou sans date : alerte levée." if stale else "Signatures à jour."
    )
    return JobRun(
        summary,
        details={"clamd_available": True, "version": version[:120], "stale": stale},
        exit_code=1 if stale else 0,
    )


@jobs.command("reminders")
@click.option("--dry-run", is_flag=True, help="Dit ce qui serait envoyé ; n'envoie rien.")
@job("reminders", busy="Un autre envoi de rappels est en cours : rien à faire.")
def jobs_reminders(run: Job) -> JobRun:
    """Relance les destinataires qui n'ont pas téléchargé, 7 jours et 1 jour avant l'expiration."""
    from portal.deposits.reminders import send_expiry_reminders

    report = send_expiry_reminders(db.session, services(), utcnow(), run.context, run.dry_run)
    return JobRun(
        f"Rappels : {report.deposits[7]} dépôts à 7 jours, "
        f"{report.deposits[1]} à 1 jour, {report.mails_sent} e-mails "
        f"{'à envoyer' if run.dry_run else 'envoyés'}, "
        f"{report.mails_failed} en échec.",
        details={
            "deposits_7": report.deposits[7],
            "deposits_1": report.deposits[1],
            "sent": report.mails_sent,
            "failed": report.mails_failed,
        },
    )


@jobs.command("digest")
@click.option("--dry-run", is_flag=True, help="Dit ce qui serait envoyé ; n'envoie rien.")
@job("digest", busy="Un autre envoi de résumés est en cours : rien à faire.")
def jobs_digest(run: Job) -> JobRun:
    """Envoie le résumé quotidien aux personnes qui l'ont choisi."""
    from portal.deposits.reminders import send_daily_digests

    report = send_daily_digests(db.session, services(), utcnow(), run.context, run.dry_run)
    return JobRun(
        f"Résumés quotidiens : {report.mails_sent} e-mails "
        f"{'à envoyer' if run.dry_run else 'envoyés'} ({report.deposits} dépôts), "
        f"{report.mails_failed} en échec.",
        details={
            "users": report.users,
            "deposits": report.deposits,
            "sent": report.mails_sent,
            "failed": report.mails_failed,
        },
    )


@jobs.command("audit-retention")
@click.option("--dry-run", is_flag=True, help="Compte les entrées qui seraient supprimées.")
@click.option("--batch-size", default=100_000, show_default=True, type=int)
@job("audit-retention", busy="Une autre purge du journal est en cours : rien à faire.")
def jobs_audit_retention(run: Job, batch_size: int) -> JobRun:
    """Supprime les entrées plus anciennes que FILR_AUDIT_RETENTION_MONTHS, derrière un point de
    contrôle.
    """
    from sqlalchemy.orm import Session as OrmSession

    from audit.retention import RetentionRefused, months_before, purge_expired_events
    from portal.db import make_engine

    settings = run.settings
    cutoff = months_before(utcnow(), settings.audit_retention_months)
    # The owner's connection: on PostgreSQL the application's role may not delete.
    engine = make_engine(settings.migration_database_url)
    try:
        with OrmSession(engine, expire_on_commit=False) as session:
            report = purge_expired_events(
                session,
                cutoff=cutoff,
                dry_run=run.dry_run,
                batch=batch_size,
                context=run.context,
                retention_months=settings.audit_retention_months,
            )
    except RetentionRefused as e:
        click.echo(f"Purge refusée : {e}", err=True)
        raise SystemExit(1) from None
    finally:
        engine.dispose()
    return JobRun(
        f"Journal d'audit : {report.rows_deleted} entrées "
        f"antérieures au {cutoff:%Y-%m-%d} {'à supprimer' if run.dry_run else 'supprimées'} "
        f"(conservation {settings.audit_retention_months} mois).",
        details={
            "cutoff": cutoff.isoformat(),
            "retention_months": settings.audit_retention_months,
            "rows_deleted": report.rows_deleted,
            "checkpoint_seq": report.checkpoint_seq,
        },
    )


@jobs.command("audit-head")
@click.option("--date", "day", default=None, help="Jour UTC (AAAA-MM-JJ) ; par défaut : hier.")
@click.option(
    "--dry-run", is_flag=True, help="Affiche la tête et les destinataires ; n'envoie rien."
)
@job("audit-head", busy="Un autre envoi de l'empreinte est en cours : rien à faire.")
def jobs_audit_head(run: Job, day: str | None) -> JobRun:
    """Envoie l'empreinte de tête de chaîne de la veille aux responsables sécurité nationaux et de
    la plateforme.
    """
    from portal.cli.audit import utc_day
    from portal.securite.jobs import send_daily_head

    when = utc_day(day)
    # The service writes its own `audit:head-sent` row.
    report = send_daily_head(db.session, services().mailer, when, run.context, dry_run=run.dry_run)
    if report.head is None:
        return JobRun(
            f"Aucune entrée du journal avant la fin du {when} : rien à envoyer.",
            is_marked_in_dry_run=False,
        )
    return JobRun(
        f"Empreinte du {when} (entrée n° {report.head.seq}) : "
        f"{report.head.hash} — {report.recipients} destinataires, {report.sent} envoyés, "
        f"{report.failed} en échec.",
        exit_code=1 if report.failed or (not run.dry_run and report.recipients == 0) else 0,
    )


@jobs.command("flow-reminders")
@click.option("--dry-run", is_flag=True, help="Dit ce qui serait envoyé ; n'envoie rien.")
@job("flow-reminders", busy="Un autre envoi de rappels de flux est en cours : rien à faire.")
def jobs_flow_reminders(run: Job) -> JobRun:
    """Rappels du calendrier des flux : avant l'échéance CGPEM, et une fois une échéance passée."""
    from portal.flows.reminders import send_flow_reminders

    report = send_flow_reminders(db.session, services(), utcnow(), run.context, run.dry_run)
    return JobRun(
        "\n".join(
            [
                f"Rappels de flux : {report.reminders} rappel(s), "
                f"{report.mails_sent} e-mails {'à envoyer' if run.dry_run else 'envoyés'}, "
                f"{report.mails_failed} en échec, {report.already_sent} déjà envoyé(s) ; "
                f"{report.reports_forgotten} rapport(s) de plus de 90 jours effacé(s).",
                *(f"  {key}" for key in report.keys),
            ]
        ),
        details={
            "reminders": report.reminders,
            "sent": report.mails_sent,
            "failed": report.mails_failed,
            "reports_forgotten": report.reports_forgotten,
        },
    )


@jobs.command("fiches-rappels")
@click.option("--dry-run", is_flag=True, help="Dit ce qui serait envoyé ; n'envoie rien.")
@job("fiches-rappels", busy="Un autre envoi de rappels de fiches est en cours : rien à faire.")
def jobs_fiches_reminders(run: Job) -> JobRun:
    """Rappels des fiches de liaison bilatérales sans décision, 7 puis 2 jours avant le terme."""
    from portal.fiches.services import send_reminders, waiting_reminders

    if run.dry_run:
        report = waiting_reminders(db.session, utcnow())
    else:
        report = send_reminders(db.session, services(), utcnow())
    return JobRun(
        f"Rappels de fiches de liaison : {report['j7']} à 7 jours, {report['j2']} à 2 jours"
        + (" (à envoyer)." if run.dry_run else "."),
        details=report,
    )


@jobs.command("alerts")
@click.option("--dry-run", is_flag=True, help="Dit ce qui serait levé ; ne change rien.")
@click.option(
    "--verify-chain",
    is_flag=True,
    help="Vérifie la chaîne d'audit maintenant, quel que soit le délai.",
)
@job("alerts", busy="Une autre détection d'alertes est en cours : rien à faire.")
def jobs_alerts(run: Job, verify_chain: bool) -> JobRun:
    """Parcourt les nouvelles entrées du journal, lève les alertes et les envoie aux responsables
    sécurité.
    """
    from portal.securite.alerts import run_alert_job

    svc = services()
    # The service writes the `job:run` row itself, only for a run that did something.
    report = run_alert_job(
        db.session,
        svc.settings,
        svc.mailer,
        utcnow(),
        run.context,
        verify_chain=verify_chain,
        dry_run=run.dry_run,
    )
    chain = ""
    if report.chain_checked:
        chain = " Chaîne intègre." if report.chain_valid else " CHAÎNE ROMPUE."
    return JobRun(
        f"{report.scanned} entrées examinées, "
        f"{report.raised} alertes levées, {report.updated} mises à jour, "
        f"{report.mails_sent} e-mails envoyés, {report.mails_failed} en échec.{chain}",
        exit_code=1 if report.chain_checked and not report.chain_valid else 0,
    )


@jobs.command("schedule")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "systemd", "kubernetes"]),
    default="table",
    show_default=True,
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dossier où écrire les unités systemd ou `cronjobs.yaml` (défaut : la sortie standard).",
)
def jobs_schedule(fmt: str, output: Path | None) -> None:
    """Affiche le planning, ou l'écrit en minuteries systemd ou en CronJobs Kubernetes."""
    from portal.ops.schedule import kubernetes_cronjobs, systemd_units, table_text

    files: dict[str, str]
    if fmt == "table":
        click.echo(table_text())
        return
    files = systemd_units() if fmt == "systemd" else {"cronjobs.yaml": kubernetes_cronjobs()}
    if output is None:
        for name, text in files.items():
            click.echo(f"# --- {name}\n{text}")
        return
    output.mkdir(parents=True, exist_ok=True)
    for stale in output.glob("filr-*.*" if fmt == "systemd" else "cronjobs.yaml"):
        if stale.name not in files:
            stale.unlink()  # a job removed from the table loses its unit
    for name, text in files.items():
        (output / name).write_text(text, encoding="utf-8")
    click.echo(f"{len(files)} fichier(s) écrit(s) dans {output}.")


@jobs.command("scheduler")
@click.option("--only", multiple=True, help="Ne lancer que cette tâche (répétable).")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="JOB=QUAND",
    help='Un autre horaire pour une tâche, p. ex. --set "alerts=every 10 s" (démo, tests).',
)
@click.option(
    "--now",
    "run_now",
    is_flag=True,
    help="Lancer chaque tâche une fois au démarrage, puis à l'heure.",
)
def jobs_scheduler(only: tuple[str, ...], overrides: tuple[str, ...], run_now: bool) -> None:
    """Lance chaque tâche du planning à l'heure (Europe/Paris), une fois pour tous les serveurs."""
    import signal
    from dataclasses import replace

    from portal.cli.runtime import settings_or_exit
    from portal.db import make_engine
    from portal.ops.schedule import SCHEDULE, ScheduleError, When, find_entry
    from portal.ops.scheduler import Scheduler

    table = SCHEDULE
    try:
        for override in overrides:
            name, _, when = override.partition("=")
            item = find_entry(name.strip())
            table = tuple(
                replace(e, when=When.parse(when.strip())) if e is item else e for e in table
            )
        if only:
            table = tuple(find_entry(name, table) for name in only)
    except KeyError as e:
        raise click.BadParameter(f"tâche inconnue : {e.args[0]}") from None
    except ScheduleError as e:
        raise click.BadParameter(str(e)) from None
    settings = settings_or_exit()
    engine = make_engine(settings.database_url)
    scheduler = Scheduler(table, engine, run_at_start=run_now)

    def _stop(signum: int, _frame: object) -> None:
        click.echo(f"Signal {signal.Signals(signum).name} reçu : arrêt après les tâches en cours.")
        scheduler.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"Planificateur : {len(table)} tâche(s), fuseau Europe/Paris.")
    try:
        scheduler.run()
    finally:
        engine.dispose()


def _as_of(value: str | None) -> datetime:
    """Now, or 06:00 in France on the day *value* (AAAA-MM-JJ) for a drill or a late run."""
    from portal.accounts.habilitations import morning_of

    if value is None:
        return utcnow()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "date attendue au format AAAA-MM-JJ", param_hint="--as-of"
        ) from None
    return morning_of(day)


AS_OF_HELP = "Agir comme si la tâche tournait ce jour-là (AAAA-MM-JJ), avec les mêmes effets."


@jobs.command("habilitations")
@click.option(
    "--dry-run", is_flag=True, help="Dire ce qui serait envoyé ou suspendu, sans rien faire."
)
@click.option("--as-of", "as_of", default=None, help=AS_OF_HELP)
@job("habilitations", busy="Un autre contrôle des habilitations est en cours : rien à faire.")
def jobs_habilitations(run: Job, as_of: str | None) -> JobRun:
    """Prévient 14 jours et 1 jour avant la fin d'une habilitation ; suspend le jour venu."""
    from portal.accounts.habilitations import enforce_habilitation_ends

    now = _as_of(as_of)
    report = enforce_habilitation_ends(
        db.session, services(), now, run.context, dry_run=run.dry_run
    )
    return JobRun(
        f"Habilitations au {now:%Y-%m-%d} : {report.notices[14]} avis à 14 jours, "
        f"{report.notices[1]} à 1 jour, {report.suspended} comptes suspendus, "
        f"{report.mails_sent} e-mails {'à envoyer' if run.dry_run else 'envoyés'}, "
        f"{report.mails_failed} en échec.",
        details={
            "as_of": now.date().isoformat(),
            "notices_14": report.notices[14],
            "notices_1": report.notices[1],
            "suspended": report.suspended,
            "sent": report.mails_sent,
            "failed": report.mails_failed,
        },
    )


@jobs.command("inactive-accounts")
@click.option(
    "--dry-run", is_flag=True, help="Dire ce qui serait envoyé ou suspendu, sans rien faire."
)
@click.option("--as-of", "as_of", default=None, help=AS_OF_HELP)
@job(
    "inactive-accounts",
    busy="Un autre contrôle des comptes inutilisés est en cours : rien à faire.",
)
def jobs_inactive_accounts(run: Job, as_of: str | None) -> JobRun:
    """Suspend les comptes inutilisés depuis FILR_ACCOUNT_INACTIVE_DAYS jours (avis à J-7)."""
    from portal.accounts.inactivity import suspend_unused_accounts

    now = _as_of(as_of)
    report = suspend_unused_accounts(db.session, services(), now, run.context, dry_run=run.dry_run)
    return JobRun(
        f"Comptes inutilisés au {now:%Y-%m-%d} "
        f"(limite {run.settings.account_inactive_days} jours) : {report.notices} avis, "
        f"{report.suspended} comptes suspendus, {report.mails_sent} e-mails "
        f"{'à envoyer' if run.dry_run else 'envoyés'}, {report.mails_failed} en échec.",
        details={
            "as_of": now.date().isoformat(),
            "limit_days": run.settings.account_inactive_days,
            "notices": report.notices,
            "suspended": report.suspended,
            "sent": report.mails_sent,
            "failed": report.mails_failed,
        },
    )


@jobs.command("review")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Dire ce qui serait ouvert, envoyé ou suspendu, sans rien faire.",
)
@click.option("--as-of", "as_of", default=None, help=AS_OF_HELP)
@job("review", busy="Une autre revue des habilitations est en cours : rien à faire.")
def jobs_review(run: Job, as_of: str | None) -> JobRun:
    """La revue annuelle : ouvre les campagnes, relance les gestionnaires, clôt et suspend."""
    from portal.accounts.review import run_review

    now = _as_of(as_of)
    report = run_review(db.session, services(), now, run.context, dry_run=run.dry_run)
    return JobRun(
        f"Revue des habilitations au {now:%Y-%m-%d} : {report.opened} revues ouvertes, "
        f"{report.reminded} rappels, {report.closed} revues closes, {report.suspended} comptes "
        f"suspendus, {report.mails_sent} e-mails {'à envoyer' if run.dry_run else 'envoyés'}, "
        f"{report.mails_failed} en échec.",
        details={
            "as_of": now.date().isoformat(),
            "opened": report.opened,
            "reminded": report.reminded,
            "closed": report.closed,
            "suspended": report.suspended,
            "sent": report.mails_sent,
            "failed": report.mails_failed,
        },
    )


@jobs.command("incidents")
@click.option("--dry-run", is_flag=True, help="Dire ce qui serait envoyé, sans rien envoyer.")
@click.option("--as-of", "as_of", default=None, help=AS_OF_HELP)
@job("incidents", busy="Un autre envoi de rappels d'incidents est en cours : rien à faire.")
def jobs_incidents(run: Job, as_of: str | None) -> JobRun:
    """Rappelle aux responsables sécurité chaque échéance d'incident (partenaires, CNIL)."""
    from portal.securite.incidents import send_incident_reminders

    now = _as_of(as_of)
    report = send_incident_reminders(db.session, services(), now, run.context, dry_run=run.dry_run)
    return JobRun(
        f"Incidents : {report.reminders} rappel(s) d'échéance, {report.mails_sent} e-mails "
        f"{'à envoyer' if run.dry_run else 'envoyés'}, {report.mails_failed} en échec.",
        details={
            "reminders": report.reminders,
            "sent": report.mails_sent,
            "failed": report.mails_failed,
        },
    )
