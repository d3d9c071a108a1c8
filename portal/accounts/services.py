"""The verbs of account management, shared by the web pages and the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, Outcome
from portal.accounts.habilitations import (
    HabilitationError,
    HabilitationInput,
    has_ended,
    set_habilitation,
    today_in_paris,
)
from portal.accounts.models import (
    AccountStatus,
    RecoveryCode,
    Role,
    SuspensionReason,
    TokenPurpose,
    User,
    UserRole,
)
from portal.accounts.permissions import roles_allowed_for
from portal.accounts.suspensions import SIGNATURE
from portal.api import services as api_tokens
from portal.auth import keys, totp
from portal.auth import services as auth
from portal.auth.models import FederatedIdentity, ServerSession
from portal.auth.sessions import revoke_user_sessions
from portal.container import Services
from portal.db import utcnow
from portal.mail import MailError, deliver
from portal.orgs.models import Organisation, OrgKind

_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
)


class AccountError(ValueError):
    """A request on an account cannot be carried out (French message for people)."""


@dataclass(frozen=True)
class NewAccount:
    """A created account and its activation token (to be e-mailed, never displayed)."""

    user: User
    activation_token: str


def create_account(
    session: Session,
    *,
    organisation: Organisation,
    email: str,
    full_name: str,
    roles: Iterable[Role],
    actor: audit.Actor,
    ctx: audit.Context,
    habilitation: HabilitationInput | None = None,
    granted_by: User | None = None,
) -> NewAccount:
    """Create a pending account with its roles, its habilitation (when given) and an
    activation token (72 h)."""
    email = auth.normalise_email(email)
    if not _EMAIL.match(email) or len(email) > 254:
        raise AccountError("Adresse électronique invalide.")
    full_name = " ".join(full_name.split())
    if not 2 <= len(full_name) <= 120:
        raise AccountError("Le nom doit contenir entre 2 et 120 caractères.")
    role_set = frozenset(roles)
    if not role_set:
        raise AccountError("Choisissez au moins un rôle.")
    forbidden = role_set - roles_allowed_for(OrgKind(organisation.kind))
    if forbidden:
        raise AccountError("Rôle non autorisé pour cette organisation.")
    if auth.find_user_by_email(session, email) is not None:
        raise AccountError("Un compte existe déjà avec cette adresse électronique.")
    user = User(
        organisation_id=organisation.id,
        email=email,
        full_name=full_name,
        status=AccountStatus.PENDING,
        created_at=utcnow(),
    )
    user.organisation = organisation
    user.role_rows = [UserRole(role=str(r)) for r in sorted(role_set)]
    session.add(user)
    session.flush()
    token = auth.issue_token(session, user, TokenPurpose.ACTIVATION)
    audit.record(
        session,
        AuditAction.ACCOUNT_CREATED,
        actor=actor,
        context=ctx,
        target=audit.Target("user", user.id),
        details={"roles": sorted(str(r) for r in role_set), "organisation_id": organisation.id},
    )
    if habilitation is not None:
        try:
            set_habilitation(
                session,
                user,
                habilitation,
                granted_by=granted_by,
                actor=actor,
                ctx=ctx,
                today=today_in_paris(utcnow()),
            )
        except HabilitationError as e:
            raise AccountError(str(e)) from e
    return NewAccount(user, token)


def activation_mail(svc: Services, user: User, token: str) -> tuple[str, str]:
    """Subject and body of the activation e-mail."""
    link = f"{svc.settings.base_url}/activation/{token}"
    body = (
        f"Bonjour,\n\nUn compte Fil'R a été créé pour vous ({user.organisation.name}).\n\n"
        f"Pour l'activer, choisissez votre mot de passe puis configurez votre application "
        f"d'authentification en suivant ce lien, valable 72 heures et utilisable une seule "
        f"fois :\n\n{link}\n\nSi vous n'attendiez pas ce message, ignorez-le et prévenez le "
        f"gestionnaire de comptes de votre organisation.\n\n-- \nFil'R, échanges sécurisés RSA / "
        f"France Travail\n"
    )
    return "Fil'R : activez votre compte", body


def send_activation(
    session: Session, svc: Services, new: NewAccount, ctx: audit.Context, actor: audit.Actor
) -> None:
    """Record that the activation link is sent, commit, then e-mail it.

    Fail closed: a link whose sending cannot be recorded is never sent. The row (and whatever
    the caller's transaction holds, such as a new token) is committed before the mail server is
    called, so the trail's lock is never held while it answers. If the mail fails, a second row
    says so and MailError propagates.
    """
    target = audit.Target("user", new.user.id)
    audit.record(
        session, AuditAction.ACCOUNT_ACTIVATION_SENT, actor=actor, context=ctx, target=target
    )
    session.commit()
    subject, body = activation_mail(svc, new.user, new.activation_token)
    try:
        svc.mailer.send(new.user.email, subject, body)
    except MailError:
        audit.record(
            session,
            AuditAction.ACCOUNT_ACTIVATION_SENT,
            actor=actor,
            context=ctx,
            target=target,
            outcome=Outcome.FAILURE,
            details={"error": "mail"},
        )
        session.commit()
        raise


def resend_activation(
    session: Session, user: User, actor: audit.Actor, ctx: audit.Context
) -> NewAccount:
    """A new activation token for a still-pending account (the old one stops working)."""
    if user.status != AccountStatus.PENDING:
        raise AccountError("Ce compte est déjà activé.")
    return NewAccount(user, auth.issue_token(session, user, TokenPurpose.ACTIVATION))


def create_account_and_mail_activation(
    session: Session,
    svc: Services,
    *,
    organisation: Organisation,
    email: str,
    full_name: str,
    roles: Iterable[Role],
    actor: audit.Actor,
    ctx: audit.Context,
    habilitation: HabilitationInput | None = None,
    granted_by: User | None = None,
) -> NewAccount:
    """Create a pending account, commit, then e-mail its activation link (`send_activation`).

    A refusal (AccountError) rolls the transaction back and propagates.
    """
    try:
        new = create_account(
            session,
            organisation=organisation,
            email=email,
            full_name=full_name,
            roles=roles,
            actor=actor,
            ctx=ctx,
            habilitation=habilitation,
            granted_by=granted_by,
        )
    except AccountError:
        session.rollback()
        raise
    session.commit()
    send_activation(session, svc, new, ctx, actor)
    session.commit()
    return new


def resend_activation_mail(
    session: Session, svc: Services, user: User, actor: audit.Actor, ctx: audit.Context
) -> NewAccount:
    """A new activation link for a pending account, committed with its row, then e-mailed.

    The new token (which voids the old one) commits with its row, before the mail: if the row
    cannot be written, the old link still works and nothing is sent. A refusal (AccountError)
    rolls back and propagates.
    """
    try:
        new = resend_activation(session, user, actor, ctx)
    except AccountError:
        session.rollback()
        raise
    send_activation(session, svc, new, ctx, actor)
    session.commit()
    return new


@dataclass(frozen=True)
class ProvisionedAccount:
    """A provisioned account: active with its new secrets, or pending with its link e-mailed."""

    user: User
    totp_secret: str | None = None  # None: pending, the activation e-mail was sent
    recovery_codes: tuple[str, ...] = ()


def provision_user(
    session: Session,
    svc: Services,
    *,
    organisation: Organisation,
    email: str,
    full_name: str,
    roles: Iterable[Role],
    password: str | None,
    ctx: audit.Context,
    habilitation: HabilitationInput | None = None,
) -> ProvisionedAccount:
    """Create an account and e-mail its activation link or, given *password*, activate it at
    once with a fresh TOTP secret (scripted provisioning); commits."""
    new = create_account(
        session,
        organisation=organisation,
        email=email,
        full_name=full_name,
        roles=roles,
        actor=audit.SYSTEM,
        ctx=ctx,
        habilitation=habilitation,
    )
    user = new.user
    if password is None:
        session.commit()
        send_activation(session, svc, new, ctx, audit.SYSTEM)
        session.commit()
        return ProvisionedAccount(user)
    problems = auth.check_new_password(user, password, password)
    if problems:
        session.rollback()
        raise AccountError(" ".join(problems))
    auth.set_password(session, svc, user, password)
    secret = totp.new_secret()
    user.totp_secret = svc.secret_box.seal(secret, user.id)
    token = auth.find_token(session, new.activation_token, TokenPurpose.ACTIVATION)
    if token is not None:
        auth.consume_token(session, token)
    codes = auth.activate_with_second_factor(session, user, ctx, details={"via": "cli"})
    session.commit()
    return ProvisionedAccount(user, secret, tuple(codes))


def _set_status(
    session: Session,
    user: User,
    status: AccountStatus,
    action: AuditAction,
    actor: audit.Actor,
    ctx: audit.Context,
) -> None:
    user.status = status
    user.suspension_reason = SuspensionReason.MANAGER if status == AccountStatus.SUSPENDED else None
    if status in (AccountStatus.SUSPENDED, AccountStatus.REVOKED):
        revoke_user_sessions(session, user.id)  # at once, not at the next idle timeout
    # The account's département (None for France Travail and the platform) puts the row in the
    # scope of that département's security officer.
    target = audit.Target("user", user.id, user.organisation.departement_code)
    audit.record(session, action, actor=actor, context=ctx, target=target)


def suspend(session: Session, user: User, actor: audit.Actor, ctx: audit.Context) -> None:
    """Suspend an active or pending account; its sessions end now."""
    if user.status not in (AccountStatus.ACTIVE, AccountStatus.PENDING):
        raise AccountError("Seul un compte actif ou en attente peut être suspendu.")
    _set_status(session, user, AccountStatus.SUSPENDED, AuditAction.ACCOUNT_SUSPENDED, actor, ctx)


# Not an argon2 hash: no password verifies against it (Argon2.verify answers False), and the
# account stays "active" for the database's constraint while its person chooses a new one.
PASSWORD_TO_CHOOSE = "!reactivated"  # noqa: S105 - a marker, not a secret
REACTIVATION_LINK_LIFETIME = timedelta(hours=72)


def reactivate(session: Session, user: User, actor: audit.Actor, ctx: audit.Context) -> None:
    """Lift a suspension: back to pending if never activated, otherwise active with no usable
    password (the person chooses a new one from `reactivation_link`) and no API token left.

    Only a manager (or the operator) reactivates; the person never can: a suspended account
    cannot log in nor ask for a reset link. An ended habilitation must be extended first, or
    the next run of the job would suspend the account again.
    """
    if user.status != AccountStatus.SUSPENDED:
        raise AccountError("Seul un compte suspendu peut être réactivé.")
    if has_ended(user, today_in_paris(utcnow())):
        raise AccountError(
            "L'habilitation de ce compte a pris fin : prolongez-la avant de réactiver le compte."
        )
    if user.activated_at is None:
        _set_status(
            session, user, AccountStatus.PENDING, AuditAction.ACCOUNT_REACTIVATED, actor, ctx
        )
        return
    _set_status(session, user, AccountStatus.ACTIVE, AuditAction.ACCOUNT_REACTIVATED, actor, ctx)
    user.password_hash = PASSWORD_TO_CHOOSE
    user.reactivated_at = utcnow()
    user.inactivity_notice_at = None
    auth.void_tokens(session, user, TokenPurpose.PASSWORD_RESET)
    api_tokens.revoke_all_tokens(session, user, actor=actor, ctx=ctx, reason="reactivation")


def must_choose_password(user: User) -> bool:
    """True when *user* was reactivated and has not chosen a new password yet."""
    return user.password_hash == PASSWORD_TO_CHOOSE


def reactivation_mail(svc: Services, user: User, token: str) -> tuple[str, str]:
    """Subject and body of the mail that asks a reactivated person for a new password."""
    link = f"{svc.settings.base_url}/mot-de-passe/reinitialiser/{token}"
    body = (
        f"Bonjour,\n\nVotre compte Fil'R ({user.organisation.name}) a été réactivé par le "
        "gestionnaire de comptes de votre organisation.\n\nAvant de vous connecter, choisissez "
        f"un nouveau mot de passe en suivant ce lien, valable 72 heures et utilisable une seule "
        f"fois :\n\n{link}\n\nVotre double authentification reste inchangée. Si le lien a "
        "expiré, utilisez « Mot de passe oublié » sur la page de connexion.\n" + SIGNATURE
    )
    return "Fil'R : votre compte a été réactivé", body


def reactivate_and_mail(
    session: Session, svc: Services, user: User, actor: audit.Actor, ctx: audit.Context
) -> None:
    """`reactivate`, then e-mail a link to choose a new password (72 h); commits first.

    A refusal (AccountError) rolls back and propagates; a lost mail does not undo the
    reactivation (the person may use "mot de passe oublié").
    """
    try:
        reactivate(session, user, actor, ctx)
    except AccountError:
        session.rollback()
        raise
    token = None
    if user.status == AccountStatus.ACTIVE:
        token = auth.issue_token(
            session, user, TokenPurpose.PASSWORD_RESET, lifetime=REACTIVATION_LINK_LIFETIME
        )
    session.commit()
    if token is not None:
        subject, body = reactivation_mail(svc, user, token)
        deliver(svc.mailer, user.email, subject, body, what="reactivation mail", about="account")


def revoke(session: Session, user: User, actor: audit.Actor, ctx: audit.Context) -> None:
    """Revoke an account for good: it can never log in again."""
    if user.status == AccountStatus.REVOKED:
        raise AccountError("Ce compte est déjà révoqué.")
    _set_status(session, user, AccountStatus.REVOKED, AuditAction.ACCOUNT_REVOKED, actor, ctx)
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    keys.remove_all_keys(session, user.id)
    _remove_federated_identities(session, user, actor, ctx, "revocation")
    user.totp_secret = None
    user.mfa_reset_at = utcnow()
    user.password_hash = None


def _remove_federated_identities(
    session: Session, user: User, actor: audit.Actor, ctx: audit.Context, reason: str
) -> int:
    """Delete *user*'s ProConnect links (an MFA reset, a revocation or a departure): the
    identity linked may be the very thing the reset answers, and a link made again needs the
    password and the new second factor. Audited when there was one; not committed."""
    result = session.execute(
        sa.delete(FederatedIdentity).where(FederatedIdentity.user_id == user.id)
    )
    removed = int(result.rowcount)  # type: ignore[attr-defined] # DML returns a CursorResult
    if removed:
        audit.record(
            session,
            AuditAction.AUTH_PROCONNECT_UNLINKED,
            actor=actor,
            context=ctx,
            target=audit.Target("user", user.id, user.organisation.departement_code),
            details={"provider": "ProConnect", "reason": reason},
        )
    return removed


@dataclass(frozen=True)
class MfaReset:
    """An MFA reset: the enrolment token (to be e-mailed) and how many API tokens were revoked."""

    enrolment_token: str
    api_tokens_revoked: int


def reset_mfa(session: Session, user: User, actor: audit.Actor, ctx: audit.Context) -> MfaReset:
    """Remove the user's authenticator, recovery codes, sessions and API tokens; return an
    enrolment token (72 h).

    An MFA reset is a recovery step after a lost or compromised factor: an API token created
    meanwhile would keep the account open to its holder, so it is revoked with the sessions.
    """
    if user.status != AccountStatus.ACTIVE:
        raise AccountError("Seul un compte actif peut être réinitialisé.")
    user.totp_secret = None
    user.totp_last_step = None
    user.mfa_reset_at = utcnow()
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    # The keys go too: a lost or stolen key is the other reason for a reset.
    keys_removed = keys.remove_all_keys(session, user.id)
    _remove_federated_identities(session, user, actor, ctx, "mfa_reset")
    revoke_user_sessions(session, user.id)
    token = auth.issue_token(session, user, TokenPurpose.MFA_ENROLMENT)
    audit.record(
        session,
        AuditAction.AUTH_MFA_RESET,
        actor=actor,
        context=ctx,
        target=audit.Target("user", user.id),
        details={"security_keys_removed": keys_removed},
    )
    revoked = api_tokens.revoke_all_tokens(session, user, actor=actor, ctx=ctx, reason="mfa_reset")
    return MfaReset(token, revoked)


StatusChange = Callable[[Session, User, audit.Actor, audit.Context], None]


def change_status(
    session: Session, change: StatusChange, user: User, actor: audit.Actor, ctx: audit.Context
) -> None:
    """Carry out *change* (`suspend`, `reactivate`, `revoke`) on *user* and commit.

    A refusal (AccountError) rolls back and propagates.
    """
    try:
        change(session, user, actor, ctx)
    except AccountError:
        session.rollback()
        raise
    session.commit()


def reset_mfa_and_mail(
    session: Session,
    svc: Services,
    user: User,
    actor: audit.Actor,
    ctx: audit.Context,
    *,
    mail_body: Callable[[MfaReset], str],
) -> MfaReset:
    """`reset_mfa`, commit, then e-mail the person the body *mail_body* writes for the reset.

    A refusal (AccountError) rolls back and propagates; a mail failure (MailError) propagates
    once the reset is committed.
    """
    try:
        reset = reset_mfa(session, user, actor, ctx)
    except AccountError:
        session.rollback()
        raise
    session.commit()
    subject = "Fil'R : votre double authentification a été réinitialisée"
    svc.mailer.send(user.email, subject, mail_body(reset))
    return reset


# --- Mon compte: what every user changes on their own account -----------------------------


def change_password(
    session: Session,
    svc: Services,
    user: User,
    password: str,
    *,
    keep_session_id: str | None,
    ctx: audit.Context,
    mail_body: str,
    on_committed: Callable[[], object],
) -> None:
    """Set *user*'s new password and end every other session, commit, then mail the notice.

    *on_committed* runs between the commit and the mail (the web page gives its own session a
    new id there), so it has run even when the mail server fails.
    """
    auth.set_password(session, svc, user, password)
    revoke_user_sessions(session, user.id, keep_row_id=keep_session_id)
    audit.record(session, AuditAction.AUTH_PASSWORD_CHANGED, actor=user.audit_actor, context=ctx)
    session.commit()
    on_committed()
    svc.mailer.send(user.email, "Fil'R : votre mot de passe a été modifié", mail_body)


def regenerate_recovery_codes(session: Session, user: User, ctx: audit.Context) -> list[str]:
    """Ten new recovery codes (shown once) replace the old ones; commits."""
    codes = auth.replace_recovery_codes(session, user)
    audit.record(
        session, AuditAction.AUTH_RECOVERY_CODES_REGENERATED, actor=user.audit_actor, context=ctx
    )
    session.commit()
    return codes


def reenrol_totp(
    session: Session,
    svc: Services,
    user: User,
    secret: str,
    code: str,
    *,
    keep_session_id: str | None,
    ctx: audit.Context,
) -> bool:
    """Move *user*'s second factor to *secret* if *code* proves it; every other session ends.

    Commits and returns True, or changes nothing and returns False for a wrong code.
    """
    if not auth.enrol_totp(session, svc, user, secret, code):
        return False
    revoke_user_sessions(session, user.id, keep_row_id=keep_session_id)
    audit.record(
        session,
        AuditAction.AUTH_MFA_ENROLLED,
        actor=user.audit_actor,
        context=ctx,
        details={"reason": "re-enrolment"},
    )
    session.commit()
    return True


def close_session(
    session: Session, user: User, server_session: ServerSession, handle: str, ctx: audit.Context
) -> None:
    """End one of *user*'s own sessions (named by *handle* in the trail); commits."""
    session.delete(server_session)
    audit.record(
        session,
        AuditAction.AUTH_SESSION_REVOKED,
        actor=user.audit_actor,
        context=ctx,
        target=audit.Target("session", handle),
    )
    session.commit()


def start_key_enrolment(
    session: Session, svc: Services, user: User, code: str, name: str, ctx: audit.Context
) -> keys.Ceremony | None:
    """After the password: a current TOTP code opens the enrolment of a key named *name*
    (the options for the browser and the pending challenge); None for a wrong code."""
    if not auth.verify_current_code(session, svc, user, code, ctx, "key_enrolment"):
        return None
    ceremony = keys.registration_ceremony(session, svc.settings, user, name.strip())
    session.commit()  # the code's step is spent
    return ceremony
