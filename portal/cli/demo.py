"""`filr demo`: the demo organisations and one account per role, on this machine only."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import click

from portal.accounts.models import Role
from portal.accounts.services import provision_user
from portal.auth import services as auth
from portal.cli.runtime import app_context, audit_context, find_org
from portal.container import services
from portal.db import db
from portal.orgs.models import OrgKind
from portal.orgs.services import create_organisation, organisation_named
from portal.settings import Settings

DEMO_DOMAIN = "demo.filr.localhost"


def demo_file(settings: Settings) -> Path:
    """Where the demo's generated credentials are kept (0600, never committed)."""
    return settings.data_dir / "secrets" / "demo-accounts.json"


# The national France Travail structure: its security officer and technicians see every
# département (the `is_national` flag, `filr orgs national`).
DEMO_NATIONAL = "France Travail — Direction générale (DSI nationale)"
DEMO_ORGS: list[tuple[str, OrgKind, str | None, list[str]]] = [
    ("Conseil départemental du Pas-de-Calais", OrgKind.DEPARTEMENT, "62", []),
    ("Conseil départemental du Nord", OrgKind.DEPARTEMENT, "59", []),
    ("Conseil départemental des Alpes-Maritimes", OrgKind.DEPARTEMENT, "06", []),
    ("Collectivité européenne d'Alsace — Haut-Rhin", OrgKind.DEPARTEMENT, "68", []),
    ("France Travail — Direction territoriale Pas-de-Calais", OrgKind.FRANCE_TRAVAIL, None, ["62"]),
    (
        "France Travail — Direction régionale Hauts-de-France",
        OrgKind.FRANCE_TRAVAIL,
        None,
        ["59", "62"],
    ),
    ("France Travail — Agence de Nice", OrgKind.FRANCE_TRAVAIL, None, ["06"]),
    ("France Travail — Agence de Mulhouse", OrgKind.FRANCE_TRAVAIL, None, ["68"]),
    ("Association Insertion Artois (mandatée par le 62)", OrgKind.PRESTATAIRE, "62", []),
    ("Plateforme Fil'R", OrgKind.PLATEFORME, None, []),
    (DEMO_NATIONAL, OrgKind.FRANCE_TRAVAIL, None, ["06", "59", "62", "68"]),
]

DEMO_USERS: list[tuple[str, str, str, list[Role]]] = [
    ("agent.62", "Claire Durand", "Conseil départemental du Pas-de-Calais", [Role.AGENT]),
    ("technicien.62", "Marc Lefort", "Conseil départemental du Pas-de-Calais", [Role.TECHNICIEN]),
    (
        "gestionnaire.62",
        "Sophie Martin",
        "Conseil départemental du Pas-de-Calais",
        [Role.GESTIONNAIRE],
    ),
    ("securite.62", "Paul Bernard", "Conseil départemental du Pas-de-Calais", [Role.SECURITE]),
    ("agent.59", "Julie Petit", "Conseil départemental du Nord", [Role.AGENT]),
    ("gestionnaire.59", "Hugo Roux", "Conseil départemental du Nord", [Role.GESTIONNAIRE]),
    (
        "agent.06",
        "Léa Fabre",
        "Conseil départemental des Alpes-Maritimes",
        [Role.AGENT, Role.TECHNICIEN],
    ),
    ("agent.68", "Lucas Meyer", "Collectivité européenne d'Alsace — Haut-Rhin", [Role.AGENT]),
    (
        "conseiller.ft62",
        "Nadia Haddad",
        "France Travail — Direction territoriale Pas-de-Calais",
        [Role.AGENT],
    ),
    (
        "technicien.ft62",
        "Yann Morel",
        "France Travail — Direction territoriale Pas-de-Calais",
        [Role.TECHNICIEN],
    ),
    (
        "gestionnaire.ft62",
        "Inès Garnier",
        "France Travail — Direction territoriale Pas-de-Calais",
        [Role.GESTIONNAIRE],
    ),
    (
        "referent.prestataire62",
        "Karim Benali",
        "Association Insertion Artois (mandatée par le 62)",
        [Role.AGENT],
    ),
    ("admin", "Opérateur Plateforme", "Plateforme Fil'R", [Role.ADMIN]),
    ("securite.national", "Anne Lambert", DEMO_NATIONAL, [Role.SECURITE]),
    ("technicien.national", "Thomas Girard", DEMO_NATIONAL, [Role.TECHNICIEN]),
]


@click.group("demo", invoke_without_command=True)
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Crée les organisations de démonstration et un compte par rôle (rejouable)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings.from_env()
    path = demo_file(settings)
    known: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    with app_context():
        for name, kind, dep, territory in DEMO_ORGS:
            if organisation_named(db.session, name) is None:
                org = create_organisation(
                    db.session,
                    kind=kind,
                    name=name,
                    departement=dep,
                    territory=territory,
                    ctx=audit_context(),
                )
                org.is_national = name == DEMO_NATIONAL
        db.session.commit()
        for local, full_name, org_name, roles in DEMO_USERS:
            email = f"{local}@{DEMO_DOMAIN}"
            if auth.find_user_by_email(db.session, email) is not None:
                continue
            # Generated at first start, never in the repository.
            password = "-".join(secrets.token_hex(3) for _ in range(4))
            account = provision_user(
                db.session,
                services(),
                organisation=find_org(org_name),
                email=email,
                full_name=full_name,
                roles=roles,
                password=password,
                ctx=audit_context(),
            )
            known[email] = {
                "password": password,
                "totp_secret": account.totp_secret,
                "recovery_codes": list(account.recovery_codes),
            }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created owner-only: a write then chmod would leave the passwords readable by all in between.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # The mode of os.open applies only on creation: a file left by an older run is tightened too.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(known, indent=2))
    click.echo(f"Comptes de démonstration ({len(known)}) — identifiants dans {path} :")
    for email, creds in known.items():
        click.echo(f"  {email:<45} mot de passe : {creds['password']}")
    click.echo("Code TOTP du moment pour un compte de démonstration : filr demo code EMAIL")
    click.echo("(ou ajoutez son secret TOTP, présent dans le fichier, à votre application).")


@demo.command("code")
@click.argument("email")
def demo_code(email: str) -> None:
    """Affiche le code TOTP du moment d'un compte de démonstration (lit seulement le fichier
    local).
    """
    import pyotp

    path = demo_file(Settings.from_env())
    known = json.loads(path.read_text()) if path.exists() else {}
    if email not in known:
        raise click.ClickException("ce compte n'est pas un compte de démonstration de ce poste")
    click.echo(pyotp.TOTP(known[email]["totp_secret"]).now())
