"""PDF documents: where the header is, and what may come before it."""

from __future__ import annotations

from typing import Final

from portal.filecheck.text import ASCII_LOWER, has_active_marker

# Readers find the header anywhere in the first 1024 bytes (PDF Reference 1.7, implementation
# note 13 in appendix H).
_PDF_MARKER: Final = b"%PDF-"
PDF_WINDOW: Final = 1024


def pdf_header_at(head: bytes) -> int:
    """The offset of the `%PDF-` header in the first `PDF_WINDOW` bytes of *head*, or -1."""
    return head.find(_PDF_MARKER, 0, PDF_WINDOW)


def has_active_prelude(head: bytes, at: int) -> bool:
    """True when the bytes before the header, at *at*, hold content a browser would run."""
    # Bytes before the header are tolerated by readers, and used by polyglot files.
    return has_active_marker(head[:at].translate(ASCII_LOWER), is_xml=False)
