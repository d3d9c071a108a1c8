"""The deposit journey in a real Chromium: a France Travail adviser deposits two files for the
département of Pas-de-Calais, its agent downloads them, the adviser sees the receipts."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.browser.conftest import LiveServer, WatchedPage
from tests.support.pdf import make_pdf
from tests.support.services import body_of

pytestmark = pytest.mark.browser

PASSWORD = "lanterne violette sous la pluie 73"
MIB = 1024 * 1024
# Chromium's network emulation slows the uploads down to a rate at which the bars visibly move
# (on loopback a few MiB would otherwise arrive in one progress event).
UPLOAD_BYTES_PER_SECOND = 4 * MIB

# Records every value the upload bars take, by file name (the bars' aria-label names the file).
_WATCH_PROGRESS = """
() => {
  window.progressSeen = {};
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.target.tagName !== "PROGRESS") continue;
      const name = r.target.getAttribute("aria-label");
      (window.progressSeen[name] ||= []).push(r.target.value);
    }
  }).observe(document.getElementById("upload-list"),
             { subtree: true, attributes: true, attributeFilter: ["value"] });
}
"""


@dataclass(frozen=True)
class Person:
    """An account provisioned through the CLI."""

    email: str
    name: str
    totp: pyotp.TOTP


def _unique(prefix: str) -> str:
    # One server serves the whole session: every test brings its own organisations and e-mails.
    return f"{prefix}-{secrets.token_hex(4)}"


def _provision(server: LiveServer, org_id: str, name: str) -> Person:
    email = _unique(name.lower().replace(" ", ".")) + "@example.org"
    account: dict[str, Any] = server.filr_json(
        "users", "create", "--org", org_id, "--email", email, "--name", name,
        "--role", "agent", "--password-stdin", "--with-totp", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert account["status"] == "active"
    return Person(email, name, pyotp.TOTP(account["totp_secret"]))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Two real files of a few MiB: a PDF (a real one: its objects are checked) and a PNG."""
    folder = tmp_path / "a-deposer"
    folder.mkdir()
    pdf = folder / "fiches-semaine-47.pdf"
    pdf.write_bytes(make_pdf([b"<< >>"], streams={4: os.urandom(3 * MIB)}))
    png = folder / "scan-courrier.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(2 * MIB))
    return {"pdf": pdf, "png": png}


def _sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _log_in(watched: WatchedPage, server: LiveServer, person: Person, code: str) -> None:
    page = watched.page
    page.goto("/connexion")
    page.fill("#email", person.email)
    page.fill("#password", PASSWORD)
    page.fill("#code", code)
    page.click("#login-submit")
    page.wait_for_url(server.url + "/")
    assert person.name in page.inner_text("h1")
    watched.wait_for_axe()  # the home page is checked before the journey leaves it


def _log_out(watched: WatchedPage) -> None:
    watched.page.click("#logout")
    watched.page.wait_for_url("**/connexion")


