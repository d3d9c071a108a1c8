"""Security keys in a real Chromium, with its virtual authenticator (DevTools protocol `WebAuthn`):
enrol a key, log out, log in with it; another key, and a page of another origin, are refused."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.hashes import SHA256

from tests.browser.conftest import LiveServer, WatchedPage, serve
from tests.browser.test_journey import PASSWORD, _log_in, _provision_active_agent
from tests.support.services import SmtpSink

pytestmark = pytest.mark.browser

KEY_ERROR = "#key-error"


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, smtp_session: SmtpSink
) -> Iterator[LiveServer]:
    """The portal at http://localhost:<port>: an RP id must be a domain name, not an address."""
    with serve(tmp_path_factory.mktemp("keys"), smtp_session, host_name="localhost") as server:
        yield server


def _virtual_authenticator(page: Any) -> tuple[Any, str]:
    """A CTAP2 platform authenticator with resident keys and user verification (PIN passed)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, str(added["authenticatorId"])


def _enrol_key(page: Any, totp: Any, name: str) -> None:
    page.goto("/compte/cles")
    page.fill("#current", PASSWORD)
    # The log-in spent the current step: the next one is within the ±1 tolerance.
    page.fill("#code", totp.at(time.time() + 30))
    page.fill("#name", name)
    page.click("#key-enrol-start")
    page.wait_for_url("**/compte/cles")
    with page.expect_navigation():
        page.click("#key-action")
    assert page.locator("#security-keys").count() == 1, page.inner_text("main")


def _log_in_with_password_only(page: Any, email: str) -> None:
    page.goto("/connexion")
    _log_in(page, email, "")
    page.wait_for_url("**/connexion/cle")


def _other_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(der).decode()


def _enrolled_account(live_server: LiveServer, watched_page: WatchedPage) -> tuple[str, Any, Any]:
    """An agent who enrolled a key on the page's virtual authenticator; (e-mail, cdp, id)."""
    page = watched_page.page
    email, totp = _provision_active_agent(live_server, "Camille Clef")
    cdp, authenticator = _virtual_authenticator(page)
    page.goto("/connexion")
    _log_in(page, email, totp.now())
    page.wait_for_url(live_server.url + "/")
    _enrol_key(page, totp, "Clé du bureau")
    return email, cdp, authenticator


