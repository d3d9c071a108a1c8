"""`filr orgs`: create and list organisations, give France Travail the national scope."""

from __future__ import annotations

import json

import click
import sqlalchemy as sa

from portal.cli.runtime import app_context, audit_context, find_org
from portal.db import db, utcnow
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.services import (
    OrganisationError,
    create_organisation,
    organisation_named,
    set_national,
    set_proconnect,
)


@click.group("orgs")
def orgs() -> None:
    """Organisations et leurs départements."""


@orgs.command("create")
@click.option("--kind", type=click.Choice([k.value for k in OrgKind]), required=True)
@click.option("--name", required=True)
@click.option("--departement", help="Pour un département ou un prestataire mandaté.")
@click.option("--territory", default="", help="France Travail : codes séparés par des virgules.")
@click.option(
    "--proconnect", is_flag=True, help="Ouvre la connexion par ProConnect à ses comptes existants."
)
@click.option("--json", "as_json", is_flag=True)
def orgs_create(
    kind: str, name: str, departement: str | None, territory: str, proconnect: bool, as_json: bool
) -> None:
    """Crée une organisation."""
    codes = [c.strip() for c in territory.split(",") if c.strip()]
    with app_context():
        if organisation_named(db.session, name) is not None:
            raise click.ClickException(f"une organisation nommée {name!r} existe déjà")
        try:
            org = create_organisation(
                db.session,
                kind=OrgKind(kind),
                name=name,
                departement=departement,
                territory=codes,
                ctx=audit_context(),
            )
        except OrganisationError as e:
            raise click.BadParameter(str(e)) from e
        if proconnect:
            db.session.flush()
            set_proconnect(db.session, org, enabled=True, ctx=audit_context())
        db.session.commit()
        if as_json:
            click.echo(json.dumps({"id": org.id, "kind": org.kind, "name": org.name}))
        else:
            click.echo(f"Organisation créée : {org.id} ({org.name})")


@orgs.command("list")
@click.option(
    "--json", "as_json", is_flag=True, help="Identifiants, types et départements en JSON."
)
def orgs_list(as_json: bool) -> None:
    """Liste les organisations et leurs espaces."""
    from portal.orgs.permissions import spaces_of_organisation

    with app_context():
        listed = [
            {
                "id": org.id,
                "name": org.name,
                "kind": org.kind,
                "departements": sorted(spaces_of_organisation(org)),
                "national": org.is_national,
                "proconnect": org.proconnect_enabled,
            }
            for org in db.session.execute(
                sa.select(Organisation).order_by(Organisation.name)
            ).scalars()
        ]
    if as_json:
        click.echo(json.dumps(listed, ensure_ascii=False))
        return
    for row in listed:
        spaces = ",".join(row["departements"]) or "-"  # type: ignore[arg-type] # a list of codes
        click.echo(f"{row['id']}  {row['kind']:<15} {spaces:<12} {row['name']}")


@orgs.command("national")
@click.argument("org_ref", metavar="ORGANISATION")
@click.option("--unset", is_flag=True, help="Retire le périmètre national.")
def orgs_national(org_ref: str, unset: bool) -> None:
    """Donne le périmètre national à une structure France Travail (ses responsables sécurité voient
    tout).
    """
    with app_context():
        org = find_org(org_ref)
        try:
            set_national(db.session, org, is_national=not unset, ctx=audit_context())
        except OrganisationError as e:
            raise click.ClickException(str(e)) from None
        db.session.commit()
        click.echo(f"{org.name} : {'périmètre national retiré' if unset else 'périmètre national'}")


@orgs.command("proconnect")
@click.argument("org_ref", metavar="ORGANISATION")
@click.option("--desactiver", "disable", is_flag=True, help="Retire la connexion par ProConnect.")
def orgs_proconnect(org_ref: str, disable: bool) -> None:
    """Ouvre la connexion par ProConnect aux comptes existants d'une organisation (ou la ferme).

    Les comptes et leurs habilitations restent l'affaire du gestionnaire de comptes.
    """
    with app_context():
        org = find_org(org_ref)
        set_proconnect(db.session, org, enabled=not disable, ctx=audit_context())
        db.session.commit()
        state = "connexion par ProConnect fermée" if disable else "connexion par ProConnect ouverte"
        click.echo(f"{org.name} : {state}")


@orgs.command("review")
@click.argument("org_ref")
@click.option("--days", default=30, show_default=True, type=int, help="Length (1 to 90 days).")
def orgs_review(org_ref: str, days: int) -> None:
    """Ouvre dès maintenant une revue des habilitations d'une organisation (après un incident)."""
    import audit
    from portal.accounts.review import ReviewError, open_campaign_by_hand
    from portal.container import services

    with app_context():
        org = find_org(org_ref)
        try:
            campaign = open_campaign_by_hand(
                db.session,
                services(),
                org,
                actor=audit.SYSTEM,
                ctx=audit_context(),
                now=utcnow(),
                days=days,
            )
        except ReviewError as e:
            raise click.ClickException(str(e)) from e
        click.echo(f"Revue ouverte pour {org.name} jusqu'au {campaign.closes_on:%d/%m/%Y}.")


@orgs.command("stats")
@click.argument("month", metavar="AAAA-MM")
@click.option("--csv", "as_csv", is_flag=True, help="CSV français (« ; », UTF-8 avec BOM).")
@click.option("--organisation", "org_ref", help="Une seule organisation (identifiant ou nom).")
def orgs_stats(month: str, as_csv: bool, org_ref: str | None) -> None:
    """Statistiques d'utilisation d'un mois (heure de Paris), par organisation : comptes actifs,
    connexions, dépôts envoyés et reçus, téléchargements, flux à temps, en retard et refusés.
    """
    from portal.orgs import usage

    try:
        wanted = usage.Month.parse(month)
    except usage.MonthError as e:
        raise click.BadParameter(str(e), param_hint="AAAA-MM") from None
    with app_context():
        if org_ref is not None:
            organisations = [find_org(org_ref)]
        else:
            organisations = list(
                db.session.execute(sa.select(Organisation).order_by(Organisation.name)).scalars()
            )
        rows = usage.usage(db.session, organisations, wanted, now=utcnow())
        if as_csv:
            click.echo("\ufeff" + "".join(usage.iter_usage_csv(rows, wanted)), nl=False)
            return
        click.echo(f"Statistiques d'utilisation — {usage.month_label(wanted)}")
        for r in rows:
            click.echo(
                f"{r.organisation.name} : {r.active_accounts} compte(s) actif(s), "
                f"{r.logins} connexion(s), {r.deposits_sent} dépôt(s) envoyé(s), "
                f"{r.deposits_received} reçu(s), {r.downloads} téléchargement(s) ; flux : "
                f"{r.flows_on_time} à temps, {r.flows_late} en retard, "
                f"{r.flows_refused} refusé(s)"
            )
