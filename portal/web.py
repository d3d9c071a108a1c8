"""Request-side helpers shared by the blueprints: audit context, current user, safe redirects."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import g, request, session
from flask_login import current_user

import audit
from portal.accounts.models import User
from portal.auth.sessions import PortalSession
from portal.text import header_text

# Set in the WSGI environ by the server (`portal.serving.PortalWorker`) when it sends each body
# chunk, `bytes` or buffer (`memoryview`), before asking for the next: a download then hands
# over the plaintext in a few reused buffers instead of a new `bytes` per segment.
SENDS_BUFFERS = "filr.server.sends_buffers"


def server_sends_buffers() -> bool:
    """Whether the server of this request sends each body chunk before asking for the next."""
    return request.environ.get(SENDS_BUFFERS) is True


def audit_context() -> audit.Context:
    """Source IP (after ProxyFix, i.e. from the trusted proxy only), user agent, request id."""
    return audit.Context(
        source_ip=request.remote_addr,
        user_agent=header_text(request.user_agent.string) or None,
        request_id=g.get("request_id"),
    )


def actor_of(user: User | None) -> audit.Actor:
    """The audit actor for *user* (None: anonymous)."""
    if user is None:
        return audit.SYSTEM
    return user.audit_actor


def the_user() -> User:
    """The logged-in, MFA-verified user (only call behind the deny-by-default gate)."""
    user = current_user._get_current_object()
    if not isinstance(user, User):
        raise RuntimeError("no authenticated user on this request")
    return user


def safe_next(target: str | None, default: str = "/") -> str:
    """Only same-site relative paths: no scheme, no host, no protocol-relative or backslash."""
    if not target or len(target) > 512:
        return default
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return default
    return target


# Session flag: the key policy's deadline has passed and this account holds no key; the gate
# opens only the enrolment pages and the log-out (portal.gate, portal.auth.keys.key_policy).
KEY_ENROLMENT_ONLY = "key_enrolment_only"


def portal_session() -> PortalSession:
    """The server-side session of the current request."""
    sess = session._get_current_object()  # type: ignore[attr-defined] # a werkzeug LocalProxy
    assert isinstance(sess, PortalSession)  # noqa: S101 - installed by create_app
    return sess


def password_problems_of_reauth(password: str, purpose: str) -> list[str]:
    """Re-authenticate the current user before a sensitive change; French problems if refused.

    A failure is audited and committed at once by the service (it must survive the page that
    shows it).
    """
    from portal.auth.services import reauthenticate
    from portal.container import services
    from portal.db import db

    result = reauthenticate(db.session, services(), the_user(), password, audit_context(), purpose)
    if result.ok:
        return []
    if result.retry_after is not None:
        return [
            "Trop de tentatives avec un mot de passe incorrect. "
            f"Réessayez dans {result.retry_after} secondes."
        ]
    return ["Le mot de passe actuel est incorrect."]
