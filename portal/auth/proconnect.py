"""Log-in through ProConnect, the State's identity federation for professionals (OpenID Connect).

No request, no flash. The flow (ProConnect's documentation for service providers,
`doc_fs/implementation_technique.md` of numerique-gouv/proconnect-documentation):

1. `start`: discovery, then the authorisation URL with `state`, `nonce` and PKCE (S256), built
   by Authlib's client; the three secrets wait in the server-side session.
2. `finish`: `state` compared, the code exchanged with the verifier, the ID token's signature
   checked against the provider's JWKS and its claims (iss, aud/azp, exp, iat, nonce, at_hash);
   the e-mail read from the ID token or from the userinfo endpoint (a signed JWT at ProConnect,
   checked like the ID token).
3. `resolve`: only existing accounts. The (issuer, sub) link finds the account; without one,
   the e-mail names an account that is linked only after its holder also logs in once with
   password and second factor (`link`). A change of e-mail at the provider moves nothing.
4. The second factor: an `amr` holding "mfa" (ProConnect's `resources/claim_amr.md`, asked
   for with the `claims` parameter) or an `acr` of eidas2/eidas3 (the eIDAS levels "renforcé"
   and "élevé", `doc_fi/fonctionnement_fca_fi/fca_niveau_eidas_fi.md`) is accepted; otherwise
   the portal asks its own (TOTP, recovery code or security key).
5. Log-out: the provider's `end_session_endpoint` with `id_token_hint`, `state` and the
   registered `post_logout_redirect_uri`.

Habilitation stays with the account manager: nothing the provider says changes an account.
"""

from __future__ import annotations

import binascii
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
import sqlalchemy as sa
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oidc.core import CodeIDToken
from cryptography.exceptions import InvalidTag
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, User
from portal.auth import keys
from portal.auth.models import FederatedIdentity
from portal.auth.throttle import account_key
from portal.container import Services
from portal.db import utcnow
from portal.settings import Settings