def test_adviser_deposits_two_files_the_agent_downloads_them_and_the_adviser_sees_receipts(
    live_server: LiveServer, watched_page: WatchedPage, files: dict[str, Path]
) -> None:
    page = watched_page.page
    # Given a France Travail structure covering 62 with an adviser, and the SLAI of 62 with an
    # agent, provisioned through the CLI
    ft = live_server.filr_json(
        "orgs", "create", "--kind", "france_travail", "--territory", "62",
        "--name", _unique("France Travail Artois"),
    )  # fmt: skip
    slai = live_server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", _unique("SLAI du Pas-de-Calais"),
    )  # fmt: skip
    adviser = _provision(live_server, ft["id"], "Nadia Conseillere")
    agent = _provision(live_server, slai["id"], "Claire Agente")
    title = _unique("Fiches de liaison semaine 47")

    # When the adviser logs in with a TOTP code and fills in a new deposit for the SLAI of 62
    _log_in(watched_page, live_server, adviser, adviser.totp.now())
    page.goto("/depots/nouveau")
    page.select_option("#departement", "62")
    page.select_option("#category", "document")
    page.fill("#title", title)
    # The DSFR draws the box over the input: people click the label, so does the test
    page.click(f"label[for='recipient-{slai['id']}']")
    assert page.is_checked(f"#recipient-{slai['id']}")
    watched_page.screenshot("new-deposit")
    page.click("#create-deposit")
    page.wait_for_url("**/depots/*/fichiers")
    deposit_id = page.url.rsplit("/", 2)[-2]

    # And chooses two files of a few MiB in the file picker, on a throttled upload link
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": UPLOAD_BYTES_PER_SECOND,
    })  # fmt: skip
    page.evaluate(_WATCH_PROGRESS)
    started = time.monotonic()
    page.set_input_files("#file-input", [str(files["pdf"]), str(files["png"])])
    page.locator("#upload-list li").first.wait_for()
    watched_page.screenshot("uploading")
    uploaded = page.locator("#upload-list li[data-uploaded=true]")
    uploaded.nth(1).wait_for(timeout=60_000)
    upload_seconds = time.monotonic() - started
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1,
    })  # fmt: skip

    # Then each file has its bar, which moved through intermediate values up to 100
    assert uploaded.count() == 2
    for i in range(2):
        assert uploaded.nth(i).locator("progress").evaluate("(bar) => bar.value") == 100
    assert "Envoyé et chiffré." in page.inner_text("#upload-list")
    seen: dict[str, list[float]] = page.evaluate("window.progressSeen")
    assert set(seen) == {f"Progression de {files[k].name}" for k in ("pdf", "png")}
    for name, values in seen.items():
        assert values[-1] == 100, (name, values)
        assert any(0 < v < 100 for v in values), (name, values, upload_seconds)
    watched_page.screenshot("uploaded")

    # When the adviser sends the deposit and logs out
    page.click("#send-deposit")
    page.wait_for_url(f"**/depots/{deposit_id}")
    assert (page.text_content("#deposit-status") or "").strip() == "Disponible"
    watched_page.screenshot("sent")
    _log_out(watched_page)

    # Then the agent was told by e-mail, without the title
    mail = body_of(live_server.smtp.last_to(agent.email))
    assert f"{live_server.url}/depots/{deposit_id}" in mail and title not in mail

    # When the agent logs in, finds the deposit in the inbox and opens it
    _log_in(watched_page, live_server, agent, agent.totp.now())
    page.goto("/depots")
    link = page.locator(f"a[href='/depots/{deposit_id}']")
    assert link.inner_text().strip() == title
    watched_page.screenshot("inbox")
    link.click()
    page.wait_for_url(f"**/depots/{deposit_id}")

    # And downloads each file with its "Télécharger" button
    rows = page.locator("#files tbody tr")
    assert rows.count() == 2
    downloaded: dict[str, str] = {}
    for i in range(2):
        row = rows.nth(i)
        name = row.locator("td").first.inner_text().strip()
        with page.expect_download() as info:
            row.get_by_role("button", name="Télécharger").click()
        download = info.value
        assert download.suggested_filename == name
        downloaded[name] = _sha256(download.path())
    watched_page.screenshot("downloaded")

    # Then the bytes are the very bytes deposited
    assert downloaded == {path.name: _sha256(path) for path in files.values()}
    _log_out(watched_page)

    # When the adviser logs in again (next TOTP step: the first code is spent)
    _log_in(watched_page, live_server, adviser, adviser.totp.at(time.time() + 30))
    page.goto(f"/depots/{deposit_id}")

    # Then the acknowledgement shows the agent's download of each file
    receipts = page.locator("#receipts tbody tr")
    assert receipts.count() == 2
    lines = [receipts.nth(i).inner_text() for i in range(2)]
    assert all(agent.name in line for line in lines)
    assert {name for name in downloaded if any(name in line for line in lines)} == set(downloaded)
    watched_page.screenshot("receipts")
    # And no page of the journey logged an error or a CSP violation
    watched_page.assert_clean()