def test_agent_enrols_a_key_logs_out_and_logs_in_with_the_key(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    page = watched_page.page
    # Given an agent logged in with password and TOTP, with a virtual authenticator
    # When the agent enrols a key from "Mon compte"
    email, cdp, authenticator = _enrolled_account(live_server, watched_page)

    # Then it is listed by its name, never used yet, and the authenticator holds one credential
    row = page.locator("#security-keys tbody tr")
    assert row.count() == 1
    assert "Clé du bureau" in row.inner_text()
    assert "jamais" in row.inner_text()
    held = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(held) == 1 and held[0]["rpId"] == "localhost"
    watched_page.screenshot("key-enrolled")

    # When the agent logs out and logs in with the password only, then the key
    page.click("#logout")
    page.wait_for_url("**/connexion")
    _log_in_with_password_only(page, email)
    assert page.locator("#totp-fallback").is_visible()  # TOTP stays the fallback
    page.click("#key-action")

    # Then the agent is home, and the key's last use is shown
    page.wait_for_url(live_server.url + "/")
    assert page.locator("#logout").is_visible()
    page.goto("/compte/cles")
    assert "jamais" not in page.locator("#security-keys tbody tr").inner_text()
    signed = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert signed["credentials"][0]["signCount"] >= 1
    # And no page of the journey logged an error or a CSP violation (keys.js is a static file)
    watched_page.assert_clean()


def test_another_authenticator_claiming_the_same_credential_is_refused(
    live_server: LiveServer, watched_page: WatchedPage, chromium: Any
) -> None:
    # Given an agent with an enrolled key
    email, cdp, authenticator = _enrolled_account(live_server, watched_page)
    enrolled = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    credential = enrolled["credentials"][0]

    # When another authenticator (another private key) answers for the same credential id
    context = chromium.new_context(base_url=live_server.url, locale="fr-FR")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        other_cdp, other = _virtual_authenticator(page)
        other_cdp.send(
            "WebAuthn.addCredential",
            {
                "authenticatorId": other,
                "credential": {
                    "credentialId": credential["credentialId"],
                    "isResidentCredential": False,
                    "rpId": "localhost",
                    "privateKey": _other_private_key(),
                    "signCount": 100,
                },
            },
        )
        _log_in_with_password_only(page, email)
        page.click("#key-action")

        # Then the portal refuses its signature: an error, and no session
        page.locator(KEY_ERROR).wait_for(state="visible")
        assert "n'a pas été acceptée" in page.inner_text(KEY_ERROR)
        page.goto("/")
        assert "/connexion" in page.url
    finally:
        context.close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forged_assertion(credential: dict[str, Any], challenge: str, origin: str, count: int) -> str:
    """What a relay holding the credential's private key would send: an assertion signed by
    the right key, for the portal's RP id and challenge, from the page's *origin*."""
    client_data = json.dumps(
        {"type": "webauthn.get", "challenge": challenge, "origin": origin, "crossOrigin": False}
    ).encode()
    flags = 0x01 | 0x04  # user present, user verified
    auth_data = hashlib.sha256(b"localhost").digest() + bytes([flags]) + count.to_bytes(4, "big")
    key = serialization.load_der_private_key(base64.b64decode(credential["privateKey"]), None)
    signed = auth_data + hashlib.sha256(client_data).digest()
    if isinstance(key, ed25519.Ed25519PrivateKey):  # Chromium picks the first offered: EdDSA
        signature = key.sign(signed)
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signature = key.sign(signed, ec.ECDSA(SHA256()))
    raw_id = base64.b64decode(credential["credentialId"])
    return json.dumps(
        {
            "id": _b64url(raw_id),
            "rawId": _b64url(raw_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64url(client_data),
                "authenticatorData": _b64url(auth_data),
                "signature": _b64url(signature),
            },
            "clientExtensionResults": {},
        }
    )


def _relay(page: Any, credential: dict[str, Any], origin: str, count: int) -> Any:
    """The password step on the portal, then the key step answered with a forged assertion."""
    button = page.locator("#key-action")
    challenge = json.loads(button.get_attribute("data-options"))["challenge"]
    return page.request.post(
        "/connexion/cle",
        data=_forged_assertion(credential, challenge, origin, count),
        headers={
            "Content-Type": "application/json",
            "X-CSRFToken": button.get_attribute("data-csrf"),
        },
    )


def test_a_key_log_in_from_a_page_of_another_origin_fails(
    live_server: LiveServer, watched_page: WatchedPage, chromium: Any
) -> None:
    # Given an agent with an enrolled key
    email, cdp, authenticator = _enrolled_account(live_server, watched_page)
    credential = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})[
        "credentials"
    ][0]

    # When a page of another origin relays the log-in and asks the browser for the key
    other_origin = live_server.url.replace("://localhost", "://127.0.0.1")
    context = chromium.new_context(base_url=other_origin, locale="fr-FR")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        _virtual_authenticator(page)
        _log_in_with_password_only(page, email)
        page.click("#key-action")
        # Then the browser refuses to sign for the portal's RP id there
        page.locator(KEY_ERROR).wait_for(state="visible")
        assert "n'a pas répondu" in page.inner_text(KEY_ERROR)
    finally:
        context.close()

    # And the worst case: a relay holding the private key itself signs an assertion whose
    # client data names its own origin; the portal refuses it, and nobody is logged in
    context = chromium.new_context(base_url=live_server.url, locale="fr-FR")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        count = credential["signCount"] + 10
        _log_in_with_password_only(page, email)
        phishing = live_server.url.replace("://localhost", "://portail-filr.localhost")
        answer = _relay(page, credential, phishing, count)
        assert answer.status == 400
        assert "n'a pas été acceptée" in answer.json()["error"]
        page.goto("/")
        assert "/connexion" in page.url

        # (control: the same forgery with the portal's own origin is accepted, so the refusal
        # above is the origin's and nothing else's)
        _log_in_with_password_only(page, email)
        answer = _relay(page, credential, live_server.url, count + 1)
        assert answer.status == 200, answer.text()
        page.goto("/")
        assert page.locator("#logout").is_visible()
    finally:
        context.close()