PROVIDER_NAME = "ProConnect"
CALLBACK_PATH = "/connexion/proconnect/retour"
POST_LOGOUT_PATH = "/connexion/proconnect/deconnexion"
# The round trip through the provider (and, for a first link, the password log-in) must end
# within this time; the authorisation code itself lives 30 s at ProConnect.
PENDING_LIFETIME_SECONDS = 600
METADATA_TTL_SECONDS = 3600
LEEWAY_SECONDS = 60
# Signatures ProConnect offers to its service providers besides HS256 (a shared secret the
# portal does not use): an unexpected "alg" (none, HS256 with the public key) is refused.
ALGORITHMS = ("RS256", "ES256", "PS256", "RS384", "ES384", "RS512", "ES512")
MFA_ACR = frozenset({"eidas2", "eidas3"})
MAX_ID_TOKEN = 16_384
_SEAL_CONTEXT = "proconnect-id-token:"
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered nonsense (its outage, not the person's)."""


class Refused(Exception):
    """The answer of the provider is not acceptable; *reason* is audited, never shown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def available(settings: Settings) -> bool:
    """ProConnect is configured."""
    return settings.proconnect_enabled


def callback_url(settings: Settings) -> str:
    """The redirect URI registered at ProConnect."""
    return settings.base_url + CALLBACK_PATH


def post_logout_url(settings: Settings) -> str:
    """The post-logout redirect URI registered at ProConnect."""
    return settings.base_url + POST_LOGOUT_PATH


def _issuer(settings: Settings) -> str:
    return settings.proconnect_issuer or ""


_cache_lock = threading.Lock()
_metadata_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _get_json(settings: Settings, url: str) -> dict[str, Any]:
    try:
        answer = requests.get(url, timeout=settings.proconnect_timeout_seconds)
        answer.raise_for_status()
        data = answer.json()
    except (requests.RequestException, ValueError) as e:
        raise ProviderUnavailable(f"{url}: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"{url}: not an object")
    return data


def metadata(settings: Settings) -> dict[str, Any]:
    """The provider's discovery document (cached an hour), its issuer checked."""
    url = settings.proconnect_discovery_url or (
        _issuer(settings) + "/.well-known/openid-configuration"
    )
    now = time.monotonic()
    with _cache_lock:
        cached = _metadata_cache.get(url)
    if cached and now - cached[0] < METADATA_TTL_SECONDS:
        return cached[1]
    data = _get_json(settings, url)
    # The document must be the configured issuer's (OpenID Connect Discovery §4.3).
    if data.get("issuer") != _issuer(settings):
        raise ProviderUnavailable("discovery: issuer differs from FILR_PROCONNECT_ISSUER")
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(data.get(endpoint), str):
            raise ProviderUnavailable(f"discovery: no {endpoint}")
    with _cache_lock:
        _metadata_cache[url] = (now, data)
    return data


def _key_set(settings: Settings, meta: dict[str, Any], *, force: bool = False) -> KeySet:
    url = meta["jwks_uri"]
    now = time.monotonic()
    with _cache_lock:
        cached = _jwks_cache.get(url)
    if cached and not force and now - cached[0] < METADATA_TTL_SECONDS:
        data = cached[1]
    else:
        data = _get_json(settings, url)
        with _cache_lock:
            _jwks_cache[url] = (now, data)
    try:
        return KeySet.import_key_set(data)  # type: ignore[arg-type] # a JWKS object
    except (JoseError, ValueError, KeyError, TypeError) as e:
        raise ProviderUnavailable(f"jwks: {type(e).__name__}") from None


def forget_cached_metadata() -> None:
    """Drop the cached discovery documents and key sets (tests, a key rotation by hand)."""
    with _cache_lock:
        _metadata_cache.clear()
        _jwks_cache.clear()


def _client(settings: Settings) -> OAuth2Session:
    return OAuth2Session(
        client_id=settings.proconnect_client_id,
        client_secret=settings.proconnect_client_secret,
        scope=settings.proconnect_scopes,
        redirect_uri=callback_url(settings),
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method's name
    )


@dataclass(frozen=True)
class Start:
    """Where to send the browser, and what waits in the server session until it comes back."""

    url: str
    pending: dict[str, Any]


def start(settings: Settings, next_url: str) -> Start:
    """The authorisation request (ProviderUnavailable if the discovery fails)."""
    meta = metadata(settings)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = generate_token(64)
    extra: dict[str, str] = {
        # ProConnect returns `amr` only when asked for (resources/claim_amr.md).
        "claims": json.dumps({"id_token": {"amr": {"essential": True}}}),
    }
    if settings.proconnect_acr_values:
        extra["acr_values"] = settings.proconnect_acr_values
    with _client(settings) as client:
        url, _ = client.create_authorization_url(
            meta["authorization_endpoint"],
            state=state,
            nonce=nonce,
            code_verifier=verifier,
            **extra,
        )
    return Start(
        url,
        {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": next_url,
            "since": int(time.time()),
        },
    )


@dataclass(frozen=True)
class Identity:
    """Who the provider says the person is, checked."""

    issuer: str
    subject: str
    email: str | None
    amr: tuple[str, ...]
    acr: str | None
    id_token: str

    @property
    def mfa_asserted(self) -> bool:
        """The provider asserts a multi-factor authentication."""
        return "mfa" in self.amr or (self.acr or "") in MFA_ACR


def _fresh(pending: object) -> dict[str, Any] | None:
    if not isinstance(pending, dict) or not isinstance(pending.get("since"), int):
        return None
    if not 0 <= time.time() - pending["since"] <= PENDING_LIFETIME_SECONDS:
        return None
    return pending


def _decode(
    settings: Settings, meta: dict[str, Any], token: str, what: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(claims, header) of a JWT signed by one of the provider's keys; Refused otherwise."""
    if len(token) > MAX_ID_TOKEN:
        raise Refused(f"{what}_too_long")
    offered = meta.get("id_token_signing_alg_values_supported") or list(ALGORITHMS)
    algorithms = [a for a in offered if a in ALGORITHMS] or list(ALGORITHMS)
    registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
    for force in (False, True):  # once more after a key rotation (a kid not yet known)
        keys = _key_set(settings, meta, force=force)
        try:
            decoded = jwt.decode(token, keys, registry=registry)
        except JoseError as e:
            if force or "key" not in type(e).__name__.lower():
                raise Refused(f"{what}_signature:{type(e).__name__}") from None
            continue
        except (ValueError, TypeError) as e:
            raise Refused(f"{what}_malformed:{type(e).__name__}") from None
        return dict(decoded.claims), dict(decoded.header)
    raise Refused(f"{what}_signature")  # pragma: no cover - the loop returns or raises


def _check_id_token(
    settings: Settings,
    claims: dict[str, Any],
    header: dict[str, Any],
    nonce: str,
    access_token: str | None,
) -> None:
    """The claims of OpenID Connect Core §3.1.3.7, each one refused by its own reason."""
    client_id = settings.proconnect_client_id or ""
    now = time.time()
    if claims.get("iss") != _issuer(settings):
        raise Refused("id_token_issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise Refused("id_token_audience")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise Refused("id_token_audience")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or exp < now - LEEWAY_SECONDS:
        raise Refused("id_token_expired")
    if not isinstance(iat, int | float) or iat > now + LEEWAY_SECONDS:
        raise Refused("id_token_issued_at")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise Refused("id_token_nonce")
    if not isinstance(claims.get("sub"), str) or not claims["sub"] or len(claims["sub"]) > 255:
        raise Refused("id_token_subject")
    # Authlib's own checks on top (azp, at_hash, amr's type, auth_time).
    params: dict[str, Any] = {"nonce": nonce, "client_id": client_id}
    if access_token:
        params["access_token"] = access_token
    try:
        CodeIDToken(claims, header, None, params).validate(now=int(now), leeway=LEEWAY_SECONDS)
    except JoseError as e:
        raise Refused(f"id_token_claims:{type(e).__name__}") from None


def _email_from_userinfo(
    settings: Settings, meta: dict[str, Any], access_token: str, subject: str
) -> str | None:
    """The e-mail of the userinfo endpoint: a JWT signed by the provider at ProConnect (checked
    like the ID token), or plain JSON; its `sub` must be the ID token's."""
    url = meta.get("userinfo_endpoint")
    if not isinstance(url, str):
        return None
    try:
        answer = requests.get(
            url,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=settings.proconnect_timeout_seconds,
        )
        answer.raise_for_status()
    except requests.RequestException as e:
        raise ProviderUnavailable(f"userinfo: {type(e).__name__}") from None
    if answer.headers.get("Content-Type", "").split(";")[0].strip() == "application/jwt":
        claims, _ = _decode(settings, meta, answer.text.strip(), "userinfo")
        if claims.get("iss") not in (None, _issuer(settings)):
            raise Refused("userinfo_issuer")
        aud = claims.get("aud")
        if aud is not None and settings.proconnect_client_id not in (
            aud if isinstance(aud, list) else [aud]
        ):
            raise Refused("userinfo_audience")
    else:
        try:
            claims = answer.json()
        except ValueError:
            raise ProviderUnavailable("userinfo: not JSON") from None
    if not isinstance(claims, dict) or claims.get("sub") != subject:
        raise Refused("userinfo_subject")
    email = claims.get("email")
    return email if isinstance(email, str) else None


def finish(settings: Settings, pending: object, args: dict[str, str]) -> Identity:
    """Check the provider's answer (the redirect's *args*) against the *pending* request.

    Refused for anything the person or an attacker could have caused (a stale or foreign
    state, a code refused, an ID token that fails a check); ProviderUnavailable for an outage.
    """
    request = _fresh(pending)
    if request is None:
        raise Refused("no_pending_request")
    state = args.get("state") or ""
    if not hmac.compare_digest(state.encode(), str(request.get("state", "")).encode()):
        raise Refused("bad_state")
    if args.get("error"):
        # An OAuth error code (RFC 6749 §4.1.2.1) is a word; any other text, which anyone can
        # put in this URL, stays out of the audit trail.
        error = args["error"]
        raise Refused("provider_error:" + (error if _ERROR_CODE.fullmatch(error) else "other"))
    code = args.get("code")
    if not code or len(code) > 2048:
        raise Refused("no_code")
    meta = metadata(settings)
    try:
        with _client(settings) as client:
            token = client.fetch_token(
                meta["token_endpoint"],
                code=code,
                code_verifier=request["verifier"],
                redirect_uri=callback_url(settings),
                timeout=settings.proconnect_timeout_seconds,
            )
    except OAuth2Error as e:
        raise Refused(f"token_refused:{e.error}"[:80]) from None
    except (requests.RequestException, ValueError) as e:
        raise ProviderUnavailable(f"token: {type(e).__name__}") from None
    raw = token.get("id_token")
    if not isinstance(raw, str):
        raise Refused("no_id_token")
    claims, header = _decode(settings, meta, raw, "id_token")
    access_token = token.get("access_token")
    _check_id_token(settings, claims, header, request["nonce"], access_token)
    email = claims.get("email")
    if not isinstance(email, str) and isinstance(access_token, str):
        email = _email_from_userinfo(settings, meta, access_token, claims["sub"])
    amr = claims.get("amr")
    acr = claims.get("acr")
    return Identity(
        issuer=_issuer(settings),
        subject=claims["sub"],
        email=email if isinstance(email, str) else None,
        amr=tuple(str(a) for a in amr) if isinstance(amr, list) else (),
        acr=acr if isinstance(acr, str) else None,
        id_token=raw,
    )


def provider_mfa_accepted(
    session: Session, settings: Settings, user: User, identity: Identity
) -> bool:
    """The provider's second factor stands for the portal's own.

    Not for an account that holds a security key and whose role must hold one
    (`FILR_WEBAUTHN_REQUIRED_ROLES`): the provider's "mfa" may be a code that a phishing page
    relays, the key is what that policy asks for, so such an account is sent to its key.
    """
    if not identity.mfa_asserted:
        return False
    required = {str(r) for r in user.roles} & settings.webauthn_required_roles
    return not (required and keys.available(settings) and keys.has_keys(session, user.id))


def record_refusal(
    session: Session, reason: str, ctx: audit.Context, *, actor: audit.Actor = audit.SYSTEM
) -> None:
    """Audit a refused or failed ProConnect log-in (no personal data in the details); commits."""
    audit.record(
        session,
        AuditAction.AUTH_LOGIN_FAILURE,
        actor=actor,
        context=ctx,
        outcome=Outcome.FAILURE,
        details={"via": "proconnect", "provider": PROVIDER_NAME, "reason": reason[:80]},
    )
    session.commit()


@dataclass(frozen=True)
class Resolution:
    """The account a checked identity leads to; `linked` False: the link is still to make."""

    user: User
    linked: bool


def resolve(session: Session, identity: Identity, ctx: audit.Context) -> Resolution | None:
    """The existing account of *identity*, or None (refused and audited); commits a refusal."""
    link = session.execute(
        sa.select(FederatedIdentity).where(
            FederatedIdentity.issuer == identity.issuer,
            FederatedIdentity.subject == identity.subject,
        )
    ).scalar_one_or_none()
    if link is not None:
        user = session.get(User, link.user_id)
        linked = True
    else:
        # Imported here: portal.auth.services imports this module's neighbours.
        from portal.auth.services import find_user_by_email

        email = identity.email or ""
        user = find_user_by_email(session, email) if 0 < len(email) <= 254 else None
        linked = False
        if user is None:
            record_refusal(session, "unknown_person", ctx)
            return None
        other = session.execute(
            sa.select(FederatedIdentity.id).where(
                FederatedIdentity.user_id == user.id,
                FederatedIdentity.issuer == identity.issuer,
            )
        ).first()
        if other is not None:
            # The account is linked to another identity: an e-mail address that moved at the
            # provider does not take it over.
            record_refusal(session, "linked_to_another_identity", ctx, actor=user.audit_actor)
            return None
    if user is None:
        record_refusal(session, "unknown_person", ctx)
        return None
    if user.status != AccountStatus.ACTIVE:
        record_refusal(session, f"account_{user.status}", ctx, actor=user.audit_actor)
        return None
    if not user.organisation.proconnect_enabled:
        record_refusal(session, "organisation_not_enabled", ctx, actor=user.audit_actor)
        return None
    return Resolution(user, linked)


def seal_id_token(svc: Services, identity: Identity, user_id: str) -> str:
    """The ID token as the server session may keep it (for the log-out's `id_token_hint`)."""
    return svc.secret_box.seal(identity.id_token, _SEAL_CONTEXT + user_id)


def open_id_token(svc: Services, sealed: object, user_id: str) -> str | None:
    """The ID token sealed by `seal_id_token`, or None."""
    if not isinstance(sealed, str):
        return None
    try:
        return svc.secret_box.open(sealed, _SEAL_CONTEXT + user_id)
    except (ValueError, InvalidTag, binascii.Error):  # tampered, or sealed otherwise
        return None


def pending_login(svc: Services, identity: Identity, user: User, next_url: str) -> dict[str, Any]:
    """What the server session keeps between the provider's answer and the local second
    factor or the first password log-in (never the ID token in clear)."""
    return {
        "user_id": user.id,
        "issuer": identity.issuer,
        "subject": identity.subject,
        "amr": list(identity.amr),
        "acr": identity.acr,
        "id_token": seal_id_token(svc, identity, user.id),
        "next": next_url,
        "since": int(time.time()),
    }


def fresh_pending(pending: object) -> dict[str, Any] | None:
    """*pending* (of `pending_login`) while it is fresh."""
    found = _fresh(pending)
    if found is None or not isinstance(found.get("user_id"), str):
        return None
    return found


def _details(pending: dict[str, Any], **more: str) -> dict[str, str]:
    details = {"via": "proconnect", "provider": PROVIDER_NAME}
    if pending.get("acr"):
        details["acr"] = str(pending["acr"])[:40]
    if pending.get("amr"):
        details["amr"] = ",".join(str(a) for a in pending["amr"])[:80]
    details.update(more)
    return details


def log_in_with_provider_mfa(
    session: Session, svc: Services, user: User, pending: dict[str, Any], ctx: audit.Context
) -> User:
    """Complete a log-in whose second factor the provider asserted; commits."""
    actor = user.audit_actor
    audit.record(
        session,
        AuditAction.AUTH_MFA_SUCCESS,
        actor=actor,
        context=ctx,
        details=_details(pending, factor="provider"),
    )
    return _succeed(session, svc, user, pending, ctx)


def _succeed(
    session: Session, svc: Services, user: User, pending: dict[str, Any], ctx: audit.Context
) -> User:
    session.execute(
        sa.update(FederatedIdentity)
        .where(
            FederatedIdentity.user_id == user.id,
            FederatedIdentity.issuer == pending["issuer"],
            FederatedIdentity.subject == pending["subject"],
        )
        .values(last_used_at=utcnow())
    )
    svc.throttle.reset(account_key(user.email))
    user.last_login_at = utcnow()
    audit.record(
        session,
        AuditAction.AUTH_LOGIN_SUCCESS,
        actor=user.audit_actor,
        context=ctx,
        details=_details(pending),
    )
    session.commit()
    return user


@dataclass(frozen=True)
class CodeOutcome:
    """Result of the local second factor after ProConnect: `user` on success."""

    user: User | None = None
    retry_after: int | None = None
    # The log-in may not go on (the account, its organisation or its link changed meanwhile).
    stale: bool = False


def _still_allowed(session: Session, user: User | None, pending: dict[str, Any]) -> bool:
    """What `resolve` found is still so: the account active, its organisation open to
    ProConnect, and the link of the pending identity in place (not removed by its holder nor
    by a second-factor reset meanwhile)."""
    if user is None or user.status != AccountStatus.ACTIVE:
        return False
    if not user.organisation.proconnect_enabled:
        return False
    return (
        session.execute(
            sa.select(FederatedIdentity.id).where(
                FederatedIdentity.user_id == user.id,
                FederatedIdentity.issuer == pending.get("issuer"),
                FederatedIdentity.subject == pending.get("subject"),
            )
        ).first()
        is not None
    )


def log_in_with_local_code(
    session: Session, svc: Services, pending: dict[str, Any], code: str, ctx: audit.Context
) -> CodeOutcome:
    """The provider asserted no second factor: check the account's TOTP or recovery code,
    throttled and capped like the password log-in's; commits."""
    from portal.auth.services import check_code, mfa_failures_capped

    user = session.get(User, pending["user_id"])
    if not _still_allowed(session, user, pending):
        record_refusal(
            session, "no_longer_allowed", ctx, actor=user.audit_actor if user else audit.SYSTEM
        )
        return CodeOutcome(stale=True)
    assert user is not None  # noqa: S101 - _still_allowed refused None
    actor = user.audit_actor
    limit = svc.settings.throttle_account_per_minute
    verdict = svc.throttle.attempt(account_key(user.email), limit)
    if not verdict.allowed:
        audit.record(
            session,
            AuditAction.AUTH_LOGIN_THROTTLED,
            actor=actor,
            context=ctx,
            outcome=Outcome.DENIED,
            details=_details(pending, scope="account"),
        )
        session.commit()
        return CodeOutcome(retry_after=verdict.retry_after)

    def fail(action: AuditAction, reason: str) -> CodeOutcome:
        audit.record(
            session,
            action,
            actor=actor,
            context=ctx,
            outcome=Outcome.FAILURE,
            details=_details(pending, reason=reason),
        )
        session.commit()
        return CodeOutcome()

    if mfa_failures_capped(session, user, svc.settings.mfa_failures_max):
        return fail(AuditAction.AUTH_LOGIN_THROTTLED, "mfa_failures_capped")
    failure = check_code(session, svc, user, code, actor, ctx, _details(pending))
    if failure is not None:
        return fail(*failure)
    return CodeOutcome(user=_succeed(session, svc, user, pending, ctx))


def link(session: Session, user: User, pending: object, ctx: audit.Context) -> bool:
    """After a password and second-factor log-in of *user*: make the link the browser's
    ProConnect log-in asked for, if it is fresh and names this very account; commits."""
    found = fresh_pending(pending)
    if found is None or found["user_id"] != user.id:
        return False
    session.add(
        FederatedIdentity(
            user_id=user.id,
            issuer=found["issuer"],
            subject=found["subject"],
            linked_at=utcnow(),
            last_used_at=utcnow(),
        )
    )
    try:
        session.flush()
    except IntegrityError:  # linked meanwhile (another browser): the first link stays
        session.rollback()
        return False
    audit.record(
        session,
        AuditAction.AUTH_PROCONNECT_LINKED,
        actor=user.audit_actor,
        context=ctx,
        details={"provider": PROVIDER_NAME},
    )
    session.commit()
    return True


def link_of(session: Session, user_id: str) -> FederatedIdentity | None:
    """The ProConnect link of *user_id*, if any."""
    return session.execute(
        sa.select(FederatedIdentity).where(FederatedIdentity.user_id == user_id).limit(1)
    ).scalar_one_or_none()


def unlink(session: Session, user: User, ctx: audit.Context) -> bool:
    """Remove *user*'s ProConnect link (the next ProConnect log-in links again after a password
    log-in); False if there was none; commits."""
    result = session.execute(
        sa.delete(FederatedIdentity).where(FederatedIdentity.user_id == user.id)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.rollback()
        return False
    audit.record(
        session,
        AuditAction.AUTH_PROCONNECT_UNLINKED,
        actor=user.audit_actor,
        context=ctx,
        details={"provider": PROVIDER_NAME},
    )
    session.commit()
    return True


@dataclass(frozen=True)
class Logout:
    """Where to send the browser to end the provider's session, and the state to expect."""

    url: str
    state: str


def end_session(svc: Services, session_data: object, user_id: str) -> Logout | None:
    """The provider's end-session URL for a session opened through ProConnect, or None (not
    such a session, no endpoint, or the provider unreachable: the local log-out is enough)."""
    if not isinstance(session_data, dict):
        return None
    id_token = open_id_token(svc, session_data.get("id_token"), user_id)
    if id_token is None:
        return None
    try:
        endpoint = metadata(svc.settings).get("end_session_endpoint")
    except ProviderUnavailable:
        return None
    if not isinstance(endpoint, str):
        return None
    state = secrets.token_urlsafe(32)
    query = urlencode(
        {
            "id_token_hint": id_token,
            "state": state,
            "post_logout_redirect_uri": post_logout_url(svc.settings),
        }
    )
    return Logout(endpoint + ("&" if "?" in endpoint else "?") + query, state)
