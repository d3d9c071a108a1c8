"""The `filr` command: serve, database, organisations, users, demo, audit, jobs."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask

import audit
from audit import AuditAction
from portal.accounts import services as accounts
from portal.accounts.models import AccountStatus, Role, TokenPurpose, User
from portal.auth import services as auth
from portal.auth import totp
from portal.auth.models import ServerSession, ThrottleEvent
from portal.db import db, utcnow
from portal.orgs.departements import is_departement_code
from portal.orgs.models import FtTerritory, Organisation, OrgKind
from portal.securite.cli import register as register_securite
from portal.services import services
from portal.settings import Settings


def _context() -> audit.Context:
    return audit.Context(user_agent="filr-cli", request_id="cli-" + secrets.token_hex(6))


@contextmanager
def app_context() -> Iterator[Flask]:
    """The portal configured from the environment, inside an application context."""
    from portal.app import create_app

    app = create_app(Settings.from_env())
    try:
        with app.app_context():
            yield app
    finally:
        db.bound(app).engine.dispose()


@click.group()
def main() -> None:
    """Fil'R: secure exchanges between départements, providers and France Travail."""


# --- serve ---------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Run the portal with gunicorn (migrations are applied first)."""
    from gunicorn.app.base import BaseApplication

    from portal.app import create_app
    from portal.migrate import upgrade

    settings = _settings_or_exit()
    name = _migration_url_name(settings)
    _engine_or_exit(name, settings.migration_database_url).dispose()
    with _database_errors(name):
        upgrade(settings.migration_database_url)  # the owner migrates; the app role serves
    _check_serving_database(settings)

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            # gthread, whose own error pages (malformed requests) carry the security headers.
            self.cfg.set("worker_class", "portal.serving.PortalWorker")
            self.cfg.set("accesslog", None)  # tokens sit in some paths: no access log here
            self.cfg.set("timeout", 120)
            # gunicorn's control socket sits in one per-user path shared by every instance on
            # the machine; the portal does not use it.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Flask:
            return create_app(settings)

    click.echo(f"Fil'R écoute sur http://{host}:{port}/ (Ctrl+C pour arrêter)")
    _Gunicorn().run()


def _settings_or_exit() -> Settings:
    from portal.settings import SettingsError

    try:
        return Settings.from_env()
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def _migration_url_name(settings: Settings) -> str:
    return "FILR_DATABASE_OWNER_URL" if settings.database_owner_url else "FILR_DATABASE_URL"


@contextmanager
def _database_errors(name: str) -> Iterator[None]:
    """A wrong database URL or a database out of reach: one line and exit 1, no traceback."""
    from portal.db import database_error_summary, is_database_unavailable

    try:
        yield
    except sa.exc.SQLAlchemyError as e:
        if not is_database_unavailable(e):
            raise
        raise click.ClickException(
            f"base de données injoignable ({name}) : {database_error_summary(e)}"
        ) from None


def _engine_or_exit(name: str, url: str) -> sa.Engine:
    from portal.db import make_engine

    try:
        return make_engine(url)
    except (sa.exc.ArgumentError, ImportError):  # ImportError: postgresql:// wants psycopg2
        # Never the URL itself in the message: it may hold a password.
        raise click.ClickException(
            f"{name} n'est pas une adresse de base de données utilisable "
            "(attendu : postgresql+psycopg://… ou sqlite:///…)"
        ) from None


def _check_serving_database(settings: Settings) -> None:
    """Connect once as the servers will: reachable, and not a superuser unless allowed."""
    from portal.db import SuperuserRefused, refuse_superuser

    engine = _engine_or_exit("FILR_DATABASE_URL", settings.database_url)
    with _database_errors("FILR_DATABASE_URL"):
        refuse_superuser(engine, allowed=settings.allow_superuser)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SuperuserRefused as e:
            raise click.ClickException(str(e)) from None
        finally:
            engine.dispose()


# --- database ------------------------------------------------------------------------