def test_an_agent_chooses_the_daily_digest_from_my_account(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    page = watched_page.page
    slai = live_server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", _unique("SLAI du Pas-de-Calais"),
    )  # fmt: skip
    agent = _provision(live_server, slai["id"], "Paul Resume")
    # Given a logged-in agent on "Mon compte"
    _log_in(watched_page, live_server, agent, agent.totp.now())
    page.goto("/compte")
    # When the agent follows the notifications link and chooses the daily digest
    page.click("#notification-preferences-link")
    page.wait_for_url("**/compte/notifications")
    assert page.is_checked("#mode-chaque-depot")
    page.click("label[for='mode-resume-quotidien']")
    page.click("#save-preferences")
    # Then the choice is saved and shown again
    page.wait_for_url("**/compte/notifications")
    assert "Vos préférences de notification ont été enregistrées." in page.inner_text("main")
    assert page.is_checked("#mode-resume-quotidien")
    watched_page.screenshot("notification-preferences")
    watched_page.assert_clean()


def test_withdrawing_a_deposit_asks_for_confirmation_in_a_dsfr_modal_under_the_csp(
    live_server: LiveServer, watched_page: WatchedPage, files: dict[str, Path]
) -> None:
    page = watched_page.page
    # Given an agent of 62 who sent a deposit to France Travail
    slai = live_server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", _unique("SLAI modale"),
    )  # fmt: skip
    ft = live_server.filr_json(
        "orgs", "create", "--kind", "france_travail", "--territory", "62",
        "--name", _unique("France Travail modale"),
    )  # fmt: skip
    agent = _provision(live_server, slai["id"], "Anne Retrait")
    _log_in(watched_page, live_server, agent, agent.totp.now())
    page.goto("/depots/nouveau")
    page.select_option("#departement", "62")
    page.fill("#title", _unique("A retirer"))
    page.click(f"label[for='recipient-{ft['id']}']")
    page.click("#create-deposit")
    page.wait_for_url("**/depots/*/fichiers")
    deposit_id = page.url.rsplit("/", 2)[-2]
    # (A keyboard user sees where the focus is on "Choisir des fichiers": the hidden input
    # passes its focus ring to the label drawn as a button.)
    page.keyboard.press("Tab")
    page.focus("#file-input")
    ring = "getComputedStyle(document.querySelector('label[for=file-input]')).outlineStyle"
    assert page.evaluate(ring) == "solid"
    page.set_input_files("#file-input", [str(files["pdf"])])
    page.locator("#upload-list li[data-uploaded=true]").first.wait_for(timeout=60_000)
    page.click("#send-deposit")
    page.wait_for_url(f"**/depots/{deposit_id}")
    # When the agent presses "Retirer le dépôt", the DSFR modal opens and states the consequence
    dialog = page.locator("#withdraw-modal")
    assert not dialog.is_visible()
    page.click("#withdraw")
    dialog.wait_for(state="visible")
    assert "ne peut pas être annulé" in dialog.inner_text()
    watched_page.screenshot("withdraw-modal")
    # And "Annuler" closes it with nothing withdrawn
    dialog.get_by_role("button", name="Annuler").click()
    dialog.wait_for(state="hidden")
    assert (page.text_content("#deposit-status") or "").strip() == "Disponible"
    # Then only the dialog's own button withdraws the deposit
    page.click("#withdraw")
    dialog.wait_for(state="visible")
    page.click("#withdraw-modal-confirm")
    page.wait_for_url(f"**/depots/{deposit_id}")
    assert (page.text_content("#deposit-status") or "").strip() in ("Retiré", "Détruit")
    watched_page.assert_clean()
