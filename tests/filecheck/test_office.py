"""Office documents: OLE2 files told apart by their directory."""

from __future__ import annotations

from portal.filecheck import HEAD_SIZE, FileKind, Refusal
from tests.filecheck.samples import check, ole2


def test_ole2_directory_after_the_head_is_still_found() -> None:
    data = ole2("WordDocument", padding=300)  # directory at 150 KiB

    assert len(data) > 2 * HEAD_SIZE
    assert check("ancien.doc", data).kind is FileKind.DOC


def test_ole2_names_outside_directory_entries_are_ignored() -> None:
    # Given "WordDocument" in UTF-16 inside the data, not at a directory entry boundary
    data = bytearray(ole2("\x05SummaryInformation"))
    text = "WordDocument\0".encode("utf-16-le")
    data[1000 + 6 : 1000 + 6 + len(text)] = text

    assert check("lettre.doc", bytes(data)).reason is Refusal.TYPE_REFUSED
