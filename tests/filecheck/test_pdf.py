"""PDF documents: the header, wherever readers find it."""

from __future__ import annotations

from portal.filecheck import FileKind
from tests.filecheck.samples import PDF, check


def test_pdf_header_is_found_after_some_leading_bytes() -> None:
    assert check("rapport.pdf", b"\r\n" * 100 + PDF).kind is FileKind.PDF
