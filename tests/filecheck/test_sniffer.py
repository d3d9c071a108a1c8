"""The sniffer as a whole: what is accepted, what is refused and why, early verdicts, memory."""

from __future__ import annotations

import random
import tracemalloc
import zipfile
from collections.abc import Iterator

import pytest

from portal.filecheck import (
    HEAD_SIZE,
    TAIL_SIZE,
    FileKind,
    Refusal,
    SniffResult,
    TypeSniffer,
    sniff,
)
from tests.filecheck.samples import (
    CHUNKINGS,
    CSV_CP1252,
    CSV_UTF8,
    JPEG,
    PDF,
    SVG,
    TIFF_BE,
    TIFF_LE,
    TXT,
    XHTML,
    XML_BOM,
    XML_LATIN1,
    MiB,
    check,
    chunks_of,
    docx,
    odf,
    ole2,
    plain_zip,
    png,
    pptx,
    set_encrypted_flag,
    with_hidden_member,
    xlsx,
    zip_of,
    zip_with,
)

# --- accepted --------------------------------------------------------------------------

ACCEPTED = [
    ("rapport.pdf", PDF, FileKind.PDF),
    ("RAPPORT.PDF", PDF, FileKind.PDF),
    ("scan.jpg", JPEG, FileKind.JPEG),
    ("scan.jpeg", JPEG, FileKind.JPEG),
    ("scan.png", png(), FileKind.PNG),
    ("scan.tif", TIFF_LE, FileKind.TIFF),
    ("scan.tiff", TIFF_BE, FileKind.TIFF),
    ("courrier.docx", docx(), FileKind.DOCX),
    ("budget.xlsx", xlsx(), FileKind.XLSX),
    ("comite.pptx", pptx(), FileKind.PPTX),
    ("courrier.odt", odf("text"), FileKind.ODT),
    ("budget.ods", odf("spreadsheet"), FileKind.ODS),
    ("comite.odp", odf("presentation"), FileKind.ODP),
    ("ancien.doc", ole2("WordDocument", "1Table", "\x05SummaryInformation"), FileKind.DOC),
    ("ancien.xls", ole2("Workbook", "\x05SummaryInformation"), FileKind.XLS),
    ("tres-ancien.xls", ole2("Book"), FileKind.XLS),
    ("dossier.zip", plain_zip(), FileKind.ZIP),
    ("flux.xml", XML_LATIN1, FileKind.XML),
    ("flux.xml", XML_BOM, FileKind.XML),
    ("flux.xml", b"<flux><scripts>1</scripts><htmlContenu/><svgRef/></flux>", FileKind.XML),
    ("suivi.csv", CSV_UTF8, FileKind.CSV),
    ("suivi.csv", CSV_CP1252, FileKind.CSV),
    ("notes.txt", TXT, FileKind.TXT),
]


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(
    ("name", "data", "kind"), ACCEPTED, ids=[f"{k}-{n}" for n, _, k in ACCEPTED]
)
def test_allowed_file_is_accepted_whatever_the_chunk_sizes(
    name: str, data: bytes, kind: FileKind, chunking: str
) -> None:
    result = check(name, data, chunking)

    assert result == SniffResult.accepted(kind, name.rsplit(".", 1)[1].lower())
    assert result.ok and result.reason is None and result.message_fr == ""
    assert result.content_type == kind.content_type


# --- refused ---------------------------------------------------------------------------

