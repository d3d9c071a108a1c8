"""The verbs of authentication: log in, tokens, passwords, TOTP. No request, no flash."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, AuditEvent, Outcome
from portal.accounts.models import (
    PRIVILEGED_ROLES,
    AccountStatus,
    RecoveryCode,
    TokenPurpose,
    User,
    UserToken,
)
from portal.api import services as api_tokens
from portal.auth import keys, totp
from portal.auth.passwords import MIN_LENGTH, MIN_LENGTH_PRIVILEGED, password_problems
from portal.auth.sessions import revoke_user_sessions
from portal.auth.throttle import account_key, ip_key
from portal.container import Services
from portal.db import utcnow
from portal.mail import deliver

TOKEN_LIFETIMES = {
    TokenPurpose.ACTIVATION: timedelta(hours=72),
    TokenPurpose.MFA_ENROLMENT: timedelta(hours=72),
    TokenPurpose.PASSWORD_RESET: timedelta(minutes=30),
}


def normalise_email(email: str) -> str:
    """E-mail addresses are compared case-insensitively."""
    return email.strip().lower()


def find_user_by_email(session: Session, email: str) -> User | None:
    """The account holding *email*, if any."""
    return session.execute(
        sa.select(User).where(User.email == normalise_email(email))
    ).scalar_one_or_none()


@dataclass(frozen=True)
class LoginOutcome:
    """Result of a log-in attempt; `user` only on success."""

    user: User | None = None
    retry_after: int | None = None
    # The password was right, no code was given and the account holds security keys: the
    # log-in continues with a key (`portal.auth.keys.log_in_with_key`).
    key_user_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when password and second factor were both right."""
        return self.user is not None


@dataclass(frozen=True)
class Reauthentication:
    """Result of asking a logged-in user for their password again."""

    ok: bool
    retry_after: int | None = None


def reauthenticate(
    session: Session, svc: Services, user: User, password: str, ctx: audit.Context, purpose: str
) -> Reauthentication:
    """Check the current password before a sensitive change, throttled like the log-in.

    A stolen session must not become a password-guessing oracle: failures count against the
    account's own re-authentication key and are audited; a failure is committed at once, as
    it must outlive the page that shows it (the attempt itself is in the shared store before
    the password is checked).
    """
    key = "reauth:" + user.id
    # Counted before the (slow) verification, so parallel requests cannot all slip through.
    verdict = svc.throttle.attempt(key, svc.settings.throttle_account_per_minute)
    if not verdict.allowed:
        audit.record(
            session,
            AuditAction.AUTH_REAUTH_FAILURE,
            actor=user.audit_actor,
            outcome=Outcome.DENIED,
            context=ctx,
            details={"purpose": purpose, "reason": "throttled"},
        )
        session.commit()
        return Reauthentication(False, verdict.retry_after)
    if svc.argon2.verify(user.password_hash, password):
        svc.throttle.reset(key)
        return Reauthentication(True)
    audit.record(
        session,
        AuditAction.AUTH_REAUTH_FAILURE,
        actor=user.audit_actor,
        outcome=Outcome.FAILURE,
        context=ctx,
        details={"purpose": purpose, "reason": "bad_password"},
    )
    session.commit()
    return Reauthentication(False)


# Second-factor failures count until the account proves itself again: a log-in, a password
# reset by e-mail (the mailbox) or a new authenticator. The manager's MFA_RESET is recorded
# under the manager; until the user's MFA_ENROLLED follows it no log-in can succeed anyway (no
# authenticator). The audit trail is the counter, so no new state is needed.
MFA_FAILURE_ACTIONS = (AuditAction.AUTH_MFA_FAILURE, AuditAction.AUTH_MFA_REPLAY)
MFA_FAILURES_RESET_BY = (
    AuditAction.AUTH_LOGIN_SUCCESS,
    AuditAction.AUTH_PASSWORD_RESET,
    AuditAction.AUTH_MFA_ENROLLED,
)


