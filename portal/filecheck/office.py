"""Office documents: OLE2 files (Word and Excel 97-2003, password-protected OOXML) told apart
by their directory, and the ZIP containers of OOXML and OpenDocument, with their macros."""

from __future__ import annotations

import re
import struct
from typing import Final

from portal.filecheck.verdict import Chunk, FileKind, Refusal, SniffResult
from portal.filecheck.zip import (
    FLAG_DATA_DESCRIPTOR,
    LOCAL_HEADER,
    LOCAL_SIGNATURE,
    METHOD_STORED,
    ZipMember,
)

# --- OLE2 (Office 97-2003) -------------------------------------------------------------

# A password-protected .docx/.xlsx/.pptx is an OLE2 file holding an "EncryptedPackage".
OLE2_EXTENSIONS: Final = frozenset({"doc", "xls", "docx", "xlsx", "pptx"})

OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# [MS-CFB] 2.6: directory entries are 128 bytes, at sector boundaries (512 or 4096 bytes),
# and begin with the UTF-16LE name of the stream or storage, NUL-terminated.
_OLE2_ENTRY_ALIGNMENT: Final = 128
_OLE2_NAMES: Final[dict[bytes, str]] = {
    "WordDocument\0".encode("utf-16-le"): "word",
    "Workbook\0".encode("utf-16-le"): "excel",
    "Book\0".encode("utf-16-le"): "excel",
    "PowerPoint Document\0".encode("utf-16-le"): "powerpoint",
    # [MS-OFFCRYPTO] 2.3.4.4: an encrypted OOXML document is an OLE2 file with this stream.
    "EncryptedPackage\0".encode("utf-16-le"): "encrypted",
    # VBA projects ([MS-OVBA]): Word keeps them in "Macros", Excel in "_VBA_PROJECT_CUR".
    "_VBA_PROJECT".encode("utf-16-le"): "macros",
    "Macros\0".encode("utf-16-le"): "macros",
}
_OLE2_NAME_PATTERN = re.compile(b"|".join(re.escape(name) for name in _OLE2_NAMES))
_OLE2_OVERLAP: Final = max(len(name) for name in _OLE2_NAMES) - 1


def is_ole2_header(head: bytes) -> bool:
    """True when *head* starts with a compound file header of version 3 or 4."""
    if len(head) < 512:
        return False
    major, byte_order, sector_shift = struct.unpack_from("<HHH", head, 0x1A)
    return byte_order == 0xFFFE and (major, sector_shift) in ((3, 9), (4, 12))


class Ole2Scan:
    """Finds the directory entries that tell a Word file from an Excel one, and macros."""

    def __init__(self) -> None:
        self._carry = b""
        self.found: set[str] = set()
        self.refusal: Refusal | None = None

    def feed(self, data: Chunk, offset: int) -> None:
        window = self._carry + data
        base = offset - len(self._carry)
        for match in _OLE2_NAME_PATTERN.finditer(window):
            if (base + match.start()) % _OLE2_ENTRY_ALIGNMENT == 0:
                self.found.add(_OLE2_NAMES[match.group()])
        if "macros" in self.found:
            self.refusal = Refusal.MACROS
        self._carry = window[-_OLE2_OVERLAP:]


def ole2_verdict(found: set[str], extension: str) -> SniffResult:
    """The verdict on an OLE2 file whose directory holds the streams *found* by `Ole2Scan`."""
    if "encrypted" in found:
        return SniffResult.refused(Refusal.ENCRYPTED_DOCUMENT, extension)
    if extension == "doc" and "word" in found:
        return SniffResult.accepted(FileKind.DOC, extension)
    if extension == "xls" and "excel" in found:
        return SniffResult.accepted(FileKind.XLS, extension)
    if "word" in found:
        return SniffResult.refused(Refusal.EXTENSION_MISMATCH, extension, FileKind.DOC)
    if "excel" in found:
        return SniffResult.refused(Refusal.EXTENSION_MISMATCH, extension, FileKind.XLS)
    # PowerPoint 97-2003 (macros hidden in a compressed stream), installers, e-mails.
    return SniffResult.refused(Refusal.TYPE_REFUSED, extension)


# --- OOXML and OpenDocument: ZIP containers ------------------------------------------

_OOXML_MAIN_FOLDERS: Final[dict[str, FileKind]] = {
    "word": FileKind.DOCX,
    "xl": FileKind.XLSX,
    "ppt": FileKind.PPTX,
}


def is_ooxml(paths: list[str]) -> bool:
    """True when the member *paths* (`/`-separated, case-folded) are an OOXML package's."""
    return "[content_types].xml" in paths


def ooxml_kind(paths: list[str]) -> FileKind | None:
    """The kind of an OOXML package by its main folder; None when it has none or several."""
    folders = {path.split("/", 1)[0] for path in paths if "/" in path}
    candidates = [kind for folder, kind in _OOXML_MAIN_FOLDERS.items() if folder in folders]
    return candidates[0] if len(candidates) == 1 else None


def ooxml_has_macros(paths: list[str]) -> bool:
    """True when an OOXML package holds macros."""
    # VBA projects, and Excel 4.0 macro sheets that need no VBA at all.
    return any(
        path.rsplit("/", 1)[-1].startswith("vbaproject") or path.startswith("xl/macrosheets/")
        for path in paths
    )


# OpenDocument 1.2 part 3, 3.3: the first member, stored, is "mimetype".
_ODF_MIMETYPES: Final[dict[bytes, FileKind]] = {
    b"application/vnd.oasis.opendocument.text": FileKind.ODT,
    b"application/vnd.oasis.opendocument.spreadsheet": FileKind.ODS,
    b"application/vnd.oasis.opendocument.presentation": FileKind.ODP,
}


def odf_kind(head: bytes, members: list[ZipMember]) -> FileKind | None:
    """The kind of an OpenDocument file by its `mimetype` member; None when it is not one."""
    if len(head) < LOCAL_HEADER.size or not any(
        member.name == "mimetype" and member.offset == 0 for member in members
    ):
        return None
    signature, _, flags, method, _, _, _, compressed, _, name_length, extra_length = (
        LOCAL_HEADER.unpack_from(head)
    )
    name = head[LOCAL_HEADER.size : LOCAL_HEADER.size + name_length]
    if signature != LOCAL_SIGNATURE or method != METHOD_STORED or name != b"mimetype":
        return None
    start = LOCAL_HEADER.size + name_length + extra_length
    for mimetype, kind in _ODF_MIMETYPES.items():
        size_matches = compressed == len(mimetype) or flags & FLAG_DATA_DESCRIPTOR
        if size_matches and head[start : start + len(mimetype)] == mimetype:
            return kind
    return None


def odf_has_macros(paths: list[str]) -> bool:
    """True when an OpenDocument file holds macros (Basic or scripts)."""
    return any(path.startswith(("basic/", "scripts/")) for path in paths)
