"""The PDF of a fiche (issue 15, item 6): the screen's template in a print layout, every value
and notice in it (read back by `pdftotext`), the data-protection contacts of the département,
the reference and the digest that the page shows too, a tagged PDF/UA-1, rendered in memory,
audited, and 404 outside the fiche's parties, on the web and through the API."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader

from portal.fiches.display import RenderedBlock, Row
from portal.fiches.pdf import CONTACTS_TITLE, canonical_json, verification, with_contacts
from portal.fiches.protection import Contact, ContactsError, load_contacts
from portal.settings import Settings
from tests.api.conftest import assert_problem
from tests.conftest import audit_rows
from tests.factories import Account, Api
from tests.fiches.conftest import CAF, NOM, PRENOM, FicheWorld, bilaterale_values
from tests.support.services import unavailable

Clients = Callable[[Account], FlaskClient]
Apis = Callable[..., Api]
NOTICES = (
    "Aucune information d'ordre économique et financière ne doit être communiquée.",
    "Cette fiche est transmise uniquement par le canal sécurisé Fil'R",
    "autorités de contrôle du Fonds social européen",
    "Je soussigné(e) reconnais avoir été informé(e) des finalités de cet échange de données",
)
SHOWN_VALUES = (
    NOM.upper(), PRENOM, CAF, "1234567A", "12/04/1990", "01/12/2026", "12 rue des Lilas",
    "62000 Arras", "zoe.zebre@example.org", "Asso Insertion 62", "CD 62", "Seul(e)",
    "Faire face à des difficultés de logement", "Accéder à un moyen de transport",
    "Référent social mandaté par le Conseil départemental", "France Travail",
    "Oui, la personne a été informée et a signé",
)  # fmt: skip
DPO_62 = "Délégué à la protection des données du Département du Pas-de-Calais"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The shared settings, with the data-protection contact of the 62 configured."""
    contacts = tmp_path / "contacts.json"
    contacts.write_text(
        '{"departements": {"62": {"titre": "' + DPO_62 + '", '
        '"coordonnees": "dpd@pasdecalais.example.org"}}}',
        encoding="utf-8",
    )
    return settings.with_overrides(data_protection_contacts_file=contacts)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"`{name}` (Debian package poppler-utils)")
    assert path is not None
    return path