REFUSED = [
    # active content, by name and by content
    ("page.html", b"<html><body>bonjour</body></html>", Refusal.ACTIVE_CONTENT),
    ("page.HTM", b"<p>bonjour</p>", Refusal.ACTIVE_CONTENT),
    ("page.txt", b"<!DOCTYPE html>\n<p>bonjour</p>", Refusal.ACTIVE_CONTENT),
    ("page.txt", b"Bonjour\n<HTML>\n<body>", Refusal.ACTIVE_CONTENT),
    ("notes.txt", b"Bonjour <ScRiPt src=x></script>", Refusal.ACTIVE_CONTENT),
    ("notes.txt", b"Voir <iframe src=//x>", Refusal.ACTIVE_CONTENT),
    ("liens.csv", b"id;url\n1;JavaScript:alert(1)\n", Refusal.ACTIVE_CONTENT),
    ("dessin.svg", SVG, Refusal.ACTIVE_CONTENT),
    ("dessin.svgz", b"\x1f\x8b\x08\x00", Refusal.ACTIVE_CONTENT),
    ("dessin.xml", SVG, Refusal.ACTIVE_CONTENT),
    ("dessin.png", SVG, Refusal.ACTIVE_CONTENT),
    ("dessin.png", b"<svg onload=alert(1)>", Refusal.ACTIVE_CONTENT),
    ("page.xml", XHTML, Refusal.ACTIVE_CONTENT),
    ("page.xml", b"<?xml version='1.0'?><x:svg xmlns:x='urn:x'/>", Refusal.ACTIVE_CONTENT),
    (
        "flux.xml",
        b'<flux><h:script xmlns:h="http://www.w3.org/1999/xhtml">x()</h:script></flux>',
        Refusal.ACTIVE_CONTENT,
    ),
    (
        "flux.xml",
        b'<?xml version="1.0"?><?xml-stylesheet type="text/xsl" href="x.xsl"?><flux/>',
        Refusal.ACTIVE_CONTENT,
    ),
    (
        "flux.xml",
        b'<?xml version="1.0"?><!DOCTYPE flux [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<flux>&x;</flux>",
        Refusal.ACTIVE_CONTENT,
    ),
    ("script.js", b"alert(1)", Refusal.ACTIVE_CONTENT),
    ("polyglotte.pdf", b"<html><script>x()</script>\n" + PDF, Refusal.ACTIVE_CONTENT),
    # types refused
    ("setup.exe", b"MZ\x90\x00\x03\x00\x00\x00", Refusal.TYPE_REFUSED),
    ("rapport.pdf", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", Refusal.TYPE_REFUSED),
    ("inconnu.pdf", random.Random(3).randbytes(5000), Refusal.TYPE_REFUSED),
    ("rapport", PDF, Refusal.TYPE_REFUSED),
    ("rapport.", PDF, Refusal.TYPE_REFUSED),
    ("rapport.xyz", PDF, Refusal.TYPE_REFUSED),
    ("rapport.pdf.exe", PDF, Refusal.TYPE_REFUSED),
    ("macro.docm", docx(), Refusal.TYPE_REFUSED),
    ("suivi.csv", b"nom;montant\n\x00\x01\x02\x03", Refusal.TYPE_REFUSED),
    ("suivi.csv", "nom;montant\n".encode("utf-16"), Refusal.TYPE_REFUSED),
    ("presentation.ppt", ole2("PowerPoint Document"), Refusal.TYPE_REFUSED),
    ("installeur.doc", ole2("\x05SummaryInformation", "Property"), Refusal.TYPE_REFUSED),
    ("bigtiff.tif", b"II+\x00\x08\x00\x00\x00" + bytes(100), Refusal.TYPE_REFUSED),
    # content and name disagree
    ("scan.jpg", PDF, Refusal.EXTENSION_MISMATCH),
    ("rapport.pdf", JPEG, Refusal.EXTENSION_MISMATCH),
    ("scan.png", TIFF_LE, Refusal.EXTENSION_MISMATCH),
    ("rapport.pdf", TXT, Refusal.EXTENSION_MISMATCH),
    ("flux.xml", b"nom;montant\n1;2\n", Refusal.EXTENSION_MISMATCH),
    ("courrier.docx", plain_zip(), Refusal.EXTENSION_MISMATCH),
    ("dossier.zip", docx(), Refusal.EXTENSION_MISMATCH),
    ("courrier.docx", odf("text"), Refusal.EXTENSION_MISMATCH),
    ("budget.xlsx", docx(), Refusal.EXTENSION_MISMATCH),
    ("hybride.docx", docx(("xl/workbook.xml", b"<workbook/>")), Refusal.TYPE_REFUSED),
    ("rapport.pdf", plain_zip(), Refusal.EXTENSION_MISMATCH),
    ("budget.xls", ole2("WordDocument"), Refusal.EXTENSION_MISMATCH),
    ("rapport.pdf", ole2("WordDocument"), Refusal.EXTENSION_MISMATCH),
    # macros and passwords
    ("macro.docx", docx(("word/vbaProject.bin", b"\xd0\xcf\x11\xe0")), Refusal.MACROS),
    ("macro.xlsx", xlsx(("xl/macrosheets/sheet1.xml", b"<xm:macrosheet/>")), Refusal.MACROS),
    ("macro.odt", odf("text", ("Basic/Standard/Module1.xml", b"<x/>")), Refusal.MACROS),
    ("macro.doc", ole2("WordDocument", "Macros", "VBA", "_VBA_PROJECT"), Refusal.MACROS),
    ("macro.xls", ole2("Workbook", "_VBA_PROJECT_CUR", "VBA"), Refusal.MACROS),
    (
        "protege.docx",
        ole2("EncryptionInfo", "EncryptedPackage", "\x06DataSpaces"),
        Refusal.ENCRYPTED_DOCUMENT,
    ),
    # archives
    ("dossier.zip", zip_of(("lettre.pdf", PDF), ("setup.exe", b"MZ")), Refusal.ZIP_MEMBER_REFUSED),
    ("dossier.zip", zip_of(("index.html", b"<p>")), Refusal.ZIP_MEMBER_REFUSED),
    ("dossier.zip", zip_of(("a/logo.SVG", SVG)), Refusal.ZIP_MEMBER_REFUSED),
    ("dossier.zip", zip_of(("LISEZMOI", TXT)), Refusal.ZIP_MEMBER_REFUSED),
    ("dossier.zip", zip_of(("macro.xlsm", xlsx())), Refusal.ZIP_MEMBER_REFUSED),
    ("dossier.zip", zip_of(("lettre.pdf", PDF), ("autre.zip", plain_zip())), Refusal.ZIP_NESTED),
    ("dossier.zip", zip_of(("autre.7z", b"7z\xbc\xaf\x27\x1c")), Refusal.ZIP_NESTED),
    ("dossier.zip", zip_of(("../lettre.pdf", PDF)), Refusal.ZIP_PATH_TRAVERSAL),
    ("dossier.zip", zip_of(("a/../../lettre.pdf", PDF)), Refusal.ZIP_PATH_TRAVERSAL),
    ("dossier.zip", zip_of(("..\\..\\lettre.pdf", PDF)), Refusal.ZIP_PATH_TRAVERSAL),
    ("dossier.zip", zip_of(("/etc/cron.d/x.txt", TXT)), Refusal.ZIP_PATH_TRAVERSAL),
    ("dossier.zip", zip_of(("C:/Temp/lettre.pdf", PDF)), Refusal.ZIP_PATH_TRAVERSAL),
    ("dossier.zip", zip_of(("a/. ./lettre.pdf", PDF)), Refusal.ZIP_PATH_TRAVERSAL),
    ("courrier.docx", docx(("../../word/x.xml", b"<x/>")), Refusal.ZIP_PATH_TRAVERSAL),
    ("dossier.zip", set_encrypted_flag(zip_of(("lettre.pdf", PDF))), Refusal.ZIP_ENCRYPTED),
    ("courrier.docx", set_encrypted_flag(docx()), Refusal.ZIP_ENCRYPTED),
    ("dossier.zip", zip_of(("lettre.pdf", PDF)) + b"junk", Refusal.ZIP_INVALID),
    ("dossier.zip", zip_of(("lettre.pdf", PDF))[:-30], Refusal.ZIP_INVALID),
    ("dossier.zip", b"PK\x03\x04" + bytes(200), Refusal.ZIP_INVALID),
    ("dossier.zip", zip_of(), Refusal.EMPTY),
    # what was checked must be what the central directory lists
    ("dossier.zip", with_hidden_member(zip_of(("a.pdf", PDF)), "b.txt", TXT), Refusal.ZIP_INVALID),
    (
        "dossier.zip",
        zip_of(("notes.txt", TXT)).replace(b"notes.txt", b"notes.csv", 1),  # local header only
        Refusal.ZIP_INVALID,
    ),
    ("dossier.zip", zip_with(zipfile.ZIP_BZIP2, ("a.pdf", PDF)), Refusal.ZIP_METHOD_UNSUPPORTED),
    ("dossier.zip", zip_with(zipfile.ZIP_LZMA, ("a.pdf", PDF)), Refusal.ZIP_METHOD_UNSUPPORTED),
    # nothing at all
    ("rapport.pdf", b"", Refusal.EMPTY),
]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    REFUSED,
    ids=[f"{reason}-{name}-{i}" for i, (name, _, reason) in enumerate(REFUSED)],
)
def test_refused_file_gets_a_stable_reason_and_a_french_message(
    name: str, data: bytes, reason: Refusal
) -> None:
    result = check(name, data)

    assert not result.ok
    assert result.reason is reason
    assert result.content_type is None
    assert result.message_fr and result.message_fr.endswith(".")
    # The message depends only on the reason and the detected kind: never on name or content.
    assert result.message_fr == SniffResult.refused(reason, "", result.kind).message_fr


