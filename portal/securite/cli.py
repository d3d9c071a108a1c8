"""`filr jobs alerts` and `filr orgs national`, attached to the `filr` command by `register`."""

from __future__ import annotations

import click
import sqlalchemy as sa

import audit
from audit import AuditAction


@click.command("alerts")
@click.option("--dry-run", is_flag=True, help="Report what would be raised; change nothing.")
@click.option(
    "--verify-chain", is_flag=True, help="Verify the audit chain now, whatever the delay."
)
def jobs_alerts(dry_run: bool, verify_chain: bool) -> None:
    """Scan the new audit rows, raise security alerts and e-mail the security officers."""
    from portal.cli import _context, app_context, job_lock
    from portal.db import db, utcnow
    from portal.securite.alerts import run_alert_job
    from portal.services import services

    with app_context(), job_lock("filr.jobs.alerts") as acquired:
        if not acquired:
            click.echo("Une autre détection d'alertes est en cours : rien à faire.")
            return
        svc = services()
        report = run_alert_job(
            db.session,
            svc.settings,
            svc.mailer,
            utcnow(),
            _context(),
            verify_chain=verify_chain,
            dry_run=dry_run,
        )
        chain = ""
        if report.chain_checked:
            chain = " Chaîne intègre." if report.chain_valid else " CHAÎNE ROMPUE."
        click.echo(
            f"{'[essai] ' if dry_run else ''}{report.scanned} entrées examinées, "
            f"{report.raised} alertes levées, {report.updated} mises à jour, "
            f"{report.mails_sent} e-mails envoyés, {report.mails_failed} en échec.{chain}"
        )
        if report.chain_checked and not report.chain_valid:
            raise SystemExit(1)


@click.command("national")
@click.argument("org_ref")
@click.option("--unset", is_flag=True, help="Withdraw the national scope.")
def orgs_national(org_ref: str, unset: bool) -> None:
    """Give a France Travail structure the national scope (its security officers see all)."""
    from portal.cli import _context, _find_org, app_context
    from portal.db import db
    from portal.orgs.models import OrgKind

    with app_context():
        org = _find_org(org_ref)
        if OrgKind(org.kind) is not OrgKind.FRANCE_TRAVAIL:
            raise click.ClickException("seule une structure France Travail peut être nationale")
        db.session.execute(
            sa.update(type(org)).where(type(org).id == org.id).values(is_national=not unset)
        )
        audit.record(
            db.session,
            AuditAction.ORGANISATION_UPDATED,
            context=_context(),
            target=audit.Target("organisation", org.id),
            details={"is_national": not unset},
        )
        db.session.commit()
        click.echo(f"{org.name} : {'périmètre national retiré' if unset else 'périmètre national'}")


def register(main: click.Group) -> None:
    """Attach the commands to the `filr` groups."""
    for name, command in (("jobs", jobs_alerts), ("orgs", orgs_national)):
        group = main.commands[name]
        assert isinstance(group, click.Group)  # noqa: S101 - defined in portal.cli
        group.add_command(command)