@main.group()
def db_group() -> None:
    """Database migrations."""


main.add_command(db_group, name="db")


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.option(
    "--app-role",
    default=None,
    metavar="NAME",
    help="PostgreSQL: create this application role if missing (password from "
    "FILR_DATABASE_APP_PASSWORD_FILE), grant it exactly what the portal needs, check it has "
    "no more.",
)
def db_upgrade(revision: str, app_role: str | None) -> None:
    """Apply the migrations (as the tables' owner)."""
    from audit.privileges import PrivilegeError
    from portal.migrate import set_up_app_role, upgrade

    settings = _settings_or_exit()
    name = _migration_url_name(settings)
    _engine_or_exit(name, settings.migration_database_url).dispose()
    if app_role is None:
        with _database_errors(name):
            upgrade(settings.migration_database_url, revision)
        click.echo("Base de données à jour.")
        return
    if settings.database_app_role and settings.database_app_role != app_role:
        raise click.ClickException(
            f"--app-role {app_role} ne correspond pas à FILR_DATABASE_APP_ROLE "
            f"({settings.database_app_role})"
        )
    try:
        with _database_errors(name):
            report = set_up_app_role(
                settings.migration_database_url, app_role, settings.database_app_password, revision
            )
    except PrivilegeError as e:
        raise click.ClickException(str(e)) from None
    click.echo("Base de données à jour.")
    if report.created:
        click.echo(f"Rôle {app_role} créé : connexion par mot de passe, aucun autre attribut.")
    if report.problems:
        raise click.ClickException(
            f"le rôle {app_role} peut plus que ce dont le portail a besoin : "
            + " ; ".join(report.problems)
        )
    click.echo(
        f"Rôle {app_role} vérifié : les droits du portail, rien de plus (lecture et ajout "
        "seuls sur le journal d'audit)."
    )


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert the migrations down to REVISION."""
    from portal.migrate import downgrade

    downgrade(Settings.from_env().migration_database_url, revision)
    click.echo(f"Base de données ramenée à {revision}.")


# --- organisations -------------------------------------------------------------------


@main.group()
def orgs() -> None:
    """Organisations and their départements."""


def create_organisation(
    kind: OrgKind, name: str, departement: str | None, territory: list[str]
) -> Organisation:
    """Create an organisation (in the current app context) and audit it."""
    for code in [departement, *territory]:
        if code is not None and not is_departement_code(code):
            raise click.BadParameter(f"code de département inconnu : {code}")
    if kind in (OrgKind.DEPARTEMENT, OrgKind.PRESTATAIRE) and not departement:
        raise click.BadParameter("--departement est obligatoire pour ce type d'organisation")
    if kind is OrgKind.FRANCE_TRAVAIL and not territory:
        raise click.BadParameter("--territory est obligatoire pour une structure France Travail")
    org = Organisation(
        kind=kind,
        name=name,
        departement_code=departement
        if kind in (OrgKind.DEPARTEMENT, OrgKind.PRESTATAIRE)
        else None,
        created_at=utcnow(),
    )
    org.territory = [FtTerritory(departement_code=c) for c in sorted(set(territory))]
    db.session.add(org)
    db.session.flush()
    audit.record(
        db.session,
        AuditAction.ORGANISATION_CREATED,
        context=_context(),
        target=audit.Target("organisation", org.id, org.departement_code),
        details={"kind": str(kind), "territory": sorted(set(territory))},
    )
    return org


@orgs.command("create")
@click.option("--kind", type=click.Choice([k.value for k in OrgKind]), required=True)
@click.option("--name", required=True)
@click.option("--departement", help="For a département or a mandated provider.")
@click.option("--territory", default="", help="France Travail: comma-separated codes.")
@click.option("--json", "as_json", is_flag=True)
def orgs_create(
    kind: str, name: str, departement: str | None, territory: str, as_json: bool
) -> None:
    """Create an organisation."""
    codes = [c.strip() for c in territory.split(",") if c.strip()]
    with app_context():
        if db.session.execute(sa.select(Organisation).where(Organisation.name == name)).first():
            raise click.ClickException(f"une organisation nommée {name!r} existe déjà")
        org = create_organisation(OrgKind(kind), name, departement, codes)
        db.session.commit()
        if as_json:
            click.echo(json.dumps({"id": org.id, "kind": org.kind, "name": org.name}))
        else:
            click.echo(f"Organisation créée : {org.id} ({org.name})")


@orgs.command("list")
def orgs_list() -> None:
    """List organisations with their spaces."""
    from portal.orgs.permissions import spaces_of_organisation

    with app_context():
        for org in db.session.execute(
            sa.select(Organisation).order_by(Organisation.name)
        ).scalars():
            spaces = ",".join(sorted(spaces_of_organisation(org))) or "-"
            click.echo(f"{org.id}  {org.kind:<15} {spaces:<12} {org.name}")


# --- users ---------------------------------------------------------------------------


def _find_org(ref: str) -> Organisation:
    org = (
        db.session.get(Organisation, ref)
        or db.session.execute(
            sa.select(Organisation).where(Organisation.name == ref)
        ).scalar_one_or_none()
    )
    if org is None:
        raise click.ClickException(f"organisation inconnue : {ref}")
    return org


def provision_user(
    org: Organisation, email: str, name: str, roles: list[Role], password: str | None
) -> dict[str, Any]:
    """Create an account; with a password, activate it with a fresh TOTP secret."""
    svc = services()
    ctx = _context()
    try:
        new = accounts.create_account(
            db.session,
            organisation=org,
            email=email,
            full_name=name,
            roles=roles,
            actor=audit.SYSTEM,
            ctx=ctx,
        )
    except accounts.AccountError as e:
        raise click.ClickException(str(e)) from e
    user = new.user
    result: dict[str, Any] = {"id": user.id, "email": user.email, "status": user.status}
    if password is None:
        db.session.commit()
        accounts.send_activation(db.session, svc, new, ctx, audit.SYSTEM)
        db.session.commit()
        result["activation"] = "sent"
        return result
    problems = auth.check_new_password(user, password, password)
    if problems:
        db.session.rollback()
        raise click.ClickException(" ".join(problems))
    auth.set_password(db.session, svc, user, password)
    secret = totp.new_secret()
    user.totp_secret = svc.secret_box.seal(secret, user.id)
    user.status = AccountStatus.ACTIVE
    user.activated_at = utcnow()
    codes = auth.replace_recovery_codes(db.session, user)
    token = auth.find_token(db.session, new.activation_token, TokenPurpose.ACTIVATION)
    if token is not None:
        auth.consume_token(db.session, token)
    audit.record(
        db.session,
        AuditAction.MFA_ENROLLED,
        actor=audit.Actor(user.id, org.id),
        context=ctx,
        details={"via": "cli"},
    )
    audit.record(
        db.session,
        AuditAction.ACCOUNT_ACTIVATED,
        actor=audit.Actor(user.id, org.id),
        context=ctx,
        details={"via": "cli"},
    )
    db.session.commit()
    result.update(
        status=user.status,
        totp_secret=secret,
        recovery_codes=codes,
        otpauth_uri=totp.provisioning_uri(secret, user.email),
    )
    return result


@main.group()
def users() -> None:
    """User accounts."""


@users.command("create")
@click.option("--org", "org_ref", required=True, help="Organisation id or exact name.")
@click.option("--email", required=True)
@click.option("--name", required=True, help="Full name.")
@click.option(
    "--role", "roles", multiple=True, required=True, type=click.Choice([r.value for r in Role])
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--with-totp", is_flag=True, help="Activate now with a new TOTP secret (printed once)."
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
    """Create an account (activation e-mail), or provision it with --password-stdin --with-totp."""
    if password_stdin != with_totp:
        raise click.UsageError("--password-stdin et --with-totp vont ensemble")
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with app_context():
        result = provision_user(_find_org(org_ref), email, name, [Role(r) for r in roles], password)
    if as_json:
        click.echo(json.dumps(result))
    elif "totp_secret" in result:
        click.echo(
            f"Compte actif : {result['email']}\nSecret TOTP (affiché une seule fois) : "
            f"{result['totp_secret']}"
        )
    else:
        click.echo(f"Compte créé : {result['email']} ; e-mail d'activation envoyé.")


def _status_command(verb: str, action: Any) -> click.Command:
    @click.argument("email")
    def command(email: str) -> None:
        with app_context():
            user = auth.find_user_by_email(db.session, email)
            if user is None:
                raise click.ClickException(f"compte inconnu : {email}")
            try:
                action(db.session, user, audit.SYSTEM, _context())
            except accounts.AccountError as e:
                raise click.ClickException(str(e)) from e
            db.session.commit()
            click.echo(f"{email} : {user.status_label}")

    command.__doc__ = f"{verb.capitalize()} an account (its sessions end at once)."
    return click.command(verb)(command)


users.add_command(_status_command("suspend", accounts.suspend))
users.add_command(_status_command("reactivate", accounts.reactivate))
users.add_command(_status_command("revoke", accounts.revoke))


@users.command("list")
@click.option("--org", "org_ref", default=None)
def users_list(org_ref: str | None) -> None:
    """List accounts."""
    with app_context():
        stmt = sa.select(User).order_by(User.email)
        if org_ref:
            stmt = stmt.where(User.organisation_id == _find_org(org_ref).id)
        for u in db.session.execute(stmt).scalars():
            roles = ",".join(sorted(u.roles))
            click.echo(f"{u.email:<40} {u.status:<10} {roles:<30} {u.organisation.name}")


# --- demo ----------------------------------------------------------------------------

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


@main.group(invoke_without_command=True)
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Create the demo organisations and one account per role (idempotent)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = Settings.from_env()
    path = demo_file(settings)
    known: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
    with app_context():
        for name, kind, dep, territory in DEMO_ORGS:
            exists = db.session.execute(
                sa.select(Organisation).where(Organisation.name == name)
            ).first()
            if not exists:
                org = create_organisation(kind, name, dep, territory)
                org.is_national = name == DEMO_NATIONAL
        db.session.commit()
        for local, full_name, org_name, roles in DEMO_USERS:
            email = f"{local}@{DEMO_DOMAIN}"
            if auth.find_user_by_email(db.session, email) is not None:
                continue
            # Generated at first start, never in the repository.
            password = "-".join(secrets.token_hex(3) for _ in range(4))
            result = provision_user(_find_org(org_name), email, full_name, roles, password)
            known[email] = {
                "password": password,
                "totp_secret": result["totp_secret"],
                "recovery_codes": result["recovery_codes"],
            }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(known, indent=2))
    path.chmod(0o600)
    click.echo(f"Comptes de démonstration ({len(known)}) — identifiants dans {path} :")
    for email, creds in known.items():
        click.echo(f"  {email:<45} mot de passe : {creds['password']}")
    click.echo("Code TOTP du moment pour un compte de démonstration : filr demo code EMAIL")
    click.echo("(ou ajoutez son secret TOTP, présent dans le fichier, à votre application).")


@demo.command("code")
@click.argument("email")
def demo_code(email: str) -> None:
    """Print the current TOTP code of a demo account (reads only the local demo file)."""
    import pyotp

    path = demo_file(Settings.from_env())
    known = json.loads(path.read_text()) if path.exists() else {}
    if email not in known:
        raise click.ClickException("ce compte n'est pas un compte de démonstration de ce poste")
    click.echo(pyotp.TOTP(known[email]["totp_secret"]).now())


# --- audit ---------------------------------------------------------------------------


@main.group("audit")
def audit_group() -> None:
    """The audit trail."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Check the hash chain; exit 1 and name the first broken row if it is broken."""
    with app_context():
        result = audit.verify_chain(db.session)
        db.session.rollback()
        if result.is_valid:
            click.echo(f"Chaîne intègre : {result.checked} entrées, tête {result.head_hash}")
            return
        click.echo(
            f"Chaîne rompue à l'entrée n° {result.first_broken_seq} ({result.reason}) "
            f"après {result.checked} entrées valides.",
            err=True,
        )
        sys.exit(1)


