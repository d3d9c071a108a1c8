"""WebAuthn security keys and passkeys as the stronger second factor. No request, no flash.

The relying party is the portal's public URL (`FILR_BASE_URL`): its host is the RP id and its
scheme + host + port the only accepted origin, so an assertion a phishing page obtains (its
own origin in clientDataJSON, or another RP id hash) is refused even when relayed in real time
(W3C WebAuthn Level 3, §7.2 steps 9 to 15). User verification (PIN or biometrics) is required.
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, User
from portal.auth.models import SecurityKey
from portal.auth.throttle import account_key
from portal.container import Services
from portal.db import utcnow
from portal.settings import Settings

# A ceremony's challenge lives in the server session this long (the browser's own timeout is
# one minute; the rest is for a person looking for the key).
CHALLENGE_LIFETIME_SECONDS = 300
MAX_CREDENTIAL_JSON = 16_384
RP_NAME = "Fil'R"


def relying_party(settings: Settings) -> tuple[str, str]:
    """(RP id, origin) from `FILR_BASE_URL`."""
    parts = urlsplit(settings.base_url)
    return parts.hostname or "", f"{parts.scheme}://{parts.netloc}"


def available(settings: Settings) -> bool:
    """Keys are offered: enabled, and `FILR_BASE_URL` names a domain (browsers refuse an IP
    address as RP id, so http://127.0.0.1:8000 cannot; http://localhost:8000 can)."""
    host = relying_party(settings)[0]
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return settings.webauthn_enabled and bool(host)
    return False


def keys_of(session: Session, user_id: str) -> list[SecurityKey]:
    """The keys of *user_id*, oldest first."""
    return list(
        session.execute(
            sa.select(SecurityKey)
            .where(SecurityKey.user_id == user_id)
            .order_by(SecurityKey.created_at, SecurityKey.id)
        ).scalars()
    )


def has_keys(session: Session, user_id: str) -> bool:
    """Does *user_id* hold at least one key?"""
    found = session.execute(
        sa.select(SecurityKey.id).where(SecurityKey.user_id == user_id).limit(1)
    ).first()
    return found is not None


def remove_all_keys(session: Session, user_id: str) -> int:
    """Delete every key of *user_id* (an MFA reset, a revocation); the caller audits."""
    result = session.execute(sa.delete(SecurityKey).where(SecurityKey.user_id == user_id))
    return int(result.rowcount)  # type: ignore[attr-defined] # DML returns a CursorResult


@dataclass(frozen=True)
class Ceremony:
    """Options for the browser (JSON) and the pending challenge kept in the server session."""

    options_json: str
    pending: dict[str, Any]


def _pending(challenge: bytes, **extra: Any) -> dict[str, Any]:
    return {"challenge": bytes_to_base64url(challenge), "at": int(time.time()), **extra}


def _challenge_of(pending: object) -> bytes | None:
    """The challenge of a pending ceremony if it is still fresh."""
    if not isinstance(pending, dict):
        return None
    at, challenge = pending.get("at"), pending.get("challenge")
    if not isinstance(at, int) or not isinstance(challenge, str):
        return None
    if not 0 <= time.time() - at <= CHALLENGE_LIFETIME_SECONDS:
        return None
    return base64url_to_bytes(challenge)


def registration_ceremony(session: Session, settings: Settings, user: User, name: str) -> Ceremony:
    """Options to create a new credential for *user*; its existing keys are excluded."""
    rp_id, _ = relying_party(settings)
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=user.email,
        user_id=user.id.encode(),
        user_display_name=user.full_name,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(k.credential_id))
            for k in keys_of(session, user.id)
        ],
    )
    return Ceremony(options_to_json(options), _pending(options.challenge, name=name))


def authentication_ceremony(session: Session, settings: Settings, user_id: str) -> Ceremony:
    """Options to assert one of *user_id*'s keys (and only those)."""
    rp_id, _ = relying_party(settings)
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(k.credential_id))
            for k in keys_of(session, user_id)
        ],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return Ceremony(options_to_json(options), _pending(options.challenge, user_id=user_id))


