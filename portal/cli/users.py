"""`filr users`: create (or provision) accounts, their habilitation, their status; list and
show them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from typing import Any

import click
import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from portal.accounts import habilitations
from portal.accounts import services as accounts
from portal.accounts.habilitations import HabilitationInput
from portal.accounts.models import SUSPENSION_LABELS, Role, SuspensionReason, User
from portal.auth import services as auth
from portal.auth import totp
from portal.cli.runtime import app_context, audit_context, find_org
from portal.container import services
from portal.db import db, utcnow
from portal.orgs.models import OrgKind


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
@click.option("--function", "function", default=None, help="Habilitation : code de la fonction.")
@click.option("--function-label", default=None, help="Habilitation : libellé si autre.")
@click.option("--granted-on", default=None, help="Habilitation : accordée le (AAAA-MM-JJ).")
@click.option("--ends-on", default=None, help="Habilitation : fin (AAAA-MM-JJ), 3 ans au plus.")
@click.option("--json", "as_json", is_flag=True)
def users_create(
    org_ref: str,
    email: str,
    name: str,
    roles: tuple[str, ...],
    password_stdin: bool,
    with_totp: bool,
    function: str | None,
    function_label: str | None,
    granted_on: str | None,
    ends_on: str | None,
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
                habilitation=_habilitation(function, function_label, granted_on, ends_on),
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


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("date attendue au format AAAA-MM-JJ", param_hint=option) from None


def _habilitation(
    function: str | None, label: str | None, granted_on: str | None, ends_on: str | None
) -> HabilitationInput | None:
    if function is None:
        if label or granted_on or ends_on:
            raise click.UsageError("--function est requis avec les autres options d'habilitation")
        return None
    today = habilitations.today_in_paris(utcnow())
    return HabilitationInput(
        function=function,
        function_label=label,
        granted_on=_day(granted_on, "--granted-on") or today,
        ends_on=_day(ends_on, "--ends-on"),
    )


def _find(email: str) -> User:
    user = auth.find_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"compte inconnu : {email}")
    return user


@users.command("habilitation")
@click.argument("email")
@click.option(
    "--function", "function", required=True, help="Code de la fonction (voir `users show`)."
)
@click.option("--function-label", default=None, help="Libellé, si la fonction est « autre ».")
@click.option(
    "--granted-on", default=None, help="Accordée le (AAAA-MM-JJ) ; par défaut, aujourd'hui."
)
@click.option("--ends-on", default=None, help="Date de fin (AAAA-MM-JJ), 3 ans au plus.")
def users_habilitation(
    email: str,
    function: str,
    function_label: str | None,
    granted_on: str | None,
    ends_on: str | None,
) -> None:
    """Enregistre ou remplace l'habilitation d'un compte (journalisé)."""
    given = _habilitation(function, function_label, granted_on, ends_on)
    assert given is not None  # noqa: S101 - the option is required
    with app_context():
        user = _find(email)
        try:
            habilitations.save_habilitation(
                db.session,
                user,
                given,
                granted_by=None,
                actor=audit.SYSTEM,
                ctx=audit_context(),
                today=habilitations.today_in_paris(utcnow()),
            )
        except habilitations.HabilitationError as e:
            raise click.ClickException(str(e)) from e
        click.echo(f"{email} : habilitation enregistrée.")


def account_summary(user: User) -> dict[str, Any]:
    """What `users show --json` prints: status, roles, function, end date, last log-in and
    review state."""
    from portal.accounts.review import review_state

    hab = user.habilitation
    kind = OrgKind(user.organisation.kind)
    reason = user.suspension_reason
    return {
        "id": user.id,
        "email": user.email,
        "full_name": user.full_name,
        "organisation": {"id": user.organisation_id, "name": user.organisation.name},
        "status": user.status,
        "suspension_reason": reason,
        "roles": sorted(str(r) for r in user.roles),
        "habilitation": None
        if hab is None
        else {
            "function": hab.function,
            "function_label": habilitations.function_label(kind, hab),
            "granted_on": hab.granted_on.isoformat(),
            "ends_on": hab.ends_on.isoformat() if hab.ends_on else None,
            "granted_by": hab.granted_by.email if hab.granted_by else None,
        },
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
        "must_choose_password": accounts.must_choose_password(user),
        "review": review_state(db.session, user),
    }


@users.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
def users_show(email: str, as_json: bool) -> None:
    """Affiche un compte : statut, rôles, habilitation, dernière connexion."""
    with app_context():
        summary = account_summary(_find(email))
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    hab = summary["habilitation"]
    reason = summary["suspension_reason"]
    status = summary["status"]
    if reason:
        status += f" ({SUSPENSION_LABELS[SuspensionReason(reason)]})"
    lines = [
        f"Compte : {summary['email']} ({summary['full_name']})",
        f"Organisation : {summary['organisation']['name']}",
        f"Statut : {status}",
        f"Rôles : {', '.join(summary['roles'])}",
        "Habilitation : "
        + (
            "non renseignée"
            if hab is None
            else f"{hab['function_label']} ({hab['function']}), depuis le {hab['granted_on']}, "
            f"fin : {hab['ends_on'] or 'sans date de fin'}"
            + (f", accordée par {hab['granted_by']}" if hab["granted_by"] else "")
        ),
        f"Dernière connexion : {summary['last_login_at'] or 'jamais'}",
        "Revue des habilitations : "
        + (
            "aucune"
            if summary["review"] is None
            else f"revue du {summary['review']['opens_on']} au {summary['review']['closes_on']}, "
            + {"confirmed": "confirmé", "suspended": "suspendu"}.get(
                summary["review"]["decision"] or "", "sans décision"
            )
        ),
    ]
    click.echo("\n".join(lines))


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


@users.command("reactivate")
@click.argument("email")
def users_reactivate(email: str) -> None:
    """Réactive un compte suspendu ; un lien pour choisir un mot de passe est envoyé."""
    with app_context():
        user = _find(email)
        try:
            accounts.reactivate_and_mail(
                db.session, services(), user, audit.SYSTEM, audit_context()
            )
        except accounts.AccountError as e:
            raise click.ClickException(str(e)) from e
        click.echo(f"{email} : {user.status_label}")


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
