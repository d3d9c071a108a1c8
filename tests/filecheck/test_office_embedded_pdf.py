"""PDFs inside office documents (OOXML embeddings, OpenDocument objects) are checked for active
content as a ZIP's PDF members are, on hand-made files (tests/support/pdf.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from portal.filecheck import Refusal
from portal.filecheck.pdf_content import check_pdf
from tests.filecheck.samples import (
    CHUNKINGS,
    JPEG,
    check,
    docx,
    odf,
    pptx,
    with_hidden_member,
    xlsx,
    zip_of,
)  # fmt: skip
from tests.support.pdf import make_pdf

SCRIPTED = make_pdf(catalog_extra=b" /OpenAction << /S /JavaScript /JS (app.alert(1)) >>")
LAUNCH = make_pdf(catalog_extra=b" /OpenAction << /S /Launch /F (cmd.exe) >>")
CLEAN = make_pdf(padding=300)
CONTENT_TYPES = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'content-types"/>'
)


def _pptx(*extra: tuple[str, bytes]) -> bytes:
    return zip_of(
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", b"<Relationships/>"),
        ("ppt/presentation.xml", b"<p:presentation/>"),
        *extra,
    )


# Where office suites put embedded files, and names that hide what they are.
CARRIERS: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("rapport.docx", lambda pdf: docx(("word/embeddings/Annexe.pdf", pdf))),
    ("rapport.docx", lambda pdf: docx(("word/embeddings/oleObject1.bin", pdf))),
    ("suivi.xlsx", lambda pdf: xlsx(("xl/embeddings/piece", pdf))),
    ("suivi.xlsx", lambda pdf: xlsx(("xl/media/image1.png", b"%PNG?" + pdf))),  # header late
    ("bilan.pptx", lambda pdf: _pptx(("ppt/embeddings/Document.pdf", pdf))),
    ("courrier.odt", lambda pdf: odf("text", ("Object 1/annexe.pdf", pdf))),
    ("courrier.odt", lambda pdf: odf("text", ("Object 2", pdf))),
    ("tableau.ods", lambda pdf: odf("spreadsheet", ("Pictures/annexe.pdf", pdf))),
    ("diapos.odp", lambda pdf: odf("presentation", ("Object 1/content", pdf))),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CARRIERS)]


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(("name", "make"), CARRIERS, ids=IDS)
def test_a_pdf_with_active_content_inside_an_office_document_refuses_it(
    name: str, make: Callable[[bytes], bytes], chunking: str
) -> None:
    for pdf in (SCRIPTED, LAUNCH):
        finding = check_pdf(pdf)
        assert finding is not None
        result = check(name, make(pdf), chunking)
        assert not result.ok
        assert result.reason is Refusal.ACTIVE_CONTENT
        assert result.member_position is not None
        assert result.message_fr.startswith("Document refusé : le fichier n° ")
        assert finding.message_fr in result.message_fr
        assert "Annexe" not in result.message_fr and "annexe" not in result.message_fr


@pytest.mark.parametrize(("name", "make"), CARRIERS, ids=IDS)
def test_a_clean_pdf_inside_an_office_document_is_accepted(
    name: str, make: Callable[[bytes], bytes]
) -> None:
    result = check(name, make(CLEAN))
    assert result.ok, result.message_fr


def test_other_members_are_left_to_the_package_checks() -> None:
    # Images, XML and binary parts are not PDFs: the document is accepted as before
    assert check("rapport.docx", docx(("word/media/image1.jpeg", JPEG))).ok
    assert check(
        "courrier.odt", odf("text", ("Pictures/1.jpg", JPEG), ("Object 1", b"\x00" * 2000))
    ).ok
    assert check("bilan.pptx", pptx()).ok
    # A PDF whose header is past the first 1024 bytes is not one readers open
    assert check("suivi.xlsx", xlsx(("xl/embeddings/x.bin", b"\x00" * 1024 + SCRIPTED))).ok


def test_a_pdf_left_out_of_the_central_directory_is_still_checked() -> None:
    # Given a document with a PDF member its central directory does not list (streaming
    # extractors would still find it): the walk of the local headers checks it
    data = with_hidden_member(docx(), "word/embeddings/x.pdf", SCRIPTED)
    assert check("rapport.docx", data).reason is Refusal.ACTIVE_CONTENT
    # And a clean one there is refused all the same: the directory and the headers disagree
    assert check("rapport.docx", with_hidden_member(docx(), "x.pdf", CLEAN)).reason is (
        Refusal.ZIP_INVALID
    )
