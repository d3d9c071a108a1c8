"""The verbs of API tokens: create (the secret is returned once), revoke, authenticate.

No request and no flash here: callers pass the session and the audit context.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import User
from portal.api.models import MAX_TOKEN_LIFETIME, ApiScope, ApiToken, ApiTokenScope
from portal.db import new_id, utcnow
from portal.mail import Mailer, MailError

log = logging.getLogger("portal.api")

# A recognisable prefix lets secret scanners (and people) spot a leaked token; 32 random bytes
# in base64url make the 43 characters after it.
SECRET_PREFIX = "filr_"  # noqa: S105 - a public marker, not a secret
SECRET_RE = re.compile(r"filr_[A-Za-z0-9_-]{43}")
DISPLAY_PREFIX_LENGTH = 8
DEFAULT_LIFETIME_DAYS = 90
MAX_ACTIVE_TOKENS = 20
# How often a token in use refreshes last_used_at: one write a minute, not one per request.
LAST_USED_EVERY = timedelta(minutes=1)


class TokenError(ValueError):
    """A token cannot be created (French message for people)."""


@dataclass(frozen=True)
class Grant:
    """What an API request authenticated by a token may do: whose token, which scopes."""

    token_id: str
    user: User
    scopes: frozenset[ApiScope]


def digest(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _target(token: ApiToken) -> audit.Target:
    return audit.Target("api-token", token.id)


def tokens_of(session: Session, user: User) -> list[ApiToken]:
    """Every token of *user*, newest first (revoked and expired ones too)."""
    return list(
        session.execute(
            sa.select(ApiToken)
            .where(ApiToken.user_id == user.id)
            .order_by(ApiToken.created_at.desc(), ApiToken.id)
        ).scalars()
    )


def create_token(
    session: Session,
    user: User,
    *,
    name: str,
    scopes: Iterable[str],
    lifetime_days: int,
    ctx: audit.Context,
) -> tuple[ApiToken, str]:
    """Create a token for *user*; returns it with its secret, which is never stored nor shown
    again (the caller commits)."""
    name = " ".join(name.split())
    if not 1 <= len(name) <= 100:
        raise TokenError("Le nom du jeton est obligatoire (100 caractères au plus).")
    try:
        wanted = frozenset(ApiScope(s) for s in scopes)
    except ValueError:
        raise TokenError("Portée inconnue.") from None
    if not wanted:
        raise TokenError("Choisissez au moins une portée.")
    if not 1 <= lifetime_days <= MAX_TOKEN_LIFETIME.days:
        raise TokenError(
            f"La durée de validité doit être comprise entre 1 et {MAX_TOKEN_LIFETIME.days} jours."
        )
    now = utcnow()
    active = session.execute(
        sa.select(sa.func.count())
        .select_from(ApiToken)
        .where(
            ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None), ApiToken.expires_at > now
        )
    ).scalar_one()
    if active >= MAX_ACTIVE_TOKENS:
        raise TokenError(
            f"Vous avez déjà {MAX_ACTIVE_TOKENS} jetons actifs : révoquez-en un avant d'en créer "
            "un autre."
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        id=new_id(),
        user_id=user.id,
        name=name,
        token_prefix=secret[len(SECRET_PREFIX) :][:DISPLAY_PREFIX_LENGTH],
        token_digest=digest(secret),
        created_at=now,
        expires_at=now + timedelta(days=lifetime_days),
    )
    token.scope_rows = [ApiTokenScope(scope=str(s)) for s in sorted(wanted)]
    session.add(token)
    session.flush()
    audit.record(
        session,
        AuditAction.API_TOKEN_CREATED,
        actor=user.audit_actor,
        context=ctx,
        target=_target(token),
        details={
            "name": name,
            "scopes": [str(s) for s in sorted(wanted)],
            "lifetime_days": lifetime_days,
        },
    )
    return token, secret


def create_token_and_mail(
    session: Session,
    mailer: Mailer,
    user: User,
    *,
    name: str,
    scopes: Iterable[str],
    lifetime_days: int,
    ctx: audit.Context,
    mail_body: Callable[[ApiToken], str],
) -> tuple[ApiToken, str]:
    """`create_token`, commit, then tell the owner by e-mail (a failure is only logged).

    As for a password change: the owner hears of a token it did not create. A refusal
    (TokenError) rolls back and propagates.
    """
    try:
        token, secret = create_token(
            session, user, name=name, scopes=scopes, lifetime_days=lifetime_days, ctx=ctx
        )
    except TokenError:
        session.rollback()
        raise
    session.commit()
    try:
        mailer.send(user.email, "Fil'R : un jeton d'accès à l'API a été créé", mail_body(token))
    except MailError:
        log.warning("token creation mail not delivered (user %s)", user.id)
    return token, secret


def revoke_own_token(session: Session, user: User, token_id: str, ctx: audit.Context) -> bool:
    """`revoke_token` and commit; False (nothing committed) for a token that is not *user*'s."""
    if not revoke_token(session, user, token_id, ctx):
        return False
    session.commit()
    return True


