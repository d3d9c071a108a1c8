"""A fiche as a PDF: the screen's template in a print layout, rendered in memory, tagged.

The PDF is the page's own template (`templates/fiches/_body.html`: the blocks in the paper
model's order, with its notices) inside `templates/fiches/print.html`, which adds what a printed
copy needs: the fiche's reference and a digest of its values, so that anyone can check a copy
against the portal (the page shows the same two), the data-protection contacts of the
département's fiche (`portal.fiches.protection`), and the page numbers. WeasyPrint renders it
to a tagged PDF/UA-1 (structure tree, language, title: readable by a screen reader) entirely in
memory: no file is written, and nothing is fetched (`_no_fetch`: the layout has no image,
font or style sheet to load; fonts are the system's).

The digest is the SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of the fiche's
id, its form and version, and its values (the decision included), shortened to 16 hexadecimal
digits in four groups: it changes with any value, and says nothing of them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

import audit
from audit import AuditAction
from portal.accounts.models import User
from portal.container import Services
from portal.db import utcnow
from portal.fiches.display import RenderedBlock, Row
from portal.fiches.models import Fiche
from portal.fiches.protection import Contact, Contacts, load_contacts
from portal.fiches.services import OpenedFiche, decision_values, open_fiche
from portal.orgs.departements import DEPARTEMENTS

PRINT_CSS = Path(__file__).resolve().parent / "print.css"
DIGEST_DIGITS = 16
CONTACTS_TITLE = "Protection des données : contacts"
# The notice after which the contacts are printed: the GDPR notice names the delegates.
_GDPR_MARK = "protection des données"


@dataclass(frozen=True)
class Verification:
    """What a printed copy is checked with: the fiche's reference and the digest."""

    reference: str
    digest: str
    full_digest: str


def canonical_json(fiche_id: str, form_key: str, values: Mapping[str, Any]) -> bytes:
    """The bytes the digest is computed on (documented: anyone can recompute it)."""
    document = {"fiche": fiche_id, "formulaire": form_key, "valeurs": values}
    return json.dumps(
        document, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str
    ).encode("utf-8")


def verification(fiche_id: str, form_key: str, values: Mapping[str, Any]) -> Verification:
    """The reference and the digest of a fiche with *values* (decision included)."""
    full = hashlib.sha256(canonical_json(fiche_id, form_key, values)).hexdigest()
    short = full[:DIGEST_DIGITS].upper()
    return Verification(fiche_id, "-".join(short[i : i + 4] for i in range(0, len(short), 4)), full)


def with_contacts(
    blocks: Sequence[RenderedBlock], contacts: Iterable[Contact]
) -> list[RenderedBlock]:
    """*blocks* with the data-protection contacts printed right after the GDPR notice (the
    first notice naming "protection des données"), or in a last block of their own when the
    form has no such notice."""
    rows = tuple(Row(None, f"{c.title} : {c.details}") for c in contacts)
    result = list(blocks)
    for index, block in enumerate(result):
        for position, row in enumerate(block.rows):
            if row.label is None and _GDPR_MARK in (row.text or "").lower():
                result[index] = RenderedBlock(
                    block.id,
                    block.title,
                    (*block.rows[: position + 1], *rows, *block.rows[position + 1 :]),
                    block.filled_by,
                )
                return result
    result.append(RenderedBlock("protection-donnees", CONTACTS_TITLE, rows, "sender"))
    return result


def _no_fetch(url: str, *args: Any, **kwargs: Any) -> Any:
    """Refuse every fetch: the print layout loads nothing (no image, no remote anything)."""
    raise ValueError(f"Ressource refusée dans une fiche imprimée : {url[:40]}")


_local = threading.local()


def _resources() -> tuple[Any, Any]:
    """The parsed print style sheet and a font configuration, made once per thread and kept:
    parsing the sheet and setting up Pango's fonts cost about a sixth of a rendering. Per
    thread, not per process: gunicorn's threads render at once, and Pango's font map is not
    meant to be shared between them."""
    import weasyprint
    from weasyprint.text.fonts import FontConfiguration

    if not hasattr(_local, "resources"):
        _local.resources = (
            weasyprint.CSS(string=PRINT_CSS.read_text(encoding="utf-8")),
            FontConfiguration(),
        )
    return _local.resources  # type: ignore[no-any-return]  # threading.local attributes are untyped


def render_pdf(html: str, *, title: str, generated_at: datetime) -> bytes:
    """*html* (the print layout, rendered) as a tagged PDF/UA-1, in memory."""
    import weasyprint  # imported here: pango is loaded only by processes that print

    stylesheet, fonts = _resources()
    document = weasyprint.HTML(string=html, base_url=None, url_fetcher=_no_fetch)
    rendered = document.render(stylesheets=[stylesheet], font_config=fonts, pdf_variant="pdf/ua-1")
    rendered.metadata.title = title
    rendered.metadata.lang = "fr"
    rendered.metadata.authors = ["Fil'R"]
    rendered.metadata.created = generated_at.isoformat(timespec="seconds")
    rendered.metadata.modified = rendered.metadata.created
    pdf: bytes = rendered.write_pdf(pdf_variant="pdf/ua-1")
    return pdf


# --- the fiche's sheet: what the page and the PDF both show -----------------------------------


@dataclass(frozen=True)
class Sheet:
    """A fiche's blocks with the data-protection contacts, and its verification."""

    blocks: list[RenderedBlock]
    verification: Verification


def sheet_of(opened: OpenedFiche, contacts: Contacts, departement_name: str) -> Sheet:
    """What the page and the PDF of *opened* show beyond `_body.html`'s own blocks."""
    fiche = opened.fiche
    shown = {**opened.values, **decision_values(fiche)}
    return Sheet(
        with_contacts(opened.blocks, contacts.for_departement(fiche.departement_code,
                                                              departement_name)),
        verification(fiche.id, fiche.form_key, shown),
    )  # fmt: skip


def contacts_of(svc: Services) -> Contacts:
    """The contacts file of the settings (checked at start-up by `portal.container`)."""
    return load_contacts(svc.settings.data_protection_contacts_file)


def fiche_pdf(
    session: Session, svc: Services, user: User, fiche: Fiche, ctx: audit.Context
) -> bytes:
    """The PDF of *fiche* for *user* (who may see it): decrypted, audited as
    `fiche:pdf-downloaded` (committed before the rendering), rendered in memory."""
    from flask import render_template  # the print layout is a template of the application

    opened = open_fiche(session, svc, user, fiche, ctx, action=AuditAction.FICHE_PDF_DOWNLOADED)
    departement_name = DEPARTEMENTS[fiche.departement_code]
    sheet = sheet_of(opened, contacts_of(svc), departement_name)
    now = utcnow()
    html = render_template(
        "fiches/print.html",
        fiche=opened.fiche,
        fiche_form=opened.form,
        fiche_blocks=sheet.blocks,
        fiche_verification=sheet.verification,
        departement_name=departement_name,
        generated_at=now,
        printed_by=f"{user.full_name} ({user.organisation.name})",
    )
    title = f"{opened.form.title} — fiche {fiche.id}"
    return render_pdf(html, title=title, generated_at=now)


def pdf_response(content: bytes, fiche_id: str) -> Response:
    """The download of a fiche's PDF: named after its id only (never the person), not cached."""
    from flask import Response as FlaskResponse

    response: Response = FlaskResponse(content, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="fiche-{fiche_id}.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response