def mfa_failures_capped(session: Session, user: User, maximum: int) -> bool:
    """Has *user* had *maximum* second-factor failures since last proving the account?

    The per-minute throttle leaves a guesser who holds the password and tries one code every
    16 s about 1.6 % a day against a 6-digit code (three codes valid at a time); this cap stops
    that for good until the mailbox (password reset) or the manager (MFA reset) steps in. Two
    probes of the (actor_id, seq) index: the newest resetting event, then at most *maximum*
    failures after it. Called only once the password is verified: unknown accounts and wrong
    passwords cost no more than before, and the cap confirms no account.
    """
    since = session.execute(
        sa.select(AuditEvent.seq)
        .where(
            AuditEvent.actor_id == user.id,
            AuditEvent.action.in_([str(a) for a in MFA_FAILURES_RESET_BY]),
            AuditEvent.outcome == Outcome.SUCCESS,
        )
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    failures = (
        sa.select(AuditEvent.id)
        .where(
            AuditEvent.actor_id == user.id,
            AuditEvent.seq > (since or 0),
            AuditEvent.action.in_([str(a) for a in MFA_FAILURE_ACTIONS]),
        )
        .limit(maximum)
        .subquery()
    )
    count = session.execute(sa.select(sa.func.count()).select_from(failures)).scalar_one()
    return int(count) >= maximum


def attempt_login(
    session: Session, svc: Services, email: str, password: str, code: str, ctx: audit.Context
) -> LoginOutcome:
    """Check password then TOTP (or a recovery code); throttle and audit every outcome.

    Without a code, an account holding security keys is sent on to its key (`key_user_id`).
    """
    akey, ikey = account_key(email), ip_key(ctx.source_ip)
    settings = svc.settings
    # Until the password is verified, a known and an unknown address take the same statements:
    # only the columns of one row, never the whole User (whose eager loads of roles and
    # territory were two extra round trips that told, under load, that the account exists).
    found = (
        session.execute(
            sa.select(User.id, User.organisation_id, User.password_hash).where(
                User.email == normalise_email(email)
            )
        ).one_or_none()
        if len(email) <= 254
        else None
    )
    actor = audit.Actor(found.id, found.organisation_id) if found else audit.SYSTEM
    # The attempt is counted under both keys before the (slow) verification, so a burst of
    # parallel requests gets at most the limit evaluated (see Throttle.attempt). An evaluated
    # attempt that fails stays as the failure; a refused one is taken back under every key.
    now = time.time()
    counted: list[str] = []
    for key, limit in (
        (akey, settings.throttle_account_per_minute),
        (ikey, settings.throttle_ip_per_minute),
    ):
        verdict = svc.throttle.attempt(key, limit, now)
        if not verdict.allowed:
            for earlier in counted:
                svc.throttle.withdraw(earlier, now)
            audit.record(
                session,
                AuditAction.AUTH_LOGIN_THROTTLED,
                actor=actor,
                context=ctx,
                outcome=Outcome.DENIED,
                details={"scope": key.split(":", 1)[0], "retry_after": verdict.retry_after},
            )
            session.commit()
            return LoginOutcome(retry_after=verdict.retry_after)
        counted.append(key)

    def fail(action: AuditAction, reason: str) -> LoginOutcome:
        audit.record(
            session,
            action,
            actor=actor,
            context=ctx,
            outcome=Outcome.FAILURE,
            details={"reason": reason},
        )
        session.commit()
        return LoginOutcome()

    # Always one argon2 verification, so an unknown account costs the same time as a known one.
    password_ok = svc.argon2.verify(found.password_hash if found else None, password)
    if found is None:
        return fail(AuditAction.AUTH_LOGIN_FAILURE, "unknown_account")
    if not password_ok:
        return fail(AuditAction.AUTH_LOGIN_FAILURE, "bad_password")
    # The password is right: whoever sent it may learn that the account exists.
    user = session.get(User, found.id)
    if user is None:  # deleted between the two statements
        return fail(AuditAction.AUTH_LOGIN_FAILURE, "unknown_account")
    if user.status != AccountStatus.ACTIVE:
        return fail(AuditAction.AUTH_LOGIN_FAILURE, f"account_{user.status}")
    if mfa_failures_capped(session, user, settings.mfa_failures_max):
        # Same answer as a wrong code (the password must not be confirmed to a guesser).
        audit.record(
            session,
            AuditAction.AUTH_LOGIN_THROTTLED,
            actor=actor,
            context=ctx,
            outcome=Outcome.DENIED,
            details={"scope": "mfa_failures"},
        )
        session.commit()
        return LoginOutcome()
    if not code and keys.available(svc.settings) and keys.has_keys(session, user.id):
        session.commit()
        return LoginOutcome(key_user_id=user.id)
    if not code:
        return fail(AuditAction.AUTH_MFA_FAILURE, "no_code")
    if user.totp_secret is None:
        return fail(AuditAction.AUTH_MFA_FAILURE, "mfa_not_enrolled")

    failure = check_code(session, svc, user, code, actor, ctx)
    if failure is not None:
        return fail(*failure)
    svc.throttle.reset(akey)
    # A success is no failure of the address (colleagues behind one office NAT log in).
    svc.throttle.withdraw(ikey, now)
    user.last_login_at = utcnow()
    if user.password_hash and svc.argon2.needs_rehash(user.password_hash):
        user.password_hash = svc.argon2.hash(password)
    audit.record(session, AuditAction.AUTH_LOGIN_SUCCESS, actor=actor, context=ctx)
    session.commit()
    return LoginOutcome(user=user)


def check_code(
    session: Session,
    svc: Services,
    user: User,
    code: str,
    actor: audit.Actor,
    ctx: audit.Context,
    details: dict[str, str] | None = None,
) -> tuple[AuditAction, str] | None:
    """Check a TOTP code (spent by compare-and-set) or a recovery code (spent) of *user*.

    None on success (its row recorded, with *details*); else the failure's action and reason,
    for the caller to record. Shared by the password log-in and the ProConnect log-in without
    a second factor asserted by the provider.
    """
    if user.totp_secret is None:
        return AuditAction.AUTH_MFA_FAILURE, "mfa_not_enrolled"
    if totp.looks_like_recovery_code(code):
        used = session.execute(
            sa.update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_digest == totp.recovery_code_digest(code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
        )
        if used.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
            return AuditAction.AUTH_MFA_FAILURE, "bad_recovery_code"
        audit.record(
            session,
            AuditAction.AUTH_MFA_RECOVERY_CODE_USED,
            actor=actor,
            context=ctx,
            details=details,
        )
        return None
    secret = svc.secret_box.open(user.totp_secret, user.id)
    step = totp.matching_step(secret, code)
    if step is None:
        return AuditAction.AUTH_MFA_FAILURE, "bad_code"
    # Atomic compare-and-set: of two requests carrying the same code, one wins.
    claimed = session.execute(
        sa.update(User)
        .where(
            User.id == user.id,
            sa.or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        return AuditAction.AUTH_MFA_REPLAY, "code_already_used"
    audit.record(session, AuditAction.AUTH_MFA_SUCCESS, actor=actor, context=ctx, details=details)
    return None


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def void_tokens(session: Session, user: User, purpose: TokenPurpose) -> int:
    """Mark every unused token of *purpose* of *user* as used; returns how many were voided."""
    result = session.execute(
        sa.update(UserToken)
        .where(
            UserToken.user_id == user.id, UserToken.purpose == purpose, UserToken.used_at.is_(None)
        )
        .values(used_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined] # DML returns a CursorResult


def issue_token(
    session: Session, user: User, purpose: TokenPurpose, *, lifetime: timedelta | None = None
) -> str:
    """Create a single-use token for *user*, invalidating earlier ones of the same purpose
    (valid for the purpose's usual lifetime unless *lifetime* is given)."""
    void_tokens(session, user, purpose)
    now = utcnow()
    raw = secrets.token_urlsafe(32)
    session.add(
        UserToken(
            user_id=user.id,
            purpose=purpose,
            token_digest=_digest(raw),
            created_at=now,
            expires_at=now + (lifetime or TOKEN_LIFETIMES[purpose]),
        )
    )
    session.flush()
    return raw


def find_token(session: Session, raw: str, purpose: TokenPurpose) -> UserToken | None:
    """The unused, unexpired token *raw* of *purpose*, or None."""
    if not raw or len(raw) > 128:
        return None
    token = session.execute(
        sa.select(UserToken).where(UserToken.token_digest == _digest(raw))
    ).scalar_one_or_none()
    if token is None or token.purpose != purpose or token.used_at is not None:
        return None
    if token.expires_at <= utcnow():
        return None
    return token


def consume_token(session: Session, token: UserToken) -> bool:
    """Mark *token* used; False if another request used it first."""
    result = session.execute(
        sa.update(UserToken)
        .where(UserToken.id == token.id, UserToken.used_at.is_(None))
        .values(used_at=utcnow())
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined] # DML returns a CursorResult


def min_password_length(user: User) -> int:
    """12 characters, 16 for the privileged roles."""
    return MIN_LENGTH_PRIVILEGED if user.roles & PRIVILEGED_ROLES else MIN_LENGTH


def check_new_password(user: User, password: str, confirmation: str) -> list[str]:
    """Policy problems for *password* chosen by *user* (French messages)."""
    problems = []
    if password != confirmation:
        problems.append("Les deux mots de passe ne correspondent pas.")
    problems += password_problems(
        password,
        privileged=bool(user.roles & PRIVILEGED_ROLES),
        full_name=user.full_name,
        email=user.email,
        organisation=user.organisation.name,
    )
    return problems


def set_password(session: Session, svc: Services, user: User, password: str) -> None:
    """Store the argon2id hash of *password* (already checked against the policy).

    Every reset link still unused stops working: it was asked for before this password was
    chosen, so whoever reads the mailbox (or an old mail) must not override the new choice.
    The MFA enrolment link of a manager's reset is left alone here: a password change from
    "Mon compte" was made by someone who proved the password, the second factor and the
    password again, so the link's pair (mailbox + password) is not weakened by it. A reset by
    e-mail does weaken it, and `complete_password_reset` voids that link too.
    """
    user.password_hash = svc.argon2.hash(password)
    user.password_changed_at = utcnow()
    void_tokens(session, user, TokenPurpose.PASSWORD_RESET)


@dataclass(frozen=True)
class PasswordReset:
    """What a password reset by e-mail swept away besides the old password."""

    api_tokens_revoked: int
    mfa_enrolment_voided: bool


def complete_password_reset(
    session: Session, svc: Services, user: User, password: str, ctx: audit.Context
) -> PasswordReset:
    """Set the password chosen from a reset link and sweep what a compromise may have left.

    A reset is the recovery step after a compromise, so it ends every session, revokes every
    API token and voids the MFA enrolment link of a pending manager's reset: that link asks for
    the password as a second proof besides the mailbox, and a reset by e-mail has just handed
    the password to whoever reads the mailbox. The person then asks the manager for a new MFA
    reset. The caller has consumed the reset token and commits.
    """
    set_password(session, svc, user, password)
    revoke_user_sessions(session, user.id)
    voided = void_tokens(session, user, TokenPurpose.MFA_ENROLMENT)
    audit.record(
        session,
        AuditAction.AUTH_PASSWORD_RESET,
        actor=user.audit_actor,
        context=ctx,
        details={"mfa_enrolment_link_voided": True} if voided else None,
    )
    revoked = api_tokens.revoke_all_tokens(
        session, user, actor=user.audit_actor, ctx=ctx, reason="password_reset"
    )
    return PasswordReset(api_tokens_revoked=revoked, mfa_enrolment_voided=bool(voided))


def replace_recovery_codes(session: Session, user: User) -> list[str]:
    """Discard the old recovery codes and return ten new ones (shown once)."""
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = totp.new_recovery_codes()
    for code in codes:
        session.add(RecoveryCode(user_id=user.id, code_digest=totp.recovery_code_digest(code)))
    return codes


# A secret shown on the QR code page waits for its first code in the server-side session, a
# database row that outlives an abandoned page (and, on SQLite, whose old versions linger in
# the file and its WAL): it is sealed there like an enrolled one, bound to the account and to
# this use, so that nothing but the page itself ever holds it in clear.
_PENDING_TOTP_CONTEXT = "pending-totp:"


def new_pending_totp_secret(svc: Services, user_id: str) -> tuple[str, str]:
    """A new TOTP secret for *user_id* and its sealed form, the only one the session may keep."""
    secret = totp.new_secret()
    return secret, svc.secret_box.seal(secret, _PENDING_TOTP_CONTEXT + user_id)


def open_pending_totp_secret(svc: Services, sealed: object, user_id: str) -> str | None:
    """The secret sealed by `new_pending_totp_secret` for *user_id*, or None.

    None too for a value sealed otherwise, or kept in clear by an earlier version: the caller
    then starts a new enrolment rather than trust it.
    """
    if not isinstance(sealed, str):
        return None
    try:
        return svc.secret_box.open(sealed, _PENDING_TOTP_CONTEXT + user_id)
    except (ValueError, InvalidTag):
        return None


def enrol_totp(session: Session, svc: Services, user: User, secret: str, code: str) -> bool:
    """Store *secret* for *user* if *code* proves the app holds it; the code is then spent."""
    step = totp.matching_step(secret, code)
    if step is None:
        return False
    user.totp_secret = svc.secret_box.seal(secret, user.id)
    user.totp_last_step = step
    user.mfa_reset_at = None
    return True


def remaining_recovery_codes(session: Session, user: User) -> int:
    """How many unused recovery codes *user* has."""
    return int(
        session.execute(
            sa.select(sa.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        ).scalar_one()
    )


def reauthenticate_for_enrolment(
    session: Session, svc: Services, user: User, password: str, ctx: audit.Context
) -> Reauthentication:
    """`reauthenticate` before enrolling a new authenticator from an MFA-reset link; commits
    either way (a failure and its row outlive the page, a success clears the throttle)."""
    result = reauthenticate(session, svc, user, password, ctx, "mfa_enrolment_link")
    session.commit()
    return result


def log_out(
    session: Session, user: User, ctx: audit.Context, *, via_provider: bool = False
) -> None:
    """Record that *user* logs out (and is sent to end the ProConnect session too, when
    *via_provider*); commits (the caller then ends the session)."""
    audit.record(
        session,
        AuditAction.AUTH_LOGOUT,
        actor=user.audit_actor,
        context=ctx,
        details={"provider": "ProConnect"} if via_provider else None,
    )
    session.commit()


def send_password_reset(
    session: Session,
    svc: Services,
    email: str,
    ctx: audit.Context,
    *,
    mail_body: Callable[[str], str],
) -> None:
    """E-mail a reset link (30 min) if *email* is an active account's; silent otherwise.

    The token and its row are committed before the mail, whose body *mail_body* writes for the
    raw token. A mail outage must not answer differently from an unknown address (a 500 would
    tell that the account exists): the failure is logged by id and audited, and returns as
    usual.
    """
    user = find_user_by_email(session, email)
    if user is None or user.status != AccountStatus.ACTIVE:
        return
    raw = issue_token(session, user, TokenPurpose.PASSWORD_RESET)
    audit.record(
        session, AuditAction.AUTH_PASSWORD_RESET_REQUESTED, actor=user.audit_actor, context=ctx
    )
    session.commit()
    if not deliver(
        svc.mailer,
        user.email,
        "Fil'R : réinitialisation de votre mot de passe",
        mail_body(raw),
        what="password reset mail",
        about=f"user {user.id}",
    ):
        audit.record(
            session,
            AuditAction.AUTH_PASSWORD_RESET_REQUESTED,
            actor=user.audit_actor,
            context=ctx,
            outcome=Outcome.FAILURE,
            details={"error": "mail"},
        )
        session.commit()


def reset_password(
    session: Session,
    svc: Services,
    user: User,
    token: UserToken,
    password: str,
    ctx: audit.Context,
    *,
    mail_body: Callable[[PasswordReset], str],
) -> PasswordReset | None:
    """Spend the reset *token* and `complete_password_reset`, commit, then mail the notice.

    None (nothing done) when the token was already spent.
    """
    if not consume_token(session, token):
        return None
    done = complete_password_reset(session, svc, user, password, ctx)
    session.commit()
    svc.mailer.send(user.email, "Fil'R : votre mot de passe a été modifié", mail_body(done))
    return done


def set_activation_password(session: Session, svc: Services, user: User, password: str) -> None:
    """First step of an activation: the pending account's password; commits."""
    set_password(session, svc, user, password)
    session.commit()


def activate_with_second_factor(
    session: Session, user: User, ctx: audit.Context, *, details: dict[str, str] | None = None
) -> list[str]:
    """A second factor is now in place: activate a pending account, replace the recovery codes
    (returned, shown once), end the account's sessions and record it; the caller commits.

    The one way an account becomes active, by the web's enrolment and by `filr users create`.
    """
    first_activation = user.status == AccountStatus.PENDING
    if first_activation:
        user.status = AccountStatus.ACTIVE
        user.activated_at = utcnow()
    codes = replace_recovery_codes(session, user)
    revoke_user_sessions(session, user.id)
    actor = user.audit_actor
    audit.record(session, AuditAction.AUTH_MFA_ENROLLED, actor=actor, context=ctx, details=details)
    if first_activation:
        audit.record(
            session, AuditAction.ACCOUNT_ACTIVATED, actor=actor, context=ctx, details=details
        )
    return codes


def complete_enrolment(
    session: Session,
    svc: Services,
    user: User,
    secret: str,
    code: str,
    token: UserToken,
    ctx: audit.Context,
) -> list[str] | None:
    """Enrol *secret* if *code* proves it and spend the activation or enrolment *token*: the
    account is active and logged in (`activate_with_second_factor`); commits and returns the
    new recovery codes. None for a wrong code or a spent token."""
    if not (enrol_totp(session, svc, user, secret, code) and consume_token(session, token)):
        return None
    codes = activate_with_second_factor(session, user, ctx)
    audit.record(
        session,
        AuditAction.AUTH_LOGIN_SUCCESS,
        actor=user.audit_actor,
        context=ctx,
        details={"via": "enrolment"},
    )
    session.commit()
    return codes


def verify_current_code(
    session: Session, svc: Services, user: User, code: str, ctx: audit.Context, purpose: str
) -> bool:
    """Check a TOTP code of the logged-in *user* before a sensitive change; commits a failure.

    The code is spent like at log-in (compare-and-set on the last step) and a failure counts
    as a second-factor failure, so a stolen session cannot use this page to guess codes.
    """
    secret = svc.secret_box.open(user.totp_secret, user.id) if user.totp_secret else None
    step = totp.matching_step(secret, code) if secret else None
    if step is not None:
        claimed = session.execute(
            sa.update(User)
            .where(
                User.id == user.id,
                sa.or_(User.totp_last_step.is_(None), User.totp_last_step < step),
            )
            .values(totp_last_step=step)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined] # DML returns a CursorResult
            return True
    audit.record(
        session,
        AuditAction.AUTH_MFA_FAILURE,
        actor=user.audit_actor,
        outcome=Outcome.FAILURE,
        context=ctx,
        details={"purpose": purpose, "reason": "bad_code" if step is None else "code_already_used"},
    )
    session.commit()
    return False
