"""ProConnect in a real Chromium against a real OpenID provider (npm `oidc-provider`): the first
ProConnect log-in asks the password log-in once and links the account; log-out ends the
provider's session too; the next ProConnect log-in needs no password. axe-core checks every
page, the provider's included."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pyotp
import pytest

from portal.auth import proconnect
from tests.browser.conftest import LiveServer, WatchedPage, serve
from tests.browser.test_journey import PASSWORD, _log_in
from tests.support.oidc import free_port, oidc_provider
from tests.support.services import SmtpSink

pytestmark = pytest.mark.browser

CLIENT_ID = "filr-journey"
CLIENT_SECRET = secrets.token_urlsafe(32)
EMAIL = "camille.martin@cd62.example.fr"
USERS = {
    "camille": {
        "sub": "sub-camille-journey",
        "email": EMAIL,
        "given_name": "Camille",
        "usual_name": "Martin",
        "acr": "eidas1",
        "amr": ["pwd", "mfa"],
    }
}


@pytest.fixture(scope="module")
def issuer() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, smtp_session: SmtpSink, issuer: str
) -> Iterator[LiveServer]:
    """The portal configured for ProConnect, and the provider, which knows the portal's URLs."""
    root = tmp_path_factory.mktemp("proconnect")
    with serve(
        root,
        smtp_session,
        FILR_PROCONNECT_ISSUER=issuer,
        FILR_PROCONNECT_CLIENT_ID=CLIENT_ID,
        FILR_PROCONNECT_CLIENT_SECRET=CLIENT_SECRET,
    ) as server:
        client = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [server.url + proconnect.CALLBACK_PATH],
            "post_logout_redirect_uris": [server.url + proconnect.POST_LOGOUT_PATH],
        }
        port = int(issuer.rsplit(":", 1)[1])
        with oidc_provider(root / "oidc.log", client, USERS, port=port):
            yield server


def _at_provider(watched: WatchedPage, issuer: str) -> None:
    """Log in at the provider's page as Camille."""
    page = watched.page
    page.wait_for_url(issuer + "/interaction/**")
    watched.wait_for_axe()
    page.fill("#login", "camille")
    page.fill("#password", "mot de passe du fournisseur")
    page.click("#idp-submit")


def test_first_proconnect_log_in_links_the_account_then_proconnect_alone_logs_in(
    live_server: LiveServer, watched_page: WatchedPage, issuer: str
) -> None:
    page = watched_page.page
    # Given an organisation that opted in, and an account of it (created by the CLI)
    org = live_server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", "Département du Pas-de-Calais " + secrets.token_hex(3),
    )  # fmt: skip
    assert "connexion par ProConnect ouverte" in live_server.filr("orgs", "proconnect", org["id"])
    account = live_server.filr_json(
        "users", "create", "--org", org["id"], "--email", EMAIL, "--name", "Camille Martin",
        "--role", "agent", "--password-stdin", "--with-totp", stdin=PASSWORD + "\n",
    )  # fmt: skip
    totp = pyotp.TOTP(account["totp_secret"])

    # When Camille chooses ProConnect on the log-in page and logs in at the provider
    page.goto("/connexion")
    watched_page.wait_for_axe()
    page.click("#proconnect-login")
    _at_provider(watched_page, issuer)

    # Then the portal asks the password log-in once, to link the account
    page.wait_for_url("**/connexion")
    assert "Première connexion avec ProConnect" in page.inner_text("main")
    watched_page.screenshot("first-proconnect-log-in")
    _log_in(page, EMAIL, totp.now())
    page.wait_for_url(live_server.url + "/")
    assert "désormais relié" in page.inner_text("main")
    watched_page.screenshot("linked")

    # When Camille logs out: the provider's session ends too, and she comes back to the portal
    page.click("#logout")
    page.wait_for_url(issuer + "/session/end**")
    watched_page.wait_for_axe()
    page.click("#idp-logout")
    page.wait_for_url("**/connexion")
    assert "déconnecté(e) de Fil'R et de ProConnect" in page.inner_text("main")

    # And ProConnect alone logs her in the next time (the provider asserted "mfa")
    page.click("#proconnect-login")
    _at_provider(watched_page, issuer)
    page.wait_for_url(live_server.url + "/")
    assert "Camille Martin" in page.inner_text("h1")
    watched_page.screenshot("proconnect-log-in")
    watched_page.assert_clean()