def revoke_token(session: Session, user: User, token_id: str, ctx: audit.Context) -> bool:
    """Revoke one of *user*'s own tokens; False if it is not one of them (the caller answers
    404). Revoking twice changes nothing (the caller commits)."""
    token = session.get(ApiToken, token_id) if len(token_id) == 32 else None
    if token is None or token.user_id != user.id:
        return False
    if token.revoked_at is None:
        _revoke(session, token, user.audit_actor, ctx, {"name": token.name})
    return True


def revoke_all_tokens(
    session: Session, user: User, *, actor: audit.Actor, ctx: audit.Context, reason: str
) -> int:
    """Revoke every usable token of *user* after an account-recovery step; returns how many.

    A password reset or an MFA reset follows a suspected compromise: a token created by whoever
    held the account would otherwise outlive the recovery, as a session would (OWASP ASVS 4.0.3,
    V3.3.3). One audit row per token, with *reason*, as for a revocation by its owner (the
    caller commits).
    """
    now = utcnow()
    usable = list(
        session.execute(
            sa.select(ApiToken)
            .where(
                ApiToken.user_id == user.id,
                ApiToken.revoked_at.is_(None),
                ApiToken.expires_at > now,
            )
            .order_by(ApiToken.created_at, ApiToken.id)
        ).scalars()
    )
    for token in usable:
        _revoke(session, token, actor, ctx, {"name": token.name, "reason": reason})
    return len(usable)


def _revoke(
    session: Session,
    token: ApiToken,
    actor: audit.Actor,
    ctx: audit.Context,
    details: dict[str, str],
) -> None:
    token.revoked_at = utcnow()
    audit.record(
        session,
        AuditAction.API_TOKEN_REVOKED,
        actor=actor,
        context=ctx,
        target=_target(token),
        details=details,
    )


def authenticate(session: Session, secret: str, ctx: audit.Context) -> Grant | None:
    """The grant of a bearer token, or None: unknown, revoked, expired, or account not active.

    A known token refused is audited (a revoked token still in use is worth a look); an
    unknown one is not, so that garbage sent by anybody cannot fill the trail.
    """
    if not SECRET_RE.fullmatch(secret):
        return None
    token = session.execute(
        sa.select(ApiToken).where(ApiToken.token_digest == digest(secret))
    ).scalar_one_or_none()
    if token is None:
        return None
    user = session.get(User, token.user_id)
    now = utcnow()
    reason = None
    if token.revoked_at is not None:
        reason = "token_revoked"
    elif now >= token.expires_at:
        reason = "token_expired"
    elif user is None or not user.is_active:
        reason = "account_inactive"
    if reason is not None or user is None:
        audit.record(
            session,
            AuditAction.ACCESS_DENIED,
            actor=user.audit_actor if user is not None else audit.SYSTEM,
            context=ctx,
            outcome=Outcome.DENIED,
            target=_target(token),
            details={"reason": reason},
        )
        session.commit()
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        token.last_used_at = now
        session.commit()
    return Grant(token.id, user, token.scopes)
