"""`filr users`: create (or provision) accounts, change their status, list them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from portal.accounts import services as accounts
from portal.accounts.models import Role, User
from portal.auth import services as auth
from portal.auth import totp
from portal.cli.runtime import app_context, audit_context, find_org
from portal.container import services
from portal.db import db


@click.group("users")
def users() -> None:
    """Comptes utilisateurs."""


def provisioned(account: accounts.ProvisionedAccount) -> dict[str, Any]:
    """What `users create --json` prints about *account* (its secrets only this once)."""
    user = account.user
    result: dict[str, Any] = {"id": user.id, "email": user.email, "status": user.status}
    if account.totp_secret is None:
        result["activation"] = "sent"
        return result
    result.update(
        totp_secret=account.totp_secret,
        recovery_codes=list(account.recovery_codes),
        otpauth_uri=totp.provisioning_uri(account.totp_secret, user.email),
    )
    return result


@users.command("create")
@click.option("--org", "org_ref", required=True, help="Identifiant ou nom exact de l'organisation.")
@click.option("--email", required=True)
@click.option("--name", required=True, help="Prénom et nom.")
@click.option(
    "--role", "roles", multiple=True, required=True, type=click.Choice([r.value for r in Role])
)
@click.option("--password-stdin", is_flag=True, help="Lit le mot de passe sur l'entrée standard.")
@click.option(
    "--with-totp",
    is_flag=True,
    help="Active tout de suite avec un nouveau secret TOTP (affiché une seule fois).",
)
@click.option("--json", "as_json", is_flag=True)
def users_create(
    org_ref: str,
    email: str,
    name: str,
    roles: tuple[str, ...],
    password_stdin: bool,
    with_totp: bool,
    as_json: bool,
) -> None:
    """Crée un compte (e-mail d'activation), ou le provisionne avec --password-stdin --with-totp."""
    if password_stdin != with_totp:
        raise click.UsageError("--password-stdin et --with-totp vont ensemble")
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with app_context():
        org = find_org(org_ref)
        try:
            account = accounts.provision_user(
                db.session,
                services(),
                organisation=org,
                email=email,
                full_name=name,
                roles=[Role(r) for r in roles],
                password=password,
                ctx=audit_context(),
            )
        except accounts.AccountError as e:
            raise click.ClickException(str(e)) from e
        result = provisioned(account)
    if as_json:
        click.echo(json.dumps(result))
    elif "totp_secret" in result:
        click.echo(
            f"Compte actif : {result['email']}\nSecret TOTP (affiché une seule fois) : "
            f"{result['totp_secret']}"
        )
    else:
        click.echo(f"Compte créé : {result['email']} ; e-mail d'activation envoyé.")


StatusChange = Callable[[Session, User, audit.Actor, audit.Context], None]


def _status_command(verb: str, action: StatusChange, label: str) -> click.Command:
    @click.argument("email")
    def command(email: str) -> None:
        with app_context():
            user = auth.find_user_by_email(db.session, email)
            if user is None:
                raise click.ClickException(f"compte inconnu : {email}")
            try:
                action(db.session, user, audit.SYSTEM, audit_context())
            except accounts.AccountError as e:
                raise click.ClickException(str(e)) from e
            db.session.commit()
            click.echo(f"{email} : {user.status_label}")

    command.__doc__ = f"{label} un compte (ses sessions sont fermées aussitôt)."
    return click.command(verb)(command)


users.add_command(_status_command("suspend", accounts.suspend, "Suspend"))
users.add_command(_status_command("reactivate", accounts.reactivate, "Réactive"))
users.add_command(_status_command("revoke", accounts.revoke, "Révoque"))


@users.command("list")
@click.option("--org", "org_ref", default=None)
def users_list(org_ref: str | None) -> None:
    """Liste les comptes."""
    with app_context():
        stmt = sa.select(User).order_by(User.email)
        if org_ref:
            stmt = stmt.where(User.organisation_id == find_org(org_ref).id)
        for u in db.session.execute(stmt).scalars():
            roles = ",".join(sorted(u.roles))
            click.echo(f"{u.email:<40} {u.status:<10} {roles:<30} {u.organisation.name}")
