"""Text files: the head, and markers scanned across chunk boundaries after it."""

from __future__ import annotations

import pytest

from portal.filecheck import HEAD_SIZE, Refusal
from tests.filecheck.samples import CHUNKINGS, check


def test_xml_whose_prolog_fills_the_head_is_refused() -> None:
    data = b'<?xml version="1.0"?>' + b"<!-- " + b"x" * HEAD_SIZE + b" --><flux/>"

    assert check("flux.xml", data).reason is Refusal.TYPE_REFUSED


# --- streaming: markers across chunks, early verdicts ---------------------------------


@pytest.mark.parametrize(
    ("name", "marker", "reason"),
    [
        ("suivi.csv", b"<script>", Refusal.ACTIVE_CONTENT),
        ("suivi.csv", b"javascript:", Refusal.ACTIVE_CONTENT),
        ("flux.xml", b'<h:p xmlns:h="http://www.w3.org/1999/xhtml">', Refusal.ACTIVE_CONTENT),
        ("suivi.csv", b"\x00", Refusal.TYPE_REFUSED),
    ],
)
@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_text_after_the_head_is_scanned_across_chunk_boundaries(
    name: str, marker: bytes, reason: Refusal, chunking: str
) -> None:
    # Given a marker well after the head, straddling chunk boundaries
    line = b"<ligne>Dupont;12,50</ligne>\n" if name.endswith(".xml") else b"Dupont;12,50\n"
    body = line * (HEAD_SIZE // len(line) + 500)
    clean = (b"<flux>\n" + body + b"</flux>\n") if name.endswith(".xml") else body
    assert check(name, clean, "random").ok
    at = len(clean) - 10 * len(line) + 3
    data = clean[:at] + marker + clean[at:]

    # When fed in chunks, Then it is refused
    if chunking == "bytes":
        data = data[-(HEAD_SIZE + 1000) :]  # keep the byte-by-byte case quick
        data = (b"<flux>\n" if name.endswith(".xml") else b"") + data[data.index(b"\n") + 1 :]
    assert check(name, data, chunking).reason is reason