def _text(pdf: bytes) -> str:
    out = subprocess.run(
        [_tool("pdftotext"), "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode("utf-8")
    # pdftotext breaks lines where the layout does, and types the apostrophe as it is printed
    return " ".join(out.replace("’", "'").split())


def _sent_fiche(api_for: Apis, fw: FicheWorld) -> str:
    body = {
        "form": "liaison-bilaterale",
        "departement": "62",
        "recipient": fw.cd62,
        "values": bilaterale_values(fw),
    }
    response = api_for(fw.adviser).post("/api/v1/fiches", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    fiche_id: str = response.get_json()["id"]
    return fiche_id


def test_the_pdf_holds_every_value_notice_contact_and_the_digest_of_the_page(
    app: Flask, fw: FicheWorld, client_for: Clients, api_for: Apis, tmp_path: Path
) -> None:
    fiche_id = _sent_fiche(api_for, fw)
    slai = client_for(fw.slai62)
    # When the SLAI downloads the PDF of the fiche
    response = slai.get(f"/fiches/{fiche_id}/pdf")
    # Then it is a PDF, named without anything of the person, never cached
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="fiche-{fiche_id}.pdf"'
    )
    assert "no-store" in response.headers["Cache-Control"]
    pdf = response.get_data()
    text = _text(pdf)
    # And pdftotext finds every value, every notice and the contacts of both parties and the CNIL
    for expected in (*SHOWN_VALUES, *NOTICES):
        assert " ".join(expected.split()) in text, expected
    assert DPO_62 in text and "dpd@pasdecalais.example.org" in text
    assert "Délégué à la protection des données de France Travail" in text
    assert "Commission nationale de l'informatique et des libertés (CNIL)" in text
    # And the blocks in the paper model's order
    order = [
        "STRUCTURE PRESCRIPTRICE", "CONSEIL DÉPARTEMENTAL (SLAI)", "SUIVI",
        "DEMANDEUR D'EMPLOI — IDENTIFICATION", "VIE PERSONNELLE", "VIE PROFESSIONNELLE",
        "FREINS PÉRIPHÉRIQUES À L'EMPLOI", "MENTIONS OBLIGATOIRES ET ATTESTATION",
        "DÉCISION SUITE AU DIAGNOSTIC PARTAGÉ",
    ]  # fmt: skip
    positions = [text.find(title) for title in order]
    assert -1 not in positions and positions == sorted(positions), positions
    # And the reference and digest the page shows, on every page's foot too
    page = slai.get(f"/fiches/{fiche_id}").get_data(as_text=True)
    digest = re.search(r'id="fiche-empreinte">([0-9A-F]{4}(?:-[0-9A-F]{4}){3})<', page)
    assert digest is not None, "the page shows the digest"
    assert text.count(f"Fiche {fiche_id} — empreinte {digest.group(1)}") >= 1
    assert f"Référence de la fiche : {fiche_id}" in text
    assert "Page 1 sur" in text
    # And it is a tagged PDF/UA-1 in French, titled without anything of the person
    reader = PdfReader(io.BytesIO(pdf))
    root: Any = reader.trailer["/Root"]
    assert "/StructTreeRoot" in root and root["/MarkInfo"]["/Marked"]
    assert root["/Lang"] == "fr"
    title = str(reader.metadata.title if reader.metadata else "")
    assert title.startswith("Fiche de liaison") and fiche_id in title
    assert NOM not in title and NOM.upper() not in title
    assert b"pdfuaid" in pdf or "pdfuaid" in str(root["/Metadata"].get_object().get_data())
    # And the download is in the trail, without the person
    rows = [r for r in audit_rows(app, "fiche:pdf-downloaded") if r.target_id == fiche_id]
    assert len(rows) == 1 and rows[0].actor_id == fw.slai62.id
    assert NOM not in repr(rows[0].details) and CAF not in repr(rows[0].details)
    # And page 1 renders to an image (looked at when the layout changes: --basetemp keeps it)
    (tmp_path / "fiche.pdf").write_bytes(pdf)
    subprocess.run(
        [_tool("pdftoppm"), "-png", "-r", "60", "-f", "1", "-l", "1", "-", str(tmp_path / "p")],
        input=pdf, check=True,
    )  # fmt: skip
    [png] = list(tmp_path.glob("p*.png"))
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000


def test_the_pdf_is_rendered_in_memory_and_leaves_nothing_on_disk(
    app: Flask, fw: FicheWorld, client_for: Clients, api_for: Apis, settings: Settings,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fiche_id = _sent_fiche(api_for, fw)
    slai = client_for(fw.slai62)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = {p: p.stat().st_mtime_ns for p in Path(settings.data_dir).rglob("*") if p.is_file()}
    assert slai.get(f"/fiches/{fiche_id}/pdf").status_code == 200
    # No temporary file, and no file of the portal's holds the person in clear
    assert list(scratch.iterdir()) == []
    for path in Path(settings.data_dir).rglob("*"):
        if path.is_file() and (path not in before or path.stat().st_mtime_ns != before[path]):
            content = path.read_bytes()
            assert NOM.encode() not in content and CAF.encode() not in content, path


def test_the_pdf_is_404_outside_the_fiche_and_the_api_serves_it(
    app: Flask, fw: FicheWorld, client_for: Clients, api_for: Apis
) -> None:
    fiche_id = _sent_fiche(api_for, fw)
    for outsider in (fw.slai59, fw.referent59, fw.other_referent62, fw.referent62):
        assert client_for(outsider).get(f"/fiches/{fiche_id}/pdf").status_code == 404
        refused = api_for(outsider).get(f"/api/v1/fiches/{fiche_id}/pdf")
        assert_problem(refused, 404, "not_found")
    assert client_for(fw.slai62).get(f"/fiches/{'0' * 32}/pdf").status_code == 404
    # The sender and the recipient get it through the API (scope read), audited each time
    for party in (fw.adviser, fw.slai62):
        response = api_for(party, ("read",)).get(f"/api/v1/fiches/{fiche_id}/pdf")
        assert response.status_code == 200 and response.mimetype == "application/pdf"
        assert response.get_data().startswith(b"%PDF-")
    rows = [r for r in audit_rows(app, "fiche:pdf-downloaded") if r.target_id == fiche_id]
    assert sorted(r.actor_id for r in rows) == sorted([fw.adviser.id, fw.slai62.id])


# --- the pieces, without the application --------------------------------------------------


def test_the_digest_is_stable_documented_and_changes_with_any_value() -> None:
    values = {"demandeur": {"nom": "A", "prenom": "B"}, "freins": ["logement"], "brsa": True}
    first = verification("f" * 32, "liaison-bilaterale@1", values)
    assert re.fullmatch(r"[0-9A-F]{4}(-[0-9A-F]{4}){3}", first.digest)
    assert first == verification("f" * 32, "liaison-bilaterale@1", dict(reversed(values.items())))
    assert canonical_json("f" * 32, "liaison-bilaterale@1", values) == (
        b'{"fiche":"ffffffffffffffffffffffffffffffff","formulaire":"liaison-bilaterale@1",'
        b'"valeurs":{"brsa":true,"demandeur":{"nom":"A","prenom":"B"},"freins":["logement"]}}'
    )
    changed = [
        verification("f" * 32, "liaison-bilaterale@1", {**values, "brsa": False}),
        verification("e" * 32, "liaison-bilaterale@1", values),
        verification("f" * 32, "liaison-bilaterale@2", values),
    ]
    assert first.digest not in {v.digest for v in changed}


def test_the_contacts_follow_the_gdpr_notice_or_get_their_own_block() -> None:
    contacts = (Contact("DPD du Département", "dpd@cd.example.org"),)
    gdpr = Row(None, "… auprès du délégué à la protection des données de chaque partie …")
    blocks = [
        RenderedBlock("a", "A", (Row("Nom", "X"),), "sender"),
        RenderedBlock("b", "B", (Row(None, "Autre mention"), gdpr, Row("Signé", "Oui")), "sender"),
    ]
    placed = with_contacts(blocks, contacts)
    assert [r.text for r in placed[1].rows] == [
        "Autre mention", gdpr.text, "DPD du Département : dpd@cd.example.org", "Oui"
    ]  # fmt: skip
    alone = with_contacts(blocks[:1], contacts)
    assert alone[-1].title == CONTACTS_TITLE and len(alone) == 2


def test_the_app_refuses_to_start_on_a_malformed_contacts_file(
    make_app: Callable[..., Flask], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = tmp_path / "contacts-faux.json"
    wrong.write_text('{"cnil": {"titre": "CNIL"}}', encoding="utf-8")
    with pytest.raises(ContactsError, match=r"cnil\.coordonnees"):
        make_app(data_protection_contacts_file=wrong)
    monkeypatch.setenv("FILR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FILR_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("FILR_DATA_PROTECTION_CONTACTS_FILE", str(wrong))
    assert Settings.from_env().data_protection_contacts_file == wrong


def test_a_malformed_contacts_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    wrong = tmp_path / "contacts.json"
    wrong.write_text('{"departements": {"62": {"titre": "DPD"}}}', encoding="utf-8")
    with pytest.raises(ContactsError, match=r"departements\.62\.coordonnees"):
        load_contacts(wrong)
    wrong.write_text('{"cnill": {}}', encoding="utf-8")
    with pytest.raises(ContactsError, match="clé inconnue « cnill »"):
        load_contacts(wrong)
    shipped = load_contacts(None).for_departement("59", "Nord")
    assert shipped[0].title.endswith("(Nord)") and "CNIL" in shipped[2].title
