"""`filr jobs`: the scheduled jobs (cron, systemd timers, Kubernetes CronJobs).

Each is a service function returning a small report; `@job` takes the lock, writes the
`job:run` row and prints. See docs/operations.md for the schedule.
"""

from __future__ import annotations

from datetime import timedelta

import click

from portal.cli.job import DRY_RUN_MARK, Job, JobRun, job
from portal.cli.runtime import app_context
from portal.container import services
from portal.db import db, utcnow
from portal.settings import Settings


@click.group("jobs")
def jobs() -> None:
    """Scheduled jobs (cron, systemd timers, Kubernetes CronJobs)."""


@jobs.command("sessions")
@click.option("--dry-run", is_flag=True)
def jobs_sessions(dry_run: bool) -> None:
    """Delete expired sessions and stale throttle counters."""
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
@click.option("--dry-run", is_flag=True, help="Report what would be destroyed; change nothing.")
@click.option("--batch-size", default=100, show_default=True, type=int)
@job("purge", busy="Une autre purge est en cours : rien à faire.")
def jobs_purge(run: Job, batch_size: int) -> JobRun:
    """Destroy expired, withdrawn and abandoned deposits, then orphan objects and uploads."""
    from portal.deposits.purge import (
        abort_stale_uploads,
        cleanup_orphans,
        finish_destructions,
        purge_expired_deposits,
    )

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
    pending = late.pending + report.removal_pending
    return JobRun(
        f"{report.expired} dépôts expirés, "
        f"{report.withdrawn} retirés, {report.abandoned_drafts} brouillons abandonnés, "
        f"{report.files_destroyed} fichiers détruits, {orphans} objets orphelins, "
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
            "aborted_uploads": aborted,
            "late_shreds": late.shredded,
            "late_removals": late.removed,
            "removals_pending": pending,
        },
        exit_code=1 if pending else 0,  # the monitoring should see a store refusing removals
    )


@jobs.command("antivirus")
@click.option("--dry-run", is_flag=True, help="Count what waits for a scan; change nothing.")
@job("antivirus", busy="Une autre analyse antivirus est en cours : rien à faire.")
def jobs_antivirus(run: Job) -> JobRun:
    """Scan the files not scanned at upload, publish the deposits that waited for them."""
    from portal.deposits.rescan import rescan_pending

    report = rescan_pending(db.session, services(), run.context, dry_run=run.dry_run)
    summary = (
        f"Antivirus : {report.pending} fichiers en attente d'analyse, {report.clean} sains, "
        f"{report.infected} refusés (signature détectée), {report.published} dépôts transmis, "
        f"{report.still_held} dépôts encore en attente."
    )
    if report.unavailable is not None:
        summary += " L'antivirus (clamd) est indisponible : rien n'a été publié sans analyse."
    return JobRun(
        summary,
        details={
            "pending": report.pending,
            "clean": report.clean,
            "infected": report.infected,
            "published": report.published,
            "still_held": report.still_held,
            "clamd_available": report.unavailable is None,
        },
        # Monitoring must see a clamd that is down: deposits wait until it is back.
        exit_code=1 if report.unavailable is not None else 0,
    )


@jobs.command("antivirus-signatures")
@click.option("--dry-run", is_flag=True, help="Report the signatures' age; raise no alert.")
@job("antivirus-signatures", busy="Une autre vérification est en cours : rien à faire.")
def jobs_antivirus_signatures(run: Job) -> JobRun:
    """Alert when clamd's signatures are older than FILR_ANTIVIRUS_MAX_SIGNATURE_AGE_HOURS."""
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
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
@job("reminders", busy="Un autre envoi de rappels est en cours : rien à faire.")
def jobs_reminders(run: Job) -> JobRun:
    """Remind recipients who have not downloaded, 7 days and 1 day before expiry."""
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
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
@job("digest", busy="Un autre envoi de résumés est en cours : rien à faire.")
def jobs_digest(run: Job) -> JobRun:
    """Send the daily digest to the users who chose it."""
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
@click.option("--dry-run", is_flag=True, help="Count the rows that would be deleted.")
@click.option("--batch-size", default=100_000, show_default=True, type=int)
@job("audit-retention", busy="Une autre purge du journal est en cours : rien à faire.")
def jobs_audit_retention(run: Job, batch_size: int) -> JobRun:
    """Delete audit rows older than FILR_AUDIT_RETENTION_MONTHS, behind a checkpoint."""
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
@click.option("--date", "day", default=None, help="UTC day (AAAA-MM-JJ); default: yesterday.")
@click.option("--dry-run", is_flag=True, help="Print the head and the recipients; send nothing.")
@job("audit-head", busy="Un autre envoi de l'empreinte est en cours : rien à faire.")
def jobs_audit_head(run: Job, day: str | None) -> JobRun:
    """E-mail yesterday's chain head hash to the national and platform security officers."""
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
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
@job("flow-reminders", busy="Un autre envoi de rappels de flux est en cours : rien à faire.")
def jobs_flow_reminders(run: Job) -> JobRun:
    """Flow calendar reminders: before the CGPEM deadline, and once a deadline passed."""
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


@jobs.command("alerts")
@click.option("--dry-run", is_flag=True, help="Report what would be raised; change nothing.")
@click.option(
    "--verify-chain", is_flag=True, help="Verify the audit chain now, whatever the delay."
)
@job("alerts", busy="Une autre détection d'alertes est en cours : rien à faire.")
def jobs_alerts(run: Job, verify_chain: bool) -> JobRun:
    """Scan the new audit rows, raise security alerts and e-mail the security officers."""
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