@pytest.mark.parametrize("chunking", ["whole", "bytes"])
def test_refusals_do_not_depend_on_chunk_boundaries(chunking: str) -> None:
    for name, data, reason in REFUSED:
        if len(data) < 20_000:
            assert check(name, data, chunking).reason is reason, (name, reason)


def test_extension_mismatch_names_the_detected_type_in_french() -> None:
    result = check("scan.jpg", PDF)

    assert result.kind is FileKind.PDF
    assert "document PDF" in result.message_fr


def test_type_refused_message_lists_what_is_accepted() -> None:
    assert check("setup.exe", b"MZ").message_fr == (
        "Type de fichier refusé : seuls les PDF, images de numérisation (JPEG, PNG, TIFF), "
        "documents bureautiques, XML, CSV et archives ZIP vérifiées sont acceptés."
    )


def test_refused_name_is_known_before_any_byte() -> None:
    sniffer = TypeSniffer("setup.exe")

    assert (verdict := sniffer.early_verdict()) is not None
    assert verdict.reason is Refusal.TYPE_REFUSED
    assert sniffer.finish() == verdict


def test_mismatched_content_is_refused_as_soon_as_the_head_is_full() -> None:
    # Given a large PDF declared as a JPEG
    sniffer = TypeSniffer("scan.jpg")
    data = PDF + bytes(2 * HEAD_SIZE)

    # When only part of the head has arrived, Then nothing is decided yet
    sniffer.feed(data[: HEAD_SIZE - 1])
    assert sniffer.early_verdict() is None

    # When the head is full, Then the refusal is known before the rest is sent
    sniffer.feed(data[HEAD_SIZE - 1 : HEAD_SIZE + 10])
    verdict = sniffer.early_verdict()
    assert verdict is not None and verdict.reason is Refusal.EXTENSION_MISMATCH
    sniffer.feed(data[HEAD_SIZE + 10 :])
    assert sniffer.finish() == verdict


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("rapport.pdf", PDF + bytes(HEAD_SIZE)),
        ("suivi.csv", CSV_UTF8 * (HEAD_SIZE // len(CSV_UTF8) + 10)),
        ("dossier.zip", zip_of(("annexe.pdf", PDF + bytes(HEAD_SIZE)), stored=True)),
    ],
)
def test_acceptable_stream_has_no_early_verdict(name: str, data: bytes) -> None:
    sniffer = TypeSniffer(name)
    for chunk in chunks_of(data, "random"):
        sniffer.feed(chunk)
        assert sniffer.early_verdict() is None
    assert sniffer.finish().ok


