"""Who calls the API: the bearer token of the request (RFC 6750), never the session cookie."""

from __future__ import annotations

from flask import g, request

from portal.accounts.models import User
from portal.api import services as tokens
from portal.db import db
from portal.web import audit_context

# The blueprint whose requests are authenticated by token: no cookie, hence no CSRF either.
API_BLUEPRINT = "api"


def user_from_bearer_token() -> User | None:
    """The user of the request's `Authorization: Bearer` token, or None; the grant goes to `g`.

    Called by the request loader for every request routed to the API, so that the
    deny-by-default gate answers 401 to an API call without a valid token, whatever cookie
    comes with it.
    """
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    grant = tokens.authenticate(db.session, credentials.strip(), audit_context())
    if grant is None:
        return None
    g.api_grant = grant
    return grant.user


def current_grant() -> tokens.Grant | None:
    """The grant of the token that authenticated this request (None outside the API)."""
    grant = g.get("api_grant")
    return grant if isinstance(grant, tokens.Grant) else None