def _credential(raw: str) -> dict[str, Any] | None:
    if len(raw) > MAX_CREDENTIAL_JSON:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _record_enrolment_failure(
    session: Session, user: User, ctx: audit.Context, reason: str
) -> None:
    audit.record(
        session,
        AuditAction.AUTH_KEY_FAILURE,
        actor=user.audit_actor,
        outcome=Outcome.FAILURE,
        context=ctx,
        details={"purpose": "enrolment", "reason": reason},
    )
    session.commit()


def enrol_key(
    session: Session,
    settings: Settings,
    user: User,
    pending: object,
    credential_json: str,
    ctx: audit.Context,
) -> SecurityKey | None:
    """Verify a new credential against the pending challenge and store it; commits.

    None (audited) when the challenge is stale, the origin or RP id is wrong, the user was not
    verified, or the credential is already enrolled.
    """
    challenge = _challenge_of(pending)
    credential = _credential(credential_json)
    rp_id, origin = relying_party(settings)
    reason = None
    verified = None
    if challenge is None:
        reason = "stale_challenge"
    elif credential is None:
        reason = "malformed"
    else:
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=origin,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError):
            reason = "bad_attestation"
    if verified is not None:
        credential_id = bytes_to_base64url(verified.credential_id)
        taken = session.execute(
            sa.select(SecurityKey.id).where(SecurityKey.credential_id == credential_id)
        ).first()
        if taken is not None:
            reason, verified = "already_enrolled", None
    if verified is None:
        _record_enrolment_failure(session, user, ctx, reason or "unknown")
        return None
    name = str(pending.get("name") if isinstance(pending, dict) else "")[:64] or "Clé de sécurité"
    key = SecurityKey(
        user_id=user.id,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=name,
        created_at=utcnow(),
    )
    session.add(key)
    try:
        session.flush()
    except IntegrityError:  # the same credential enrolled by a concurrent request: one wins
        session.rollback()
        _record_enrolment_failure(session, user, ctx, "already_enrolled")
        return None
    audit.record(
        session,
        AuditAction.AUTH_KEY_ENROLLED,
        actor=user.audit_actor,
        context=ctx,
        target=audit.Target("security_key", key.id),
        details={"aaguid": verified.aaguid, "user_verified": str(verified.user_verified)},
    )
    session.commit()
    return key