def test_zip_declared_as_pdf_is_refused_from_its_head() -> None:
    sniffer = TypeSniffer("rapport.pdf")
    sniffer.feed(zip_of(("a.pdf", PDF + bytes(HEAD_SIZE)), stored=True)[: HEAD_SIZE + 1])

    verdict = sniffer.early_verdict()
    assert verdict is not None and verdict.reason is Refusal.EXTENSION_MISMATCH


def test_sniff_stops_reading_at_the_first_certain_refusal() -> None:
    consumed = 0

    def stream() -> Iterator[bytes]:
        nonlocal consumed
        for _ in range(1000):
            consumed += 1
            yield b"<html><body>" + b"x" * 10_000

    result = sniff("page.txt", stream())

    assert result.reason is Refusal.ACTIVE_CONTENT
    assert consumed < 10


def test_sniff_returns_the_verdict_on_a_whole_stream() -> None:
    assert sniff("courrier.docx", chunks_of(docx(), "random")).kind is FileKind.DOCX


def test_sniffer_is_finished_once() -> None:
    sniffer = TypeSniffer("rapport.pdf")
    sniffer.feed(PDF)
    first = sniffer.finish()

    assert sniffer.finish() is first
    with pytest.raises(RuntimeError):
        sniffer.feed(b"more")


