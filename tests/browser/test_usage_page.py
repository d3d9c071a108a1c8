"""The usage statistics in a real Chromium: reached from the account management page with the
keyboard, axe-core clean, the table a focusable scrollable region."""

from __future__ import annotations

import secrets

import pytest

from tests.browser.conftest import LiveServer, WatchedPage
from tests.browser.test_review_journey import _log_in_with_the_keyboard, _provision

pytestmark = pytest.mark.browser


def test_a_manager_opens_the_usage_statistics_from_account_management(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    page = watched_page.page
    # Given the account manager of a département
    org = live_server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", f"CD stats {secrets.token_hex(4)}",
    )  # fmt: skip
    email, totp = _provision(live_server, str(org["id"]), "gestionnaire", "Gina Gestion")
    _log_in_with_the_keyboard(page, email, totp)
    watched_page.wait_for_axe()
    # When it follows the link of the account management page
    page.goto("/gestion/comptes")
    watched_page.wait_for_axe()
    with page.expect_navigation():
        page.click("#usage-link")
    # Then the month's figures of its organisation, in a table with a caption
    assert page.locator(f"#org-{org['id']}").count() == 1
    assert "Utilisation par organisation" in page.inner_text("#usage caption")
    # And the table is a scrollable region reachable with the keyboard
    page.focus("#usage")
    assert page.evaluate("document.activeElement?.id") == "usage"
    watched_page.assert_clean()
