"""The fiche de liaison journey in a real Chromium, with the keyboard only: a France Travail
adviser fills a bilatérale fiche for the SLAI of 62, which opens it, forwards it to a provider
it mandates and records OUI; the adviser sees "Acceptée". axe-core checks every page."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.browser.conftest import LiveServer, WatchedPage

pytestmark = pytest.mark.browser

PASSWORD = "carnet de liaison bleu sous la neige 58"
NOM, CAF = "Clavierseul", "7654321"


@dataclass
class Person:
    email: str
    name: str
    totp: pyotp.TOTP
    last_step: int = -1

    def code(self) -> str:
        """A code of a step not used yet (a code is accepted once; the server allows one step
        of drift, so a second log-in within 30 s takes the next step's code)."""
        step = max(int(time.time()) // 30, self.last_step + 1)
        self.last_step = step
        return self.totp.at(step * 30)


def _provision(server: LiveServer, org_id: str, name: str) -> Person:
    email = f"{name.lower().replace(' ', '.')}-{secrets.token_hex(4)}@example.org"
    account: dict[str, Any] = server.filr_json(
        "users", "create", "--org", org_id, "--email", email, "--name", name,
        "--role", "agent", "--password-stdin", "--with-totp", stdin=PASSWORD + "\n",
    )  # fmt: skip
    return Person(email, name, pyotp.TOTP(account["totp_secret"]))


def _tab_to(page: Any, selector: str, limit: int = 250) -> None:
    """Press Tab until *selector* has the focus (fails if the keyboard never reaches it)."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"the keyboard never reached {selector}")


def _type(page: Any, selector: str, text: str) -> None:
    _tab_to(page, selector)
    page.keyboard.type(text)


def _press(page: Any, selector: str, *keys: str) -> None:
    _tab_to(page, selector)
    for key in keys:
        page.keyboard.press(key)


def _log_in(watched: WatchedPage, server: LiveServer, person: Person) -> None:
    page = watched.page
    page.goto("/connexion")
    _type(page, "#email", person.email)
    _type(page, "#password", PASSWORD)
    _type(page, "#code", person.code())
    page.keyboard.press("Enter")
    page.wait_for_url(server.url + "/")
    watched.wait_for_axe()


def _log_out(watched: WatchedPage) -> None:
    watched.wait_for_axe()
    watched.page.click("#logout")
    watched.page.wait_for_url("**/connexion")
    watched.wait_for_axe()


def _pdf_matches_the_page(watched: WatchedPage, what: str) -> None:
    """Download the fiche's PDF from its page with the keyboard: pdftotext finds every value
    and notice and the page's digest in it; page 1 is kept as an image for review."""
    page = watched.page
    watched.wait_for_axe()
    with page.expect_download() as download:
        _press(page, "#pdf", "Enter")
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF-")
    text = subprocess.run(
        [_poppler("pdftotext"), "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True,
        check=True,
    ).stdout.decode()  # fmt: skip
    text = " ".join(text.replace("’", "'").split())
    digest = page.text_content("#fiche-empreinte")
    assert digest and re.fullmatch(r"[0-9A-F]{4}(-[0-9A-F]{4}){3}", digest)
    for expected in (
        NOM.upper(), "Zoé", CAF, "1234567A", "12/04/1990", "12 rue des Lilas", "62000 Arras",
        "zoe@example.org", "Faire face à des difficultés de logement",
        "Accéder à un moyen de transport", "Aucune information d'ordre économique et financière",
        "canal sécurisé Fil'R", "Fonds social européen", "Je soussigné(e)",
        "Délégué à la protection des données", f"empreinte {digest}",
    ):  # fmt: skip
        assert expected in text, (what, expected)
    image = watched.shots / f"pdf-{what}"
    subprocess.run(
        [_poppler("pdftoppm"), "-png", "-r", "60", "-f", "1", "-l", "1", "-", str(image)],
        input=pdf, check=True,
    )  # fmt: skip
    assert Path(f"{image}-1.png").stat().st_size > 5000


def _poppler(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"`{name}` is missing (Debian package poppler-utils)"
    return path


def _open(watched: WatchedPage, path: str) -> None:
    watched.wait_for_axe()
    watched.page.goto(path)
    watched.settle()


def test_a_bilaterale_fiche_filled_with_the_keyboard_forwarded_and_accepted(
    live_server: LiveServer, watched_page: WatchedPage
) -> None:
    page = watched_page.page
    tag = secrets.token_hex(3)
    ft = live_server.filr_json(
        "orgs", "create", "--kind", "france_travail", "--territory", "62",
        "--name", f"{tag} France Travail Artois",
    )  # fmt: skip
    slai = live_server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", f"{tag} SLAI Pas-de-Calais",
    )  # fmt: skip
    provider = live_server.filr_json(
        "orgs", "create", "--kind", "prestataire", "--departement", "62",
        "--name", f"{tag} Asso Insertion",
    )  # fmt: skip
    adviser = _provision(live_server, ft["id"], "Nadia Conseillere")
    agent = _provision(live_server, slai["id"], "Claire Agente")
    referent = _provision(live_server, provider["id"], "Paul Referent")

    # The adviser fills the form with the keyboard only
    _log_in(watched_page, live_server, adviser)
    _open(watched_page, "/fiches/nouvelle")
    _press(page, "#nouvelle-liaison-bilaterale-62", "Enter")
    page.wait_for_url("**/fiches/nouvelle/liaison-bilaterale?espace=62")
    watched_page.settle()
    assert "Aucune information d'ordre économique" in page.inner_text("#notice-economique")
    _type(page, "#destinataire", f"{tag} SLAI")
    _type(page, "#champ-date_fiche", "01/12/2026")
    _press(page, "#champ-structure_prescriptrice", "Space")
    _type(page, "#champ-prescripteur", "Nadia")
    _type(page, "#champ-slai", f"{tag} SLAI")
    _press(page, "#champ-suivi", "ArrowRight")  # the second choice: a mandated referent
    _type(page, "#champ-structure_mandatee", f"{tag} Asso")
    _type(page, "#champ-demandeur", NOM)
    _type(page, "#champ-demandeur-prenom", "Zoé")
    _type(page, "#champ-date_naissance", "12/04/1990")
    _type(page, "#champ-adresse", "12 rue des Lilas")
    _type(page, "#champ-adresse-code_postal", "62000")
    _type(page, "#champ-adresse-commune", "Arras")
    _press(page, "#champ-consentement_numerique", "Space")
    _type(page, "#champ-email", "zoe@example.org")
    _type(page, "#champ-identifiant_ft", "1234567A")
    _type(page, "#champ-identifiant_caf", CAF)
    _press(page, "#champ-situation_famille", "Space")
    _type(page, "#champ-enfants_a_charge", "2")
    _press(page, "#champ-brsa", "Space")
    _press(page, "#champ-rqth", "ArrowRight")
    _press(page, "#champ-freins-logement", "Space")
    _press(page, "#champ-freins-transport", "Space")
    _press(page, "#champ-attestation_signee", "Space")
    watched_page.screenshot("fiche-filled")
    watched_page.wait_for_axe()
    _press(page, "#save", "Enter")
    page.wait_for_url("**/fiches/*")
    watched_page.settle()
    assert page.is_visible("#send"), page.inner_text("main")[:2000]
    fiche_id = page.url.rsplit("/", 1)[-1]
    watched_page.wait_for_axe()
    _press(page, "#send", "Enter")
    page.wait_for_selector("#send-modal-confirm", state="visible")
    with page.expect_navigation():
        _press(page, "#send-modal-confirm", "Enter")
    watched_page.settle()
    assert page.text_content("#fiche-etat") == "Envoyée"
    _log_out(watched_page)

    # The SLAI of 62 finds it in its inbox, opens it, forwards it, records OUI
    _log_in(watched_page, live_server, agent)
    _open(watched_page, "/fiches")
    assert NOM.upper() in page.inner_text("#fiches")
    _press(page, f"a[href='/fiches/{fiche_id}']", "Enter")
    page.wait_for_url(f"**/fiches/{fiche_id}")
    watched_page.settle()
    assert page.text_content("#fiche-etat") == "Reçue"
    assert CAF in page.inner_text("main")
    _type(page, "#transmission-provider", f"{tag} Asso")
    with page.expect_navigation():
        _press(page, "#forward", "Enter")
    watched_page.settle()
    assert f"Transmise à {tag} Asso Insertion" in page.inner_text("#historique")
    watched_page.wait_for_axe()
    _press(page, "#decision-entree_accompagnement-0", "Space")
    _type(page, "#decision-date_decision", "08/12/2026")
    with page.expect_navigation():
        _press(page, "#decide", "Enter")
    watched_page.settle()
    assert page.text_content("#fiche-etat") == "Acceptée"
    assert "OUI" in page.inner_text("main")
    _pdf_matches_the_page(watched_page, "slai")
    _log_out(watched_page)

    # The provider sees the fiche it was forwarded
    _log_in(watched_page, live_server, referent)
    _open(watched_page, f"/fiches/{fiche_id}")
    assert NOM.upper() in page.inner_text("h1")
    _pdf_matches_the_page(watched_page, "referent")
    _log_out(watched_page)

    # The adviser sees "Acceptée" and to whom it was forwarded
    _log_in(watched_page, live_server, adviser)
    _open(watched_page, "/fiches?boite=envoyees")
    assert "Acceptée" in (page.text_content("#fiches") or "")
    _open(watched_page, f"/fiches/{fiche_id}")
    assert page.text_content("#fiche-etat") == "Acceptée"
    assert f"Transmise à {tag} Asso Insertion" in page.inner_text("#historique")
    _pdf_matches_the_page(watched_page, "adviser")
    watched_page.screenshot("adviser-sees-accepted")
    watched_page.assert_clean()
