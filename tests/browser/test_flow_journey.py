"""The flow journey in a real Chromium: the département's technician deposits an invalid CGPEM,
reads the report, deposits a valid one; France Travail's technician downloads it."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import pyotp
import pytest

from portal.flows.core import FlowType
from portal.flows.core.sample import write_sample
from portal.flows.core.validator import paris_today
from tests.browser.conftest import LiveServer, WatchedPage
from tests.support.services import body_of

pytestmark = pytest.mark.browser

PASSWORD = "lanterne violette sous la pluie 73"


def _unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _technicien(server: LiveServer, org_id: str, name: str) -> tuple[str, pyotp.TOTP]:
    email = _unique(name.lower().replace(" ", ".")) + "@example.org"
    account: dict[str, Any] = server.filr_json(
        "users", "create", "--org", org_id, "--email", email, "--name", name,
        "--role", "technicien", "--password-stdin", "--with-totp", stdin=PASSWORD + "\n",
    )  # fmt: skip
    return email, pyotp.TOTP(account["totp_secret"])


def _log_in(watched: WatchedPage, server: LiveServer, email: str, code: str) -> None:
    page = watched.page
    page.goto("/connexion")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.fill("#code", code)
    page.click("#login-submit")
    page.wait_for_url(server.url + "/")
    watched.wait_for_axe()  # the home page is checked before the journey leaves it


def test_technicien_deposits_an_invalid_then_a_valid_cgpem_france_travail_downloads_it(
    live_server: LiveServer, watched_page: WatchedPage, tmp_path: Path
) -> None:
    page = watched_page.page
    # Given 62 and a France Travail structure covering it, each with a technician
    ft = live_server.filr_json(
        "orgs", "create", "--kind", "france_travail", "--territory", "62",
        "--name", _unique("France Travail Artois"),
    )  # fmt: skip
    cd = live_server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", _unique("CD du Pas-de-Calais"),
    )  # fmt: skip
    tech62, totp62 = _technicien(live_server, cd["id"], "Tom Technicien")
    tech_ft, totp_ft = _technicien(live_server, ft["id"], "Fanny Flux")
    reference = paris_today().replace(day=1)
    invalid, valid = tmp_path / "cgpem-faux.xml", tmp_path / "cgpem.xml"
    write_sample(
        invalid, FlowType.CGPEM, 30, "62", ["cgpem.nir_or_pe_id"], 3, date_reference=reference
    )
    write_sample(valid, FlowType.CGPEM, 30, "62", (), 4, date_reference=reference)

    # When the département's technician deposits the invalid file from the "Flux XML" menu
    _log_in(watched_page, live_server, tech62, totp62.now())
    page.click("#nav-flux")
    page.wait_for_url("**/flux/suivi")
    page.click("#new-flow")
    page.wait_for_url("**/flux/deposer**")
    page.select_option("#type", "CGPEM")
    page.set_input_files("#flow-file", str(invalid))
    page.click("#flow-submit")
    page.wait_for_url("**/flux/depots/*")
    # Then the report is on screen: refused, with the rule, line and field of the error
    assert "Fichier refusé : 1 erreur(s)" in page.inner_text("#flow-rejected")
    rows = page.locator("#report tbody tr")
    assert rows.count() >= 1
    assert "cgpem.nir_or_pe_id" in rows.first.inner_text()
    with page.expect_download() as info:
        page.click("#report-csv")
    assert b"cgpem.nir_or_pe_id" in Path(info.value.path()).read_bytes()
    watched_page.screenshot("refused")

    # When the technician deposits the corrected file
    page.goto("/flux/deposer?espace=62")
    page.set_input_files("#flow-file", str(valid))
    page.click("#flow-submit")
    page.wait_for_url("**/flux/depots/*")
    assert "Accusé de dépôt" in page.inner_text("#flow-valid")
    flow_url = page.url
    watched_page.screenshot("acknowledged")
    page.click("#logout")
    page.wait_for_url("**/connexion")

    # Then France Travail's technician was told once, and only of the valid file
    mails = live_server.smtp.to(tech_ft)
    assert len(mails) == 1 and valid.name not in body_of(mails[0])

    # When France Travail's technician opens the follow-up table and the flow
    _log_in(watched_page, live_server, tech_ft, totp_ft.now())
    page.goto(f"/flux/suivi?espace=62&mois={reference:%Y-%m}")
    row = page.locator("#follow-up tr[data-flow='CGPEM']")
    assert "déposé" in row.inner_text().lower()
    row.get_by_role("link", name="Voir").click()
    page.wait_for_url(flow_url)
    # And downloads the file
    with page.expect_download() as info:
        page.click("#download-1")
    digest = hashlib.sha256(Path(info.value.path()).read_bytes()).hexdigest()
    # Then the bytes are the valid file's, and the follow-up says it was downloaded
    assert digest == hashlib.sha256(valid.read_bytes()).hexdigest()
    page.goto(f"/flux/suivi?espace=62&mois={reference:%Y-%m}")
    assert (
        "téléchargé par l'autre partie"
        in page.inner_text("#follow-up tr[data-flow='CGPEM']").lower()
    )
    watched_page.screenshot("downloaded")
    watched_page.assert_clean()
