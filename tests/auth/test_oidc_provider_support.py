"""The OpenID provider the ProConnect tests will run against (tests/support/oidc.py) starts, and
answers an authorisation code flow with PKCE, state and nonce non-interactively. The portal's
own ProConnect client is not built yet (issue #18, part 2): this pins the test bed."""

from __future__ import annotations

import base64
import hashlib
import html
import http.cookiejar
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.oidc import oidc_provider

REDIRECT = "http://127.0.0.1:9/connexion/proconnect/retour"
CLIENT = {
    "client_id": "filr-test",
    "client_secret": secrets.token_urlsafe(32),
    "redirect_uris": [REDIRECT],
    "post_logout_redirect_uris": ["http://127.0.0.1:9/connexion"],
}
USERS = {
    "camille": {
        "sub": "sub-camille-1",
        "email": "camille@example.org",
        "given_name": "Camille",
        "usual_name": "Martin",
        "acr": "eidas1",
        "amr": ["pwd", "mfa"],
    }
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _follow_dev_interactions(start: str, login: str) -> str:
    """Drive the provider's development log-in and consent forms; the redirect to the client."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPCookieProcessor(jar))
    url, data = start, None
    for _ in range(12):
        try:
            request = urllib.request.Request(url, data=data)  # noqa: S310 - the loopback provider
            answer = opener.open(request, timeout=5)
            page = answer.read().decode()
            form = re.search(r'<form[^>]*action="([^"]+)"', page)
            assert form, page[:500]
            fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
            if 'name="login"' in page:
                fields.update(login=login, password="peu importe")
            url = urllib.parse.urljoin(url, html.unescape(form.group(1)))
            data = urllib.parse.urlencode(fields).encode()
        except urllib.error.HTTPError as redirect:
            location = redirect.headers["Location"]
            if location.startswith(REDIRECT):
                return str(location)
            url, data = urllib.parse.urljoin(url, location), None
    raise AssertionError("no redirect to the client")


@pytest.mark.slow
def test_the_test_provider_answers_a_code_flow_with_pkce_and_a_signed_id_token(
    tmp_path: Path,
) -> None:
    with oidc_provider(tmp_path / "oidc.log", CLIENT, USERS) as provider:
        meta = provider.discovery()
        assert meta["issuer"] == provider.issuer
        assert "S256" in meta["code_challenge_methods_supported"]
        verifier, state, nonce = (secrets.token_urlsafe(32) for _ in range(3))
        challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
        query = urllib.parse.urlencode(
            {
                "client_id": CLIENT["client_id"],
                "redirect_uri": REDIRECT,
                "response_type": "code",
                "scope": "openid email given_name usual_name",
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "claims": json.dumps({"id_token": {"email": None}}),
            }
        )
        back = _follow_dev_interactions(meta["authorization_endpoint"] + "?" + query, "camille")
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))
        assert params["state"] == state
        token_request = urllib.request.Request(  # noqa: S310 - the loopback provider
            meta["token_endpoint"],
            data=urllib.parse.urlencode(
                {
                    "grant_type": "authorization_code",
                    "code": params["code"],
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                    "client_id": CLIENT["client_id"],
                    "client_secret": CLIENT["client_secret"],
                }
            ).encode(),
        )
        with urllib.request.urlopen(token_request, timeout=5) as answer:  # noqa: S310 - loopback
            tokens = json.load(answer)
        with urllib.request.urlopen(meta["jwks_uri"], timeout=5) as answer:  # noqa: S310 - loopback
            keys = KeySet.import_key_set(json.load(answer))
        claims = jwt.decode(tokens["id_token"], keys).claims
        assert claims["iss"] == provider.issuer
        assert claims["aud"] == CLIENT["client_id"]
        assert claims["nonce"] == nonce
        assert claims["sub"] == "sub-camille-1"
        # acr/amr come from the provider's session, which its development log-in does not set:
        # the ProConnect MFA tests need the provider's own interaction (result.login.acr/amr).
        assert claims["email"] == "camille@example.org"
