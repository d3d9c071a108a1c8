"""The annual review in a real Chromium, keyboard only: an account manager reviews an
organisation of 30 accounts, confirms 28 and suspends 2; the national view shows 100 %."""

from __future__ import annotations

import secrets
import subprocess
import sys
from typing import Any

import pyotp
import pytest

from tests.browser.conftest import LiveServer, WatchedPage

pytestmark = pytest.mark.browser

PASSWORD = "lanterne violette sous la pluie 73"

# Accounts of the organisation written straight into the live server's database (one process
# instead of 29 `filr users create` runs): pending accounts are under review as active ones.
_ACCOUNTS = """
import sys
from portal import Settings, create_app
from portal.accounts.models import User, UserRole
from portal.db import db

org_id, names = sys.argv[1], sys.argv[2:]
app = create_app(Settings.from_env())
with app.app_context():
    for n, name in enumerate(names):
        user = User(organisation_id=org_id, email=f"revue{n}-{org_id[:8]}@example.org",
                    full_name=name, status="pending")
        user.role_rows = [UserRole(role="agent")]
        db.session.add(user)
    db.session.commit()
"""


def _provision(server: LiveServer, org_id: str, role: str, name: str) -> tuple[str, pyotp.TOTP]:
    email = f"{role}-{secrets.token_hex(4)}@example.org"
    account: dict[str, Any] = server.filr_json(
        "users", "create", "--org", org_id, "--email", email, "--name", name,
        "--role", role, "--password-stdin", "--with-totp", stdin=PASSWORD + "\n",
    )  # fmt: skip
    return email, pyotp.TOTP(account["totp_secret"])


def _log_in_with_the_keyboard(page: Any, email: str, totp: pyotp.TOTP) -> None:
    page.goto("/connexion")
    page.wait_for_function("document.activeElement?.id === 'email'")  # the page's autofocus
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type(totp.now())
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _focused_label(page: Any) -> str:
    return str(page.evaluate("document.activeElement?.getAttribute('aria-label') || ''"))


def test_a_manager_reviews_30_accounts_with_the_keyboard_only(
    live_server: LiveServer, watched_page: WatchedPage, chromium: Any
) -> None:
    page = watched_page.page
    # Given an organisation of 30 accounts: its manager, 27 agents and 2 who left
    org = live_server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", f"CD revue {secrets.token_hex(4)}",
    )  # fmt: skip
    org_id = str(org["id"])
    email, totp = _provision(live_server, org_id, "gestionnaire", "Gina Gestion")
    names = [f"Agent {n:02d}" for n in range(27)] + ["Yann Parti", "Zora Partie"]
    subprocess.run(
        [sys.executable, "-c", _ACCOUNTS, org_id, *names],
        env=live_server.env,
        check=True,
        timeout=60,
    )
    # And a review opened for it (as after an incident)
    live_server.filr("orgs", "review", org_id)

    # When the manager logs in and opens the review, with the keyboard only
    _log_in_with_the_keyboard(page, email, totp)
    watched_page.wait_for_axe()  # every page the journey loads is checked before it leaves
    page.goto("/gestion/revue")
    watched_page.wait_for_axe()
    assert "30 comptes sans décision sur 30" in page.inner_text("#review-summary")
    # Tab to the first "Confirmer" button
    for _ in range(200):
        page.keyboard.press("Tab")
        if _focused_label(page).startswith("Confirmer"):
            break
    # And confirms 28 accounts with Enter (focus comes back to the next account each time)
    for _ in range(28):
        assert _focused_label(page).startswith("Confirmer"), _focused_label(page)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_load_state("load")
        watched_page.wait_for_axe()
        page.wait_for_function("document.activeElement?.tagName === 'BUTTON'")
    # And suspends the last 2 (Tab from "Confirmer" to "Suspendre", then Enter)
    for name in ("Yann Parti", "Zora Partie"):
        assert _focused_label(page) == f"Confirmer le compte de {name}"
        page.keyboard.press("Tab")
        assert _focused_label(page) == f"Suspendre le compte de {name}"
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_load_state("load")
        watched_page.wait_for_axe()

    # Then every account has its decision
    assert "0 compte sans décision sur 30" in page.inner_text("#review-summary")
    assert page.locator("#review-table .fr-badge--success").count() == 28
    assert page.locator("#review-table .fr-badge--error").count() == 2
    watched_page.screenshot("review-done")
    watched_page.assert_clean()

    # And the national view shows 100 % for that organisation
    platform = live_server.filr_json(
        "orgs", "create", "--kind", "plateforme", "--name", f"Plateforme {secrets.token_hex(4)}"
    )
    admin_email, admin_totp = _provision(live_server, str(platform["id"]), "admin", "Ada Admin")
    context = chromium.new_context(base_url=live_server.url, locale="fr-FR")
    try:
        admin = context.new_page()
        admin.set_default_timeout(10_000)
        _log_in_with_the_keyboard(admin, admin_email, admin_totp)
        admin.goto("/revue-des-habilitations")
        row = admin.locator(f"#org-{org_id}")
        assert row.locator(".review-percent").inner_text().strip() == "100 %"
        assert "28" in row.inner_text() and "2" in row.inner_text()
    finally:
        context.close()