def _parse_when(value: str, *, end: bool) -> datetime:
    """A UTC date or date-time; a bare date given as an end includes that whole day."""
    try:
        if len(value) == 10:
            day = datetime.combine(date.fromisoformat(value), time(), UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter(f"date attendue (AAAA-MM-JJ ou ISO 8601) : {value!r}") from e
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@audit_group.command("export")
@click.option("--from", "start", required=True, help="First day (AAAA-MM-JJ, UTC), included.")
@click.option("--to", "end", required=True, help="Last day (AAAA-MM-JJ, UTC), included.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def audit_export(start: str, end: str, fmt: str, output: Path | None) -> None:
    """Stream the rows of a period as JSON Lines (for a SIEM) or CSV; the export is audited."""
    from audit.export import iter_csv, iter_jsonl
    from audit.query import AuditFilter, Scope, iter_matching

    begin_at, end_at = _parse_when(start, end=False), _parse_when(end, end=True)
    if end_at <= begin_at:
        raise click.BadParameter("--to doit suivre --from")
    with app_context():
        # Fail closed: the export is on the trail before a single row leaves the database.
        audit.record(db.session, AuditAction.AUDIT_EXPORTED, context=_context(), details={
            "via": "cli", "format": fmt, "from": begin_at.isoformat(), "to": end_at.isoformat(),
            "destination": "file" if output else "stdout",
        })  # fmt: skip
        db.session.commit()
        events = iter_matching(
            db.session,
            AuditFilter(start=begin_at, end=end_at),
            Scope(departements=None),
            batch=5000,
            end_read_transactions=True,
        )
        chunks = iter_jsonl(events) if fmt == "jsonl" else iter_csv(events)
        if output is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
            return
        # The trail is sensitive: the file is readable by its owner only.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            for chunk in chunks:
                f.write(chunk)
        click.echo(f"Export écrit dans {output}", err=True)


@audit_group.command("head")
@click.option("--date", "day", default=None, help="UTC day (AAAA-MM-JJ); default: yesterday.")
def audit_head(day: str | None) -> None:
    """Print the chain head (last row's seq and hash) at the end of a UTC day."""
    from audit.retention import head_of_day

    try:
        when = date.fromisoformat(day) if day else utcnow().date() - timedelta(days=1)
    except ValueError as e:
        raise click.BadParameter(f"date attendue (AAAA-MM-JJ) : {day!r}") from e
    with app_context():
        head = head_of_day(db.session, when)
        db.session.rollback()
    if head is None:
        raise click.ClickException(f"aucune entrée du journal avant la fin du {when}")
    click.echo(f"{when.isoformat()} {head.seq} {head.hash}")


@audit_group.command("grant-app-role")
def audit_grant_app_role() -> None:
    """Give FILR_DATABASE_APP_ROLE its privileges (PostgreSQL; run as the owner; idempotent)."""
    from audit.privileges import PrivilegeError, grant_app_role
    from portal.db import make_engine

    settings = Settings.from_env()
    if not settings.database_app_role:
        raise click.ClickException("FILR_DATABASE_APP_ROLE n'est pas défini")
    engine = make_engine(settings.migration_database_url)
    try:
        if engine.dialect.name != "postgresql":
            raise click.ClickException("les rôles ne concernent que PostgreSQL")
        with engine.begin() as conn:
            grant_app_role(conn, settings.database_app_role)
    except PrivilegeError as e:
        raise click.ClickException(str(e)) from e
    finally:
        engine.dispose()
    click.echo(
        f"Rôle {settings.database_app_role} : lecture et ajout seuls sur le journal d'audit."
    )


# --- jobs ----------------------------------------------------------------------------


@main.group()
def jobs() -> None:
    """Scheduled jobs (cron, systemd timers, Kubernetes CronJobs)."""


@jobs.command("sessions")
@click.option("--dry-run", is_flag=True)
def jobs_sessions(dry_run: bool) -> None:
    """Delete expired sessions and stale throttle counters."""
    from datetime import timedelta

    with app_context() as app:
        settings: Settings = app.config["FILR_SETTINGS"]
        now = utcnow()
        idle = now - timedelta(minutes=settings.session_idle_minutes)
        absolute = now - timedelta(hours=settings.session_absolute_hours)
        expired = sa.or_(ServerSession.last_seen_at < idle, ServerSession.created_at < absolute)
        stale = ThrottleEvent.at < now - timedelta(hours=1)
        n_sessions = db.session.execute(
            sa.select(sa.func.count()).select_from(ServerSession).where(expired)
        ).scalar_one()
        n_events = db.session.execute(
            sa.select(sa.func.count()).select_from(ThrottleEvent).where(stale)
        ).scalar_one()
        if not dry_run:
            db.session.execute(sa.delete(ServerSession).where(expired))
            db.session.execute(sa.delete(ThrottleEvent).where(stale))
            db.session.commit()
        click.echo(
            f"{'[essai] ' if dry_run else ''}{n_sessions} sessions expirées, "
            f"{n_events} compteurs anciens supprimés."
        )


@contextmanager
def job_lock(name: str) -> Iterator[bool]:
    """Hold a database-wide lock named *name* (PostgreSQL advisory lock); False if taken."""
    engine = db.engine
    if engine.dialect.name != "postgresql":
        # SQLite is the single-server embedded default; its write lock serialises the work.
        yield True
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        acquired = bool(
            conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        )
        try:
            yield acquired
        finally:
            if acquired:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


@jobs.command("purge")
@click.option("--dry-run", is_flag=True, help="Report what would be destroyed; change nothing.")
@click.option("--batch-size", default=100, show_default=True, type=int)
def jobs_purge(dry_run: bool, batch_size: int) -> None:
    """Destroy expired, withdrawn and abandoned deposits, then orphan objects and uploads."""
    from portal.deposits.services import (
        abort_stale_uploads,
        cleanup_orphans,
        finish_destructions,
        purge_expired_deposits,
    )

    with app_context(), job_lock("filr.jobs.purge") as acquired:
        if not acquired:
            click.echo("Une autre purge est en cours : rien à faire.")
            return
        ctx = _context()
        store = services().store
        # First what an earlier destruction recorded but could not finish (store unavailable).
        late = finish_destructions(db.session, store, dry_run=dry_run)
        report = purge_expired_deposits(
            db.session, store, batch_size=batch_size, dry_run=dry_run, ctx=ctx
        )
        orphans = cleanup_orphans(db.session, store, dry_run=dry_run, ctx=ctx)
        # Multipart uploads interrupted by a crash hold storage until aborted (S3 only); after
        # the purge, so that the uploads of the drafts it destroyed go too.
        aborted = abort_stale_uploads(db.session, store, dry_run=dry_run)
        if not dry_run:
            audit.record(db.session, AuditAction.JOB_RUN, context=ctx, details={
                "job": "purge", "expired": report.expired, "withdrawn": report.withdrawn,
                "abandoned_drafts": report.abandoned_drafts,
                "files_destroyed": report.files_destroyed, "orphans": orphans,
                "aborted_uploads": aborted, "late_shreds": late.shredded,
                "late_removals": late.removed,
                "removals_pending": late.pending + report.removal_pending,
            })  # fmt: skip
            db.session.commit()
        pending = late.pending + report.removal_pending
        click.echo(
            f"{'[essai] ' if dry_run else ''}{report.expired} dépôts expirés, "
            f"{report.withdrawn} retirés, {report.abandoned_drafts} brouillons abandonnés, "
            f"{report.files_destroyed} fichiers détruits, {orphans} objets orphelins, "
            f"{aborted} envois interrompus annulés, {late.removed} contenus de dépôts déjà "
            f"détruits supprimés du stockage ({late.shredded} clés effacées en retard)"
            + (
                f" ; {pending} contenus en attente de suppression (stockage indisponible)."
                if pending
                else "."
            )
        )
        if pending:
            sys.exit(1)  # the monitoring should see a store that refuses removals


@jobs.command("reminders")
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
def jobs_reminders(dry_run: bool) -> None:
    """Remind recipients who have not downloaded, 7 days and 1 day before expiry."""
    from portal.deposits.reminders import send_expiry_reminders

    with app_context(), job_lock("filr.jobs.reminders") as acquired:
        if not acquired:
            click.echo("Un autre envoi de rappels est en cours : rien à faire.")
            return
        ctx = _context()
        report = send_expiry_reminders(db.session, services(), utcnow(), ctx, dry_run)
        if not dry_run:
            audit.record(db.session, AuditAction.JOB_RUN, context=ctx, details={
                "job": "reminders", "deposits_7": report.deposits[7],
                "deposits_1": report.deposits[1], "sent": report.mails_sent,
                "failed": report.mails_failed,
            })  # fmt: skip
            db.session.commit()
        click.echo(
            f"{'[essai] ' if dry_run else ''}Rappels : {report.deposits[7]} dépôts à 7 jours, "
            f"{report.deposits[1]} à 1 jour, {report.mails_sent} e-mails "
            f"{'à envoyer' if dry_run else 'envoyés'}, "
            f"{report.mails_failed} en échec."
        )


@jobs.command("digest")
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
def jobs_digest(dry_run: bool) -> None:
    """Send the daily digest to the users who chose it."""
    from portal.deposits.reminders import send_daily_digests

    with app_context(), job_lock("filr.jobs.digest") as acquired:
        if not acquired:
            click.echo("Un autre envoi de résumés est en cours : rien à faire.")
            return
        ctx = _context()
        report = send_daily_digests(db.session, services(), utcnow(), ctx, dry_run)
        if not dry_run:
            audit.record(db.session, AuditAction.JOB_RUN, context=ctx, details={
                "job": "digest", "users": report.users, "deposits": report.deposits,
                "sent": report.mails_sent, "failed": report.mails_failed,
            })  # fmt: skip
            db.session.commit()
        click.echo(
            f"{'[essai] ' if dry_run else ''}Résumés quotidiens : {report.mails_sent} e-mails "
            f"{'à envoyer' if dry_run else 'envoyés'} ({report.deposits} dépôts), "
            f"{report.mails_failed} en échec."
        )


@jobs.command("audit-retention")
@click.option("--dry-run", is_flag=True, help="Count the rows that would be deleted.")
@click.option("--batch-size", default=100_000, show_default=True, type=int)
def jobs_audit_retention(dry_run: bool, batch_size: int) -> None:
    """Delete audit rows older than FILR_AUDIT_RETENTION_MONTHS, behind a checkpoint."""
    from sqlalchemy.orm import Session as OrmSession

    from audit.retention import RetentionRefused, months_before, purge_expired_events
    from portal.db import make_engine

    with app_context() as app, job_lock("filr.jobs.audit-retention") as acquired:
        if not acquired:
            click.echo("Une autre purge du journal est en cours : rien à faire.")
            return
        settings: Settings = app.config["FILR_SETTINGS"]
        cutoff = months_before(utcnow(), settings.audit_retention_months)
        ctx = _context()
        # The owner's connection: on PostgreSQL the application's role may not delete.
        engine = make_engine(settings.migration_database_url)
        try:
            with OrmSession(engine, expire_on_commit=False) as session:
                report = purge_expired_events(
                    session,
                    cutoff=cutoff,
                    dry_run=dry_run,
                    batch=batch_size,
                    context=ctx,
                    retention_months=settings.audit_retention_months,
                )
                if not dry_run:
                    audit.record(session, AuditAction.JOB_RUN, context=ctx, details={
                        "job": "audit-retention", "cutoff": cutoff.isoformat(),
                        "retention_months": settings.audit_retention_months,
                        "rows_deleted": report.rows_deleted,
                        "checkpoint_seq": report.checkpoint_seq,
                    })  # fmt: skip
                    session.commit()
        except RetentionRefused as e:
            click.echo(f"Purge refusée : {e}", err=True)
            sys.exit(1)
        finally:
            engine.dispose()
        click.echo(
            f"{'[essai] ' if dry_run else ''}Journal d'audit : {report.rows_deleted} entrées "
            f"antérieures au {cutoff:%Y-%m-%d} {'à supprimer' if dry_run else 'supprimées'} "
            f"(conservation {settings.audit_retention_months} mois)."
        )


@jobs.command("audit-head")
@click.option("--date", "day", default=None, help="UTC day (AAAA-MM-JJ); default: yesterday.")
@click.option("--dry-run", is_flag=True, help="Print the head and the recipients; send nothing.")
def jobs_audit_head(day: str | None, dry_run: bool) -> None:
    """E-mail yesterday's chain head hash to the national and platform security officers."""
    from portal.audit_jobs import send_daily_head

    try:
        when = date.fromisoformat(day) if day else utcnow().date() - timedelta(days=1)
    except ValueError as e:
        raise click.BadParameter(f"date attendue (AAAA-MM-JJ) : {day!r}") from e
    with app_context(), job_lock("filr.jobs.audit-head") as acquired:
        if not acquired:
            click.echo("Un autre envoi de l'empreinte est en cours : rien à faire.")
            return
        report = send_daily_head(db.session, services().mailer, when, _context(), dry_run=dry_run)
    if report.head is None:
        click.echo(f"Aucune entrée du journal avant la fin du {when} : rien à envoyer.")
        return
    click.echo(
        f"{'[essai] ' if dry_run else ''}Empreinte du {when} (entrée n° {report.head.seq}) : "
        f"{report.head.hash} — {report.recipients} destinataires, {report.sent} envoyés, "
        f"{report.failed} en échec."
    )
    if report.failed or (not dry_run and report.recipients == 0):
        sys.exit(1)


@jobs.command("flow-reminders")
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
def jobs_flow_reminders(dry_run: bool) -> None:
    """Flow calendar reminders: before the CGPEM deadline, and once a deadline passed."""
    from portal.flows.reminders import send_flow_reminders

    with app_context(), job_lock("filr.jobs.flow-reminders") as acquired:
        if not acquired:
            click.echo("Un autre envoi de rappels de flux est en cours : rien à faire.")
            return
        ctx = _context()
        report = send_flow_reminders(db.session, services(), utcnow(), ctx, dry_run)
        if not dry_run:
            audit.record(db.session, AuditAction.JOB_RUN, context=ctx, details={
                "job": "flow-reminders", "reminders": report.reminders,
                "sent": report.mails_sent, "failed": report.mails_failed,
                "reports_forgotten": report.reports_forgotten,
            })  # fmt: skip
            db.session.commit()
        click.echo(
            f"{'[essai] ' if dry_run else ''}Rappels de flux : {report.reminders} rappel(s), "
            f"{report.mails_sent} e-mails {'à envoyer' if dry_run else 'envoyés'}, "
            f"{report.mails_failed} en échec, {report.already_sent} déjà envoyé(s) ; "
            f"{report.reports_forgotten} rapport(s) de plus de 90 jours effacé(s)."
        )
        for key in report.keys:
            click.echo(f"  {key}")


def _register_optional_groups() -> None:
    from portal.keys_cli import keys

    main.add_command(keys)
    try:
        from portal.flows.cli import flows
    except ImportError:  # pragma: no cover - built in parallel
        return
    main.add_command(flows)


_register_optional_groups()
register_securite(main)
