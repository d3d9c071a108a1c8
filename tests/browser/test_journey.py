"""The foundation journey in a real Chromium: activate, enrol TOTP, log out, log in again."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import pyotp
import pytest

from tests.browser.conftest import LiveServer, WatchedPage
from tests.support.services import body_of

pytestmark = pytest.mark.browser

GENERIC_LOGIN_ERROR = "Adresse électronique, mot de passe ou code incorrect."
PASSWORD = "lanterne violette sous la pluie 73"

# Inputs a user fills in (hidden CSRF fields need no label) that no <label> names.
_UNLABELLED_INPUTS = """
() => [...document.querySelectorAll("input, select, textarea")]
  .filter((el) => el.type !== "hidden")
  .filter((el) => el.labels.length === 0 && !el.getAttribute("aria-labelledby"))
  .map((el) => el.outerHTML)
"""


def _unique(prefix: str) -> str:
    # One server serves the whole session: every test brings its own organisation and e-mail.
    return f"{prefix}-{secrets.token_hex(4)}"


def _create_org(server: LiveServer) -> str:
    org = server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", _unique("Département du Pas-de-Calais"),
    )  # fmt: skip
    return str(org["id"])


def _provision_active_agent(server: LiveServer, name: str) -> tuple[str, pyotp.TOTP]:
    """An active agent created by the CLI with PASSWORD and a TOTP secret; (e-mail, TOTP)."""
    email = _unique(name.lower().replace(" ", ".")) + "@example.org"
    account: dict[str, Any] = server.filr_json(
        "users", "create", "--org", _create_org(server), "--email", email, "--name", name,
        "--role", "agent", "--password-stdin", "--with-totp", stdin=PASSWORD + "\n",
    )  # fmt: skip
    return email, pyotp.TOTP(account["totp_secret"])


def _activation_link(server: LiveServer, email: str) -> str:
    deadline = time.monotonic() + 10
    while not server.smtp.to(email) and time.monotonic() < deadline:
        time.sleep(0.05)
    body = body_of(server.smtp.last_to(email))
    match = re.search(r"http://\S+/activation/\S+", body)
    assert match, body
    return match.group(0)


def _log_in(page: Any, email: str, code: str) -> None:
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.fill("#code", code)
    page.click("#login-submit")


def _assert_dsfr_loaded(watched: WatchedPage) -> None:
    css = [status for url, status in watched.responses.items() if url.endswith("/dsfr.min.css")]
    assert css and set(css) == {200}, watched.responses
    # The DSFR sets the Marianne font on the body: the stylesheet applied, not only loaded.
    assert "Marianne" in watched.page.evaluate("getComputedStyle(document.body).fontFamily")
    assert watched.page.locator(".fr-header .fr-logo").is_visible()


def test_new_agent_activates_enrols_totp_logs_out_and_logs_in_with_a_code(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    page = watched_page.page
    name = "Camille Durand"
    # Given an organisation and a pending account created with the CLI (activation e-mail sent)
    email = _unique("camille.durand") + "@example.org"
    created = live_server.filr_json(
        "users", "create", "--org", _create_org(live_server), "--email", email,
        "--name", name, "--role", "agent",
    )  # fmt: skip
    assert created["status"] == "pending"
    link = _activation_link(live_server, email)
    assert link.startswith(live_server.url + "/activation/")

    # When the user opens the e-mailed link and chooses a password
    page.goto(link)
    _assert_dsfr_loaded(watched_page)
    watched_page.screenshot("activation")
    page.fill("#password", PASSWORD)
    page.fill("#confirmation", PASSWORD)
    page.click("#password-submit")
    page.wait_for_url("**/activation/authentification")

    # Then the TOTP enrolment page shows the QR code and the secret
    qr = page.locator(".portal-qr svg")
    assert qr.is_visible()
    box = qr.bounding_box()
    assert box is not None and box["width"] >= 100 and box["height"] >= 100
    secret = page.inner_text("#totp-secret").strip()
    totp = pyotp.TOTP(secret)
    watched_page.screenshot("totp-enrolment")

    # When the user confirms the code of the authenticator app
    page.fill("#code", totp.now())
    page.click("#totp-submit")

    # Then ten recovery codes are shown, and the user goes on to the home page
    codes = page.locator("#recovery-codes li")
    codes.first.wait_for()
    assert codes.count() == 10
    watched_page.screenshot("recovery-codes")
    page.click("#codes-done")
    page.wait_for_url(live_server.url + "/")
    assert name in page.inner_text("h1")
    watched_page.screenshot("home-after-activation")

    # When the user logs out
    page.click("#logout")
    page.wait_for_url("**/connexion")
    assert page.locator("#logout").count() == 0
    watched_page.screenshot("logged-out")

    # And logs in again with the next step's code: the enrolment code is spent (replay refused),
    # and the next step is always within the ±1 step tolerance
    _log_in(page, email, totp.at(time.time() + 30))

    # Then the home page greets the user by name
    page.wait_for_url(live_server.url + "/")
    assert name in page.inner_text("h1")
    assert page.locator("#logout").is_visible()
    watched_page.screenshot("home-after-login")
    _assert_dsfr_loaded(watched_page)
    # And no page of the journey logged an error or a CSP violation (but the known DSFR bug)
    watched_page.assert_clean()


def test_wrong_code_shows_the_generic_error_and_moves_focus_to_it(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    page = watched_page.page
    # Given an active account
    email, totp = _provision_active_agent(live_server, "Dominique Martin")
    now = time.time()
    accepted = {totp.at(now + 30 * drift) for drift in (-1, 0, 1, 2)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in accepted)

    # When the right password is sent with a wrong code
    page.goto("/connexion")
    _log_in(page, email, wrong)

    # Then the generic French message is shown, and keyboard focus is on it
    error = page.locator("#login-error")
    error.wait_for()
    assert GENERIC_LOGIN_ERROR in error.inner_text()
    assert error.get_attribute("role") == "alert"
    page.wait_for_function("document.activeElement?.id === 'login-error'")
    assert page.url.endswith("/connexion")
    watched_page.screenshot("wrong-code")

    # And every input of the page has a label
    assert page.evaluate(_UNLABELLED_INPUTS) == []
    _assert_dsfr_loaded(watched_page)
    watched_page.assert_clean()


def test_the_page_watch_reports_a_csp_violation(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    # Given a portal page under the CSP (no inline script)
    watched_page.page.goto("/connexion")
    watched_page.settle()
    # When an inline script is injected
    watched_page.page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.injected = 1'; document.body.append(s); }"
    )
    # Then the CSP blocks it and the watch used by the journey reports it
    with pytest.raises(AssertionError, match="CSP violation"):
        watched_page.assert_clean()
    assert watched_page.page.evaluate("window.injected") is None


def test_pages_raise_no_javascript_error(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    watched_page.page.goto("/connexion")
    watched_page.assert_clean()


def test_a_logged_in_user_can_log_out_on_a_phone_sized_screen(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    page = watched_page.page
    page.set_viewport_size({"width": 375, "height": 812})
    # Given a user logged in on a narrow screen
    email, totp = _provision_active_agent(live_server, "Sacha Petit")
    page.goto("/connexion")
    _log_in(page, email, totp.now())
    page.wait_for_url(live_server.url + "/")
    watched_page.settle()
    # When the user opens the header menu, if there is one
    menu = page.locator(".fr-header .fr-btn--menu")
    if menu.count() and menu.first.is_visible():
        menu.first.click()
    watched_page.screenshot("phone-header")
    # Then a "Se déconnecter" button is exposed (hidden elements have no accessible role)
    assert page.get_by_role("button", name="Se déconnecter").count() >= 1