def remove_key(session: Session, user: User, key_id: str, ctx: audit.Context) -> bool:
    """Delete one of *user*'s own keys; False if it is not theirs (or gone); commits."""
    result = session.execute(
        sa.delete(SecurityKey).where(SecurityKey.id == key_id, SecurityKey.user_id == user.id)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.rollback()
        return False
    audit.record(
        session,
        AuditAction.AUTH_KEY_REMOVED,
        actor=user.audit_actor,
        context=ctx,
        target=audit.Target("security_key", key_id),
    )
    session.commit()
    return True


def log_in_with_key(
    session: Session, svc: Services, pending: object, credential_json: str, ctx: audit.Context
) -> User | None:
    """Second step of a log-in whose password was right: verify an assertion of one of the
    account's keys (user verified, origin and RP id of `FILR_BASE_URL`, sign counter); commits.

    A failure counts as a second-factor failure (the cap of `mfa_failures_capped` applies); a
    counter that does not grow is a clone warning: refused and audited as such.
    """
    from portal.auth.services import mfa_failures_capped  # services imports this module

    challenge = _challenge_of(pending)
    user_id = pending.get("user_id") if isinstance(pending, dict) else None
    user = session.get(User, user_id) if isinstance(user_id, str) else None
    if challenge is None or user is None or user.status != AccountStatus.ACTIVE:
        return None
    actor = user.audit_actor

    def fail(reason: str, action: AuditAction = AuditAction.AUTH_MFA_FAILURE) -> None:
        audit.record(
            session,
            action,
            actor=actor,
            outcome=Outcome.FAILURE,
            context=ctx,
            details={"reason": reason, "factor": "security_key"},
        )
        session.commit()

    if mfa_failures_capped(session, user, svc.settings.mfa_failures_max):
        fail("mfa_failures_capped", AuditAction.AUTH_LOGIN_THROTTLED)
        return None
    credential = _credential(credential_json)
    raw_id = credential.get("id") if credential else None
    key = (
        session.execute(
            sa.select(SecurityKey).where(
                SecurityKey.credential_id == raw_id, SecurityKey.user_id == user.id
            )
        ).scalar_one_or_none()
        if isinstance(raw_id, str) and len(raw_id) <= 1400
        else None
    )
    if key is None:
        fail("unknown_key")  # another key, or one of another account
        return None
    rp_id, origin = relying_party(svc.settings)
    try:
        # The counter is compared below, so that a clone is told apart from a bad signature.
        verified = verify_authentication_response(
            credential=credential,  # type: ignore[arg-type] # a dict, checked above
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=key.public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError):
        fail("bad_assertion")
        return None
    old = key.sign_count
    new = verified.new_sign_count
    # Authenticators without a counter always send 0 (passkeys synced between devices); any
    # other counter must grow, or two authenticators hold the same private key.
    if (new > 0 or old > 0) and new <= old:
        fail("sign_count_not_increasing", AuditAction.AUTH_KEY_CLONE_WARNING)
        return None
    # Compare-and-set: of two requests carrying assertions, one moves the counter.
    moved = session.execute(
        sa.update(SecurityKey)
        .where(SecurityKey.id == key.id, SecurityKey.sign_count == old)
        .values(sign_count=new, last_used_at=utcnow())
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        fail("sign_count_race", AuditAction.AUTH_MFA_REPLAY)
        return None
    audit.record(
        session,
        AuditAction.AUTH_KEY_SUCCESS,
        actor=actor,
        context=ctx,
        target=audit.Target("security_key", key.id),
    )
    svc.throttle.reset(account_key(user.email))
    user.last_login_at = utcnow()
    audit.record(
        session,
        AuditAction.AUTH_LOGIN_SUCCESS,
        actor=actor,
        context=ctx,
        details={"via": "security_key", **_provider_of(pending)},
    )
    session.commit()
    return user


def _provider_of(pending: object) -> dict[str, str]:
    """The identity provider that preceded the key (a ProConnect log-in), for the audit row."""
    provider = pending.get("provider") if isinstance(pending, dict) else None
    return {"provider": provider} if isinstance(provider, str) else {}


class KeyPolicy(StrEnum):
    """What `FILR_WEBAUTHN_REQUIRED_ROLES` asks of one account at log-in."""

    FREE = "free"  # no key required (or one is held)
    ENROL_SOON = "enrol-soon"  # required, none held, the deadline is ahead: told, not blocked
    ENROL_NOW = "enrol-now"  # required, none held, deadline passed: only enrolment is open


def key_policy(session: Session, settings: Settings, user: User, today: date) -> KeyPolicy:
    """The key policy for *user* on *today*."""
    required = {str(r) for r in user.roles} & settings.webauthn_required_roles
    if not available(settings) or not required or has_keys(session, user.id):
        return KeyPolicy.FREE
    deadline = settings.webauthn_enrol_deadline
    if deadline is not None and today < deadline:
        return KeyPolicy.ENROL_SOON
    return KeyPolicy.ENROL_NOW


def record_key_required(
    session: Session, user: User, policy: KeyPolicy, ctx: audit.Context
) -> None:
    """Audit that a log-in was sent to enrolment by the key policy; commits."""
    audit.record(
        session,
        AuditAction.AUTH_KEY_REQUIRED,
        actor=user.audit_actor,
        outcome=Outcome.DENIED if policy is KeyPolicy.ENROL_NOW else Outcome.SUCCESS,
        context=ctx,
        details={"policy": str(policy)},
    )
    session.commit()