def test_chunks_may_be_bytearrays_memoryviews_or_8_mib() -> None:
    big = b"nom;montant\n" * (8 * MiB // 12)
    sniffer = TypeSniffer("suivi.csv")
    sniffer.feed(bytearray(big))
    sniffer.feed(memoryview(big))
    sniffer.feed(b"")

    assert sniffer.finish().kind is FileKind.CSV
    assert sniffer.size == 2 * len(big)


def test_buffer_sizes_must_leave_room_for_the_checks() -> None:
    with pytest.raises(ValueError, match="head_size"):
        TypeSniffer("a.pdf", head_size=512)
    with pytest.raises(ValueError, match="tail_size"):
        TypeSniffer("a.zip", tail_size=100)


# --- memory stays bounded --------------------------------------------------------------


def _peak_while_feeding(name: str, first: bytes, chunk: bytes, count: int) -> tuple[int, int]:
    tracemalloc.start()
    try:
        sniffer = TypeSniffer(name)
        sniffer.feed(first)
        for _ in range(count):
            sniffer.feed(chunk)
        held = sniffer.buffered_bytes
        sniffer.finish()
        return tracemalloc.get_traced_memory()[1], held
    finally:
        tracemalloc.stop()


def test_300_mib_pdf_stream_is_checked_in_bounded_memory() -> None:
    chunk = bytes(range(256)) * (MiB // 256)

    peak, held = _peak_while_feeding("rapport.pdf", PDF, chunk, 300)

    assert held <= HEAD_SIZE + HEAD_SIZE // 4
    assert peak < 5 * MiB


def test_300_mib_zip_stream_keeps_only_its_tail() -> None:
    chunk = bytes(range(256)) * (MiB // 256)

    peak, held = _peak_while_feeding("dossier.zip", b"PK\x03\x04", chunk, 300)

    assert held <= TAIL_SIZE + HEAD_SIZE + HEAD_SIZE // 4
    assert peak < 5 * MiB


def test_64_mib_text_stream_is_scanned_in_bounded_memory() -> None:
    chunk = b"Dupont;Jean;12,50;<b>;http://example.org\n" * (MiB // 41)

    peak, held = _peak_while_feeding("suivi.csv", b"nom;montant\n", chunk, 64)

    assert held <= HEAD_SIZE + HEAD_SIZE // 4
    assert peak < 5 * MiB
