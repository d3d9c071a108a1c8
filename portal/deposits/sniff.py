"""Content-based type checks for deposited files, made in one pass over the upload stream.

Uploads go straight from the client into the encrypting object store, so the check cannot
reread the file: `TypeSniffer` sees every chunk once and keeps only a bounded head (the magic
bytes), a bounded tail (the ZIP central directory lives at the end of the archive) and a few
flags found by scanning. Memory stays bounded whatever the size of the file.

The members of a plain ZIP archive are checked on their content too, by the same sniffer as a
top-level file: the archive is walked as it streams by, each member is inflated in chunks and
fed to a `TypeSniffer` of its own, and what the walk saw must agree with the central directory
read at the end (so the bytes checked are the bytes every extractor will write).

Framework-free: the portal and the API pass the declared file name and the chunks in, and turn
a refused `SniffResult` into a French error for people or a problem detail for scripts.
"""

from __future__ import annotations

import hashlib
import re
import struct
import unicodedata
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum
from itertools import pairwise
from typing import Final, TypeAlias

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "HEAD_SIZE",
    "MAX_ZIP_MEMBERS",
    "MAX_ZIP_RATIO",
    "MAX_ZIP_UNCOMPRESSED",
    "TAIL_SIZE",
    "FileKind",
    "Refusal",
    "SniffResult",
    "TypeSniffer",
    "content_disposition",
    "safe_filename",
    "sniff",
]

HEAD_SIZE: Final = 64 * 1024
"""Bytes kept from the start of the stream: magic bytes, PDF marker, text and XML prolog."""

TAIL_SIZE: Final = 4 * 1024 * 1024
"""Bytes kept from the end of a ZIP stream: its central directory must fit in them."""

MAX_ZIP_MEMBERS: Final = 10_000
"""Beyond this many members an archive is refused as too complex to check."""

MAX_ZIP_UNCOMPRESSED: Final = 16 * 1024**3
"""Beyond this declared uncompressed total an archive is refused (zip bombs fill disks).

It also caps the bytes actually inflated while the members of a plain archive are checked."""

MAX_ZIP_RATIO: Final = 100
"""Beyond this many bytes inflated per byte of archive read, a plain archive is refused.

Checking members costs work in proportion to what they inflate to (about 100 MiB/s, most of it
inflating), and Deflate reaches 1000:1 on repeated bytes: this keeps the work a bounded
multiple of the upload. 100:1 is Apache POI's `ZipSecureFile` default; real exports (CSV, XML)
compress 3 to 20:1, and the ratio is taken over the whole archive read so far."""

# Inflated bytes allowed before the ratio applies: small archives of blank forms compress well.
_ZIP_RATIO_ALLOWANCE: Final = 16 * 1024**2

MAX_FILENAME_CHARS: Final = 150
# 255 bytes is the limit of a file name on ext4, XFS and APFS.
MAX_FILENAME_BYTES: Final = 255
FALLBACK_FILENAME: Final = "fichier"

# What `feed` accepts (`collections.abc.Buffer` only arrives in Python 3.12).
Chunk: TypeAlias = bytes | bytearray | memoryview


class FileKind(StrEnum):
    """A type of file that deposits accept."""

    PDF = "pdf"
    JPEG = "jpeg"
    PNG = "png"
    TIFF = "tiff"
    DOCX = "docx"
    XLSX = "xlsx"
    PPTX = "pptx"
    ODT = "odt"
    ODS = "ods"
    ODP = "odp"
    DOC = "doc"
    XLS = "xls"
    ZIP = "zip"
    XML = "xml"
    CSV = "csv"
    TXT = "txt"

    @property
    def content_type(self) -> str:
        """The MIME type the portal serves this kind with."""
        return _CONTENT_TYPES[self]

    @property
    def extensions(self) -> frozenset[str]:
        """File name extensions (lower case, no dot) consistent with this kind."""
        return _KIND_EXTENSIONS[self]

    @property
    def label_fr(self) -> str:
        """A short French name for messages."""
        return _KIND_LABELS_FR[self]


_CONTENT_TYPES: Final[dict[FileKind, str]] = {
    FileKind.PDF: "application/pdf",
    FileKind.JPEG: "image/jpeg",
    FileKind.PNG: "image/png",
    FileKind.TIFF: "image/tiff",
    FileKind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    FileKind.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    FileKind.PPTX: "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    FileKind.ODT: "application/vnd.oasis.opendocument.text",
    FileKind.ODS: "application/vnd.oasis.opendocument.spreadsheet",
    FileKind.ODP: "application/vnd.oasis.opendocument.presentation",
    FileKind.DOC: "application/msword",
    FileKind.XLS: "application/vnd.ms-excel",
    FileKind.ZIP: "application/zip",
    FileKind.XML: "application/xml",
    FileKind.CSV: "text/csv",
    FileKind.TXT: "text/plain",
}

_KIND_EXTENSIONS: Final[dict[FileKind, frozenset[str]]] = {
    FileKind.PDF: frozenset({"pdf"}),
    FileKind.JPEG: frozenset({"jpg", "jpeg"}),
    FileKind.PNG: frozenset({"png"}),
    FileKind.TIFF: frozenset({"tif", "tiff"}),
    FileKind.DOCX: frozenset({"docx"}),
    FileKind.XLSX: frozenset({"xlsx"}),
    FileKind.PPTX: frozenset({"pptx"}),
    FileKind.ODT: frozenset({"odt"}),
    FileKind.ODS: frozenset({"ods"}),
    FileKind.ODP: frozenset({"odp"}),
    FileKind.DOC: frozenset({"doc"}),
    FileKind.XLS: frozenset({"xls"}),
    FileKind.ZIP: frozenset({"zip"}),
    FileKind.XML: frozenset({"xml"}),
    FileKind.CSV: frozenset({"csv"}),
    FileKind.TXT: frozenset({"txt"}),
}

_KIND_LABELS_FR: Final[dict[FileKind, str]] = {
    FileKind.PDF: "document PDF",
    FileKind.JPEG: "image JPEG",
    FileKind.PNG: "image PNG",
    FileKind.TIFF: "image TIFF",
    FileKind.DOCX: "document Word",
    FileKind.XLSX: "classeur Excel",
    FileKind.PPTX: "présentation PowerPoint",
    FileKind.ODT: "texte OpenDocument",
    FileKind.ODS: "classeur OpenDocument",
    FileKind.ODP: "présentation OpenDocument",
    FileKind.DOC: "document Word 97-2003",
    FileKind.XLS: "classeur Excel 97-2003",
    FileKind.ZIP: "archive ZIP",
    FileKind.XML: "fichier XML",
    FileKind.CSV: "fichier CSV",
    FileKind.TXT: "fichier texte",
}

ACCEPTED_EXTENSIONS: Final[frozenset[str]] = frozenset().union(*_KIND_EXTENSIONS.values())
"""Extensions (lower case, no dot) a deposited file may have, e.g. for the form's `accept`."""

# Names that a browser or the desktop would render or run: refused before a byte is read.
_ACTIVE_EXTENSIONS: Final = frozenset(
    {"htm", "html", "xhtml", "xht", "shtml", "mht", "mhtml", "svg", "svgz", "js", "mjs", "hta"}
    | {"xsl", "xslt", "swf", "jnlp", "wsf", "vbs", "vbe", "jse"}
)

# Members of a plain archive: the accepted types except archives (they are not checked inside).
_ZIP_MEMBER_EXTENSIONS: Final = ACCEPTED_EXTENSIONS - {"zip"}
_ARCHIVE_EXTENSIONS: Final = frozenset(
    {"zip", "zipx", "7z", "rar", "tar", "gz", "tgz", "bz2", "tbz2", "xz", "txz", "zst", "lz"}
    | {"lzh", "lha", "arj", "cab", "iso", "jar", "war", "apk"}
)
# Metadata that desktop archivers add on their own; refusing them would only puzzle people.
_IGNORED_MEMBER_NAMES: Final = frozenset({".ds_store", "thumbs.db", "desktop.ini"})

_ZIP_CONTAINER_EXTENSIONS: Final = frozenset({"zip", "docx", "xlsx", "pptx", "odt", "ods", "odp"})
# A password-protected .docx/.xlsx/.pptx is an OLE2 file holding an "EncryptedPackage".
_OLE2_EXTENSIONS: Final = frozenset({"doc", "xls", "docx", "xlsx", "pptx"})
_TEXT_KINDS: Final[dict[str, FileKind]] = {
    "xml": FileKind.XML,
    "csv": FileKind.CSV,
    "txt": FileKind.TXT,
}


class Refusal(StrEnum):
    """Why a file is refused: a stable machine code, for the API and the audit trail."""

    EMPTY = "empty"
    TYPE_REFUSED = "type_refused"
    ACTIVE_CONTENT = "active_content"
    EXTENSION_MISMATCH = "extension_mismatch"
    MACROS = "macros"
    ENCRYPTED_DOCUMENT = "encrypted_document"
    ZIP_INVALID = "zip_invalid"
    ZIP_MEMBER_REFUSED = "zip_member_refused"
    ZIP_NESTED = "zip_nested"
    ZIP_ENCRYPTED = "zip_encrypted"
    ZIP_TOO_COMPLEX = "zip_too_complex"
    ZIP_PATH_TRAVERSAL = "zip_path_traversal"
    ZIP_METHOD_UNSUPPORTED = "zip_method_unsupported"

    @property
    def message_fr(self) -> str:
        """A French message for people; it never repeats the file's name or contents."""
        return _MESSAGES_FR[self]


_ACCEPTED_TYPES_FR: Final = (
    "PDF, images de numérisation (JPEG, PNG, TIFF), documents bureautiques, XML, CSV"
)
_MESSAGES_FR: Final[dict[Refusal, str]] = {
    Refusal.EMPTY: "Le fichier est vide.",
    Refusal.TYPE_REFUSED: (
        f"Type de fichier refusé : seuls les {_ACCEPTED_TYPES_FR} et archives ZIP vérifiées "
        "sont acceptés."
    ),
    Refusal.ACTIVE_CONTENT: (
        "Contenu actif refusé : les pages web (HTML), images SVG, scripts, feuilles de style "
        "XSLT et déclarations DOCTYPE ne sont pas acceptés."
    ),
    Refusal.EXTENSION_MISMATCH: (
        "Le contenu du fichier ne correspond pas à l'extension de son nom : renommez-le avec "
        "la bonne extension ou déposez le fichier d'origine."
    ),
    Refusal.MACROS: (
        "Document contenant des macros refusé : enregistrez-le sans macros (par exemple au "
        "format .docx ou .xlsx), puis déposez-le à nouveau."
    ),
    Refusal.ENCRYPTED_DOCUMENT: (
        "Document protégé par mot de passe refusé : son contenu ne peut pas être vérifié. "
        "Retirez la protection, puis déposez-le à nouveau."
    ),
    Refusal.ZIP_INVALID: "Archive ZIP refusée : elle est endommagée ou mal formée.",
    Refusal.ZIP_MEMBER_REFUSED: (
        "Archive ZIP refusée : elle contient un fichier d'un type non accepté. Une archive ne "
        f"peut contenir que des {_ACCEPTED_TYPES_FR} ou textes."
    ),
    Refusal.ZIP_NESTED: (
        "Archive ZIP refusée : elle contient une autre archive. Déposez une seule archive, "
        "sans archive à l'intérieur."
    ),
    Refusal.ZIP_ENCRYPTED: (
        "Archive ZIP refusée : elle est protégée par mot de passe, son contenu ne peut pas "
        "être vérifié."
    ),
    Refusal.ZIP_TOO_COMPLEX: (
        "Archive ZIP refusée : elle est trop complexe pour être vérifiée (trop de fichiers, "
        "trop volumineuse une fois décompressée ou en plusieurs parties). Déposez les fichiers "
        "séparément ou en plusieurs archives."
    ),
    Refusal.ZIP_PATH_TRAVERSAL: (
        "Archive ZIP refusée : elle contient des chemins de fichiers dangereux (chemin absolu, "
        "« .. » ou lien symbolique)."
    ),
    Refusal.ZIP_METHOD_UNSUPPORTED: (
        "Archive ZIP refusée : un fichier y est compressé d'une manière que le portail ne sait "
        "pas vérifier. Recréez l'archive avec la compression habituelle (Deflate) ou déposez "
        "les fichiers séparément."
    ),
}


@dataclass(frozen=True, slots=True)
class SniffResult:
    """The verdict on one file: the kind to serve it as, or the reason it is refused.

    `extension` is the declared one (lower case, no dot, possibly empty): it comes from the
    user's file name, so it is never put in messages. `message_fr` is empty when `ok`.
    An archive refused for one of its members says which one by its position among the files
    of the archive (1 for the first), never by its name, and why (`member_reason`).
    """

    kind: FileKind | None
    content_type: str | None
    extension: str
    ok: bool
    reason: Refusal | None
    message_fr: str
    member_position: int | None = None
    member_reason: Refusal | None = None

    def __post_init__(self) -> None:
        if self.ok != (self.reason is None) or (self.ok and self.kind is None):
            raise ValueError("an accepted result has a kind and no reason, a refused one a reason")
        if (self.member_position is None) != (self.member_reason is None):
            raise ValueError("a refused member has a position and a reason")

    @classmethod
    def accepted(cls, kind: FileKind, extension: str) -> SniffResult:
        """Build the result of an accepted file."""
        return cls(kind, kind.content_type, extension, True, None, "")

    @classmethod
    def refused(cls, reason: Refusal, extension: str, kind: FileKind | None = None) -> SniffResult:
        """Build the result of a refused file; `kind` is what the content looked like, if known."""
        message = reason.message_fr
        if reason is Refusal.EXTENSION_MISMATCH and kind is not None:
            message = (
                f"Le contenu du fichier ({kind.label_fr}) ne correspond pas à l'extension de "
                "son nom : renommez-le avec la bonne extension ou déposez le fichier d'origine."
            )
        return cls(kind, None, extension, False, reason, message)

    @classmethod
    def member_refused(cls, position: int, member: SniffResult, extension: str) -> SniffResult:
        """Build the result of an archive refused because its member at `position` is."""
        if member.reason is None:
            raise ValueError("only a refused member refuses its archive")
        message = (
            f"Archive ZIP refusée : le fichier n° {position} qu'elle contient est refusé. "
            f"{member.message_fr}"
        )
        return cls(
            FileKind.ZIP,
            None,
            extension,
            False,
            Refusal.ZIP_MEMBER_REFUSED,
            message,
            member_position=position,
            member_reason=member.reason,
        )


# --- file names ------------------------------------------------------------------------

# Characters Windows refuses in names; `:` would also name an NTFS alternate data stream.
_WINDOWS_FORBIDDEN: Final = frozenset('<>:"|?*')
_WINDOWS_DEVICE = re.compile(r"(?i)^(?:con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(?:\.|$)")
# RFC 6266 §4.3: the plain `filename` is a fallback for old agents; keep it to safe ASCII
# (no quote, backslash, percent or semicolon that a lax parser could misread).
_ASCII_FALLBACK_UNSAFE = re.compile(r"[^A-Za-z0-9 !#$&'()+,\-.=@\[\]^_`{}~]")


def safe_filename(name: str) -> str:
    """Return the user's file name made safe for display, saving and `Content-Disposition`."""
    kept: list[str] = []
    for char in unicodedata.normalize("NFC", name):
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")
        elif category in ("Cf", "Cs"):
            # Format characters include the bidi overrides that show "rapport<U+202E>fdp.exe"
            # as "rapportexe.pdf"; lone surrogates cannot be encoded at all.
            continue
        elif char in _WINDOWS_FORBIDDEN:
            kept.append("_")
        else:
            kept.append(char)
    text = "".join(kept).replace("\\", "/").rsplit("/", 1)[-1]
    text = " ".join(text.split())
    # A leading dot hides the file on Unix; Windows drops trailing dots and spaces.
    text = text.strip(" .")
    if _WINDOWS_DEVICE.match(text):
        text = "_" + text
    if len(text) > MAX_FILENAME_CHARS or len(text.encode("utf-8")) > MAX_FILENAME_BYTES:
        text = _shorten(text)
    return text or FALLBACK_FILENAME


def _shorten(text: str) -> str:
    stem, dot, extension = text.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        stem, extension = text, ""
    suffix = f".{extension}" if extension else ""
    stem = stem[: MAX_FILENAME_CHARS - len(suffix)]
    while stem and len((stem + suffix).encode("utf-8")) > MAX_FILENAME_BYTES:
        stem = stem[:-1]
    return (stem.rstrip(" .") or FALLBACK_FILENAME) + suffix


def content_disposition(name: str) -> str:
    """Return an `attachment` Content-Disposition value for the file name (RFC 6266, 5987)."""
    safe = safe_filename(name)
    stem, dot, extension = safe.rpartition(".")
    if not dot:
        stem, extension = safe, ""
    ascii_stem = _ascii_only(stem)
    if not ascii_stem.strip(" ._"):
        ascii_stem = FALLBACK_FILENAME
    ascii_extension = _ascii_only(extension)
    fallback = f"{ascii_stem}.{ascii_extension}" if ascii_extension else ascii_stem
    encoded = urllib.parse.quote(safe, safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _ascii_only(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(_ASCII_FALLBACK_UNSAFE.sub("_", ascii_text).split()).strip(" .")


def _extension_of(name: str) -> str:
    # The extension of the name as it will be served, so what is checked is what is saved.
    stem, dot, extension = safe_filename(name).rpartition(".")
    return extension.lower() if dot and stem else ""


# --- magic bytes and text --------------------------------------------------------------

_ZIP_LOCAL_MAGIC: Final = b"PK\x03\x04"
# An archive with no member is its end record alone.
_EOCD_MAGIC: Final = b"PK\x05\x06"
_OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SIMPLE_MAGICS: Final[tuple[tuple[bytes, FileKind], ...]] = (
    (b"\x89PNG\r\n\x1a\n", FileKind.PNG),
    (b"\xff\xd8\xff", FileKind.JPEG),
    (b"II*\x00", FileKind.TIFF),
    (b"MM\x00*", FileKind.TIFF),
)
# Readers find the header anywhere in the first 1024 bytes (PDF Reference 1.7, implementation
# note 13 in appendix H).
_PDF_MARKER: Final = b"%PDF-"
_PDF_WINDOW: Final = 1024

_UTF8_BOM: Final = b"\xef\xbb\xbf"
_TEXT_CONTROLS: Final = frozenset(range(0x20)) - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1A}
_NOT_TEXT_CONTROLS: Final = bytes(b for b in range(256) if b not in _TEXT_CONTROLS)
_ASCII_LOWER: Final = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")

# Markers of content a browser would render or run, searched in lower case. Every search is
# a full pass over the chunk, so the rare "script" and "<" gate the others.
_SCRIPT_TAG: Final = b"<script"
_SCRIPT_URLS: Final = (b"javascript:", b"vbscript:")
_ACTIVE_TAGS: Final = (b"<html", b"<svg", b"<iframe")
_TAG_ENDS: Final = b" \t\r\n\f/>:"
# Namespaced elements (<h:script xmlns:h="…/xhtml">) are HTML or SVG whatever the prefix.
_ACTIVE_NAMESPACES: Final = (b"http://www.w3.org/1999/xhtml", b"http://www.w3.org/2000/svg")
# Browsers apply an XSLT stylesheet to an XML file, and it can write HTML with scripts.
_XML_STYLESHEET: Final = b"<?xml-stylesheet"
_DOCTYPE_HTML = re.compile(rb"<!doctype\s+html")
# A DTD in a deposited XML would reach the partners' parsers (XXE, entity expansion), and the
# flows never carry one (portal.flows.encoding refuses it too).
_XML_DTD_LITERALS: Final = (b"<!doctype", b"<!entity")
# Longest marker plus the character after it: a marker split between two chunks is whole in
# the window made of the previous chunk's last bytes and the next chunk.
_TEXT_OVERLAP: Final = 64

_XML_MISC = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_XML_ROOT = re.compile(rb"<([^\s/>!?]+)")


def _has_tag(lowered: bytes, tag: bytes) -> bool:
    at = lowered.find(tag)
    while at >= 0:
        after = lowered[at + len(tag) : at + len(tag) + 1]
        if after and after in _TAG_ENDS:
            return True
        at = lowered.find(tag, at + 1)
    return False


def _has_active_marker(lowered: bytes, *, is_xml: bool) -> bool:
    if b"script" in lowered and (
        any(url in lowered for url in _SCRIPT_URLS) or _has_tag(lowered, _SCRIPT_TAG)
    ):
        return True
    if b"<" not in lowered:
        return False
    if any(_has_tag(lowered, tag) for tag in _ACTIVE_TAGS):
        return True
    if b"w3.org/" in lowered and any(ns in lowered for ns in _ACTIVE_NAMESPACES):
        return True
    if _XML_STYLESHEET in lowered:
        return True
    if b"<!" in lowered:
        if is_xml and any(literal in lowered for literal in _XML_DTD_LITERALS):
            return True
        at = lowered.find(b"<!doctype")
        while at >= 0:
            if _DOCTYPE_HTML.match(lowered, at):
                return True
            at = lowered.find(b"<!doctype", at + 1)
    return False


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    controls = len(head.translate(None, _NOT_TEXT_CONTROLS))
    return controls * 100 > len(head)


def _xml_root_name(head: bytes) -> bytes | None:
    """Return the lower-case local name of the root element, if the head shows it."""
    at = len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0
    while match := _XML_MISC.match(head, at):
        at = match.end()
    root = _XML_ROOT.match(head, at)
    if root is None:
        return None
    return root.group(1).rsplit(b":", 1)[-1].lower()


class _TextScan:
    """Looks for NUL bytes and active-content markers in every chunk of a text file."""

    def __init__(self, *, is_xml: bool) -> None:
        self._is_xml = is_xml
        self._carry = b""
        self.refusal: Refusal | None = None

    def feed(self, data: Chunk, offset: int) -> None:
        del offset  # text markers matter wherever they are
        window = self._carry + data
        if b"\x00" in window:
            self.refusal = Refusal.TYPE_REFUSED
        elif _has_active_marker(window.translate(_ASCII_LOWER), is_xml=self._is_xml):
            self.refusal = Refusal.ACTIVE_CONTENT
        self._carry = window[-_TEXT_OVERLAP:]


# --- OLE2 (Office 97-2003) -------------------------------------------------------------

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


def _is_ole2_header(head: bytes) -> bool:
    if len(head) < 512:
        return False
    major, byte_order, sector_shift = struct.unpack_from("<HHH", head, 0x1A)
    return byte_order == 0xFFFE and (major, sector_shift) in ((3, 9), (4, 12))


class _Ole2Scan:
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


# --- ZIP (APPNOTE.TXT 6.3.10) ----------------------------------------------------------

_EOCD = struct.Struct("<IHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_ZIP64_LOCATOR_SIGNATURE: Final = 0x07064B50
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
_ZIP64_EOCD_SIGNATURE: Final = 0x06064B50
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_CENTRAL_SIGNATURE: Final = 0x02014B50
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIGNATURE: Final = 0x04034B50
_EXTRA_HEADER = struct.Struct("<HH")
_ZIP64_EXTRA_ID: Final = 0x0001
# Info-ZIP Unicode Path: 7-Zip and unzip extract under this name rather than the header's.
_UNICODE_PATH_EXTRA_ID: Final = 0x7075
_MAX_COMMENT: Final = 0xFFFF
_FLAG_ENCRYPTED: Final = 0x0001
_FLAG_DATA_DESCRIPTOR: Final = 0x0008
_FLAG_STRONG_ENCRYPTION: Final = 0x0040
_FLAG_UTF8: Final = 0x0800
# APPNOTE 4.4.4 bit 13: the local headers are masked, the central directory encrypted.
_FLAG_MASKED_HEADERS: Final = 0x2000
_METHOD_STORED: Final = 0
_METHOD_DEFLATED: Final = 8
_METHOD_AES: Final = 99
_S_IFMT: Final = 0o170000
_S_IFLNK: Final = 0o120000

# OpenDocument 1.2 part 3, 3.3: the first member, stored, is "mimetype".
_ODF_MIMETYPES: Final[dict[bytes, FileKind]] = {
    b"application/vnd.oasis.opendocument.text": FileKind.ODT,
    b"application/vnd.oasis.opendocument.spreadsheet": FileKind.ODS,
    b"application/vnd.oasis.opendocument.presentation": FileKind.ODP,
}
_OOXML_MAIN_FOLDERS: Final[dict[str, FileKind]] = {
    "word": FileKind.DOCX,
    "xl": FileKind.XLSX,
    "ppt": FileKind.PPTX,
}


class _ZipRefused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _ZipMember:
    names: tuple[str, ...]  # the header name, then any Unicode Path alias
    name_length: int
    flags: int
    method: int
    compressed_size: int
    uncompressed_size: int
    offset: int
    disk: int
    is_symlink: bool
    crc: int

    @property
    def name(self) -> str:
        return self.names[0]


class _TailRing:
    """The last `capacity` bytes of a stream, in blocks allocated only as the stream grows."""

    def __init__(self, capacity: int, block_size: int = 64 * 1024) -> None:
        self._capacity = capacity
        self._block_size = min(block_size, capacity)
        self._blocks: list[bytearray] = []
        self.total = 0

    @property
    def held(self) -> int:
        """Bytes allocated for the blocks."""
        return sum(len(block) for block in self._blocks)

    @property
    def start(self) -> int:
        """The stream offset of the oldest byte still held."""
        return max(0, self.total - self._capacity)

    def write(self, data: memoryview) -> None:
        size = len(data)
        if size > self._capacity:
            self.total += size - self._capacity
            data = data[size - self._capacity :]
            size = self._capacity
        position = self.total % self._capacity
        done = 0
        while done < size:
            block_index, within = divmod(position, self._block_size)
            while len(self._blocks) <= block_index:
                first = len(self._blocks) * self._block_size
                self._blocks.append(bytearray(min(self._block_size, self._capacity - first)))
            block = self._blocks[block_index]
            take = min(len(block) - within, size - done)
            block[within : within + take] = data[done : done + take]
            done += take
            position = (position + take) % self._capacity
        self.total += size

    def read(self, start: int, end: int) -> bytes:
        if not self.start <= start <= end <= self.total:
            raise ValueError("range outside the tail buffer")
        out = bytearray()
        position = start % self._capacity
        while len(out) < end - start:
            block_index, within = divmod(position, self._block_size)
            block = self._blocks[block_index]
            take = min(len(block) - within, end - start - len(out))
            out += block[within : within + take]
            position = (position + take) % self._capacity
        return bytes(out)


@dataclass(frozen=True, slots=True)
class _CentralDirectory:
    entries: int
    offset: int
    end: int  # where the end records begin


def _locate_central_directory(ring: _TailRing, max_members: int) -> _CentralDirectory:
    """Find the end records at the end of the stream and check what they announce."""
    total = ring.total
    search = min(total - ring.start, _EOCD.size + _MAX_COMMENT)
    region = ring.read(total - search, total)
    at = region.rfind(_EOCD_MAGIC)
    # The comment must run exactly to the end: no bytes hidden after the archive.
    while at >= 0 and not (
        at + _EOCD.size <= len(region)
        and at + _EOCD.size + _EOCD.unpack_from(region, at)[7] == len(region)
    ):
        at = region.rfind(_EOCD_MAGIC, 0, at + 3)
    if at < 0:
        if ring.start > 0 and search < _EOCD.size + _MAX_COMMENT:
            raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)
        raise _ZipRefused(Refusal.ZIP_INVALID)
    eocd_at = total - search + at
    _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(region, at)
    cd_end = eocd_at
    # 0xFFFF and 0xFFFFFFFF say "see the ZIP64 end record" (APPNOTE 4.4.1.4).
    needs_zip64 = 0xFFFF in (disk, cd_disk, disk_entries, entries) or 0xFFFFFFFF in (
        cd_size,
        cd_offset,
    )

    locator_at = eocd_at - _ZIP64_LOCATOR.size
    if locator_at >= ring.start:
        locator = _ZIP64_LOCATOR.unpack(ring.read(locator_at, eocd_at))
        if locator[0] == _ZIP64_LOCATOR_SIGNATURE:
            _, z64_disk, z64_at, disks = locator
            if z64_disk != 0 or disks > 1:
                raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)
            if z64_at + _ZIP64_EOCD.size > locator_at:
                raise _ZipRefused(Refusal.ZIP_INVALID)
            if z64_at < ring.start:
                raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)
            record = _ZIP64_EOCD.unpack(ring.read(z64_at, z64_at + _ZIP64_EOCD.size))
            signature, record_size, _, _, disk, cd_disk, disk_entries, entries = record[:8]
            cd_size, cd_offset = record[8:]
            if signature != _ZIP64_EOCD_SIGNATURE or z64_at + 12 + record_size != locator_at:
                raise _ZipRefused(Refusal.ZIP_INVALID)
            cd_end = z64_at
            needs_zip64 = False
    elif needs_zip64 and ring.start > 0:
        raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)  # the ZIP64 locator is before the tail
    if needs_zip64:
        raise _ZipRefused(Refusal.ZIP_INVALID)

    if disk != 0 or cd_disk != 0 or disk_entries != entries:
        raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)  # a split (multi-volume) archive
    if entries == 0:
        raise _ZipRefused(Refusal.EMPTY)
    if entries > max_members:
        raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)
    if cd_offset + cd_size != cd_end:
        raise _ZipRefused(Refusal.ZIP_INVALID)
    if cd_offset < ring.start:
        raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)  # the directory does not fit in the tail
    return _CentralDirectory(entries=entries, offset=cd_offset, end=cd_end)


def _read_members(ring: _TailRing, directory: _CentralDirectory) -> list[_ZipMember]:
    """Parse every central directory entry; they must fill the directory exactly."""
    members: list[_ZipMember] = []
    at = directory.offset
    for _ in range(directory.entries):
        if at + _CENTRAL.size > directory.end:
            raise _ZipRefused(Refusal.ZIP_INVALID)
        fields = _CENTRAL.unpack(ring.read(at, at + _CENTRAL.size))
        signature, _, _, flags, method, _, _, crc, compressed, uncompressed = fields[:10]
        name_length, extra_length, comment_length, disk, _, external, offset = fields[10:]
        name_at = at + _CENTRAL.size
        extra_at = name_at + name_length
        end = extra_at + extra_length + comment_length
        if signature != _CENTRAL_SIGNATURE or end > directory.end:
            raise _ZipRefused(Refusal.ZIP_INVALID)
        names = [_decode_member_name(ring.read(name_at, extra_at), utf8=bool(flags & _FLAG_UTF8))]
        for header_id, body in _extra_fields(ring.read(extra_at, extra_at + extra_length)):
            if header_id == _ZIP64_EXTRA_ID:
                # APPNOTE 4.5.3: only the fields whose 32-bit value is the sentinel, in order.
                values = iter(struct.unpack_from(f"<{len(body) // 8}Q", body))
                try:
                    if uncompressed == 0xFFFFFFFF:
                        uncompressed = next(values)
                    if compressed == 0xFFFFFFFF:
                        compressed = next(values)
                    if offset == 0xFFFFFFFF:
                        offset = next(values)
                except StopIteration:
                    raise _ZipRefused(Refusal.ZIP_INVALID) from None
            elif header_id == _UNICODE_PATH_EXTRA_ID and len(body) > 5:
                names.append(_decode_member_name(body[5:], utf8=True))  # after version, CRC
        members.append(
            _ZipMember(
                names=tuple(names),
                name_length=name_length,
                flags=flags,
                method=method,
                compressed_size=compressed,
                uncompressed_size=uncompressed,
                offset=offset,
                disk=disk,
                # Unix mode bits, in the high half of the external attributes: whatever host
                # system the entry claims, an extractor that honours them makes a link.
                is_symlink=(external >> 16) & _S_IFMT == _S_IFLNK,
                crc=crc,
            )
        )
        at = end
    if at != directory.end:
        raise _ZipRefused(Refusal.ZIP_INVALID)
    return members


def _extra_fields(extra: bytes) -> Iterator[tuple[int, bytes]]:
    at = 0
    # Like zipfile, tolerate fewer than 4 trailing bytes (padding some writers leave).
    while at + _EXTRA_HEADER.size <= len(extra):
        header_id, size = _EXTRA_HEADER.unpack_from(extra, at)
        body = extra[at + _EXTRA_HEADER.size : at + _EXTRA_HEADER.size + size]
        if len(body) != size:
            raise _ZipRefused(Refusal.ZIP_INVALID)
        yield header_id, body
        at += _EXTRA_HEADER.size + size


def _decode_member_name(raw: bytes, *, utf8: bool) -> str:
    try:
        return raw.decode("utf-8" if utf8 else "cp437")
    except UnicodeDecodeError:
        # Extractors disagree on undecodable names; refuse rather than guess which one wins.
        raise _ZipRefused(Refusal.ZIP_INVALID) from None


def _is_dangerous_member_name(name: str) -> bool:
    if any(unicodedata.category(char) == "Cc" for char in name):
        return True  # a NUL or CR would cut or fold the name in some extractors
    path = name.replace("\\", "/")
    if path.startswith("/") or ":" in path:
        return True  # absolute, drive letter (C:) or NTFS alternate data stream
    # Windows drops trailing dots and spaces from each component, so ". ." is ".." there.
    return any(part not in ("", ".") and not part.strip(". ") for part in path.split("/"))


def _check_zip_structure(members: list[_ZipMember], cd_offset: int, max_uncompressed: int) -> None:
    seen: set[str] = set()
    uncompressed = 0
    for member in members:
        if member.is_symlink or any(_is_dangerous_member_name(name) for name in member.names):
            raise _ZipRefused(Refusal.ZIP_PATH_TRAVERSAL)
        if member.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION) or (
            member.method == _METHOD_AES
        ):
            raise _ZipRefused(Refusal.ZIP_ENCRYPTED)
        if member.disk != 0:
            raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)
        if member.name in seen:
            raise _ZipRefused(Refusal.ZIP_INVALID)  # two members, one name: which one wins?
        seen.add(member.name)
        uncompressed += member.uncompressed_size
    if uncompressed > max_uncompressed:
        raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)
    # Members must tile the archive from offset 0 without overlapping: overlapping entries
    # are how the smallest zip bombs multiply their output (Fifield, "A better zip bomb").
    spans = sorted(
        (member.offset, member.offset + _LOCAL.size + member.name_length + member.compressed_size)
        for member in members
    )
    if spans[0][0] != 0 or spans[-1][1] > cd_offset:
        raise _ZipRefused(Refusal.ZIP_INVALID)
    if any(previous_end > start for (_, previous_end), (start, _) in pairwise(spans)):
        raise _ZipRefused(Refusal.ZIP_INVALID)


def _odf_kind(head: bytes, members: list[_ZipMember]) -> FileKind | None:
    if len(head) < _LOCAL.size or not any(
        member.name == "mimetype" and member.offset == 0 for member in members
    ):
        return None
    signature, _, flags, method, _, _, _, compressed, _, name_length, extra_length = (
        _LOCAL.unpack_from(head)
    )
    name = head[_LOCAL.size : _LOCAL.size + name_length]
    if signature != _LOCAL_SIGNATURE or method != _METHOD_STORED or name != b"mimetype":
        return None
    start = _LOCAL.size + name_length + extra_length
    for mimetype, kind in _ODF_MIMETYPES.items():
        size_matches = compressed == len(mimetype) or flags & _FLAG_DATA_DESCRIPTOR
        if size_matches and head[start : start + len(mimetype)] == mimetype:
            return kind
    return None


def _zip_verdict(
    ring: _TailRing,
    head: bytes,
    extension: str,
    *,
    max_members: int,
    max_uncompressed: int,
    walk: _MemberWalk | None,
) -> SniffResult:
    try:
        directory = _locate_central_directory(ring, max_members)
        members = _read_members(ring, directory)
        _check_zip_structure(members, directory.offset, max_uncompressed)
    except _ZipRefused as refused:
        return SniffResult.refused(refused.reason, extension, FileKind.ZIP)

    paths = [member.name.replace("\\", "/").casefold() for member in members]
    has_macros = False
    if "[content_types].xml" in paths:
        folders = {path.split("/", 1)[0] for path in paths if "/" in path}
        candidates = [kind for folder, kind in _OOXML_MAIN_FOLDERS.items() if folder in folders]
        if len(candidates) != 1:
            return SniffResult.refused(Refusal.TYPE_REFUSED, extension)
        kind = candidates[0]
        # VBA projects, and Excel 4.0 macro sheets that need no VBA at all.
        has_macros = any(
            path.rsplit("/", 1)[-1].startswith("vbaproject") or path.startswith("xl/macrosheets/")
            for path in paths
        )
    elif odf_kind := _odf_kind(head, members):
        kind = odf_kind
        has_macros = any(path.startswith(("basic/", "scripts/")) for path in paths)
    else:
        kind = FileKind.ZIP

    if extension not in kind.extensions:
        return SniffResult.refused(Refusal.EXTENSION_MISMATCH, extension, kind)
    if has_macros:
        return SniffResult.refused(Refusal.MACROS, extension, kind)
    if kind is FileKind.ZIP:
        for member in members:
            if refusal := _member_refusal(member):
                return SniffResult.refused(refusal, extension, kind)
        if walk is not None and (refusal := walk.disagreement(members, directory.offset)):
            return SniffResult.refused(refusal, extension, kind)
    return SniffResult.accepted(kind, extension)


def _member_refusal(member: _ZipMember) -> Refusal | None:
    for basename in _file_basenames(member.names):
        extension = _extension_of(basename)
        if extension in _ARCHIVE_EXTENSIONS:
            return Refusal.ZIP_NESTED
        if extension not in _ZIP_MEMBER_EXTENSIONS:
            return Refusal.ZIP_MEMBER_REFUSED
    return None


def _file_basenames(names: Iterable[str]) -> Iterator[str]:
    """The last component of each name that an extractor writes as a file worth checking."""
    for name in names:
        path = name.replace("\\", "/")
        if path.endswith("/"):
            continue  # a folder
        basename = path.rsplit("/", 1)[-1]
        if basename.casefold() in _IGNORED_MEMBER_NAMES:
            continue
        if path.startswith("__MACOSX/") and basename.startswith("._"):
            continue  # macOS resource forks (AppleDouble), written by the Finder's "Compress"
        yield basename


def _content_extensions(names: Iterable[str]) -> frozenset[str]:
    """The extensions a member's content is checked under (those refused by name are not)."""
    extensions = (_extension_of(basename) for basename in _file_basenames(names))
    return frozenset(extension for extension in extensions if extension in _ZIP_MEMBER_EXTENSIONS)


# --- the members of a plain archive, checked on their content as the stream goes by ----

_CENTRAL_MAGIC: Final = b"PK\x01\x02"
_ZIP64_EOCD_MAGIC: Final = b"PK\x06\x06"
_DESCRIPTOR_MAGIC: Final = b"PK\x07\x08"
_DESCRIPTOR_NARROW = struct.Struct("<III")
_DESCRIPTOR_WIDE = struct.Struct("<IQQ")
# A data descriptor is known by what follows it: up to 24 bytes, then the next signature.
_DESCRIPTOR_LOOKAHEAD: Final = len(_DESCRIPTOR_MAGIC) + _DESCRIPTOR_WIDE.size + 4
_SENTINEL_32: Final = 0xFFFFFFFF
# Inflated bytes handed to a member's sniffer at a time, and compressed bytes given to the
# inflater at a time (what it cannot take yet it copies, at every call).
_INFLATE_CHUNK: Final = 256 * 1024
_INFLATE_INPUT: Final = 64 * 1024


class _MemberRefused(Exception):
    def __init__(self, result: SniffResult) -> None:
        super().__init__(result.reason)
        self.result = result


class _WalkState(Enum):
    HEADER = "header"
    DATA = "data"
    DESCRIPTOR = "descriptor"
    DONE = "done"  # the central directory is reached
    STOPPED = "stopped"  # a refusal is known


@dataclass(frozen=True, slots=True)
class _WalkedMember:
    """What the walk saw of one member, compared at the end with its central directory entry."""

    offset: int
    name_digest: bytes
    method: int
    compressed_size: int
    uncompressed_size: int
    crc: int
    extensions: frozenset[str]


def _name_digest(name: str) -> bytes:
    # A digest rather than the name: local names are not bounded by the tail buffer.
    return hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()


class _Inflow:
    """The member being read: where its data ends, what it inflated to, who checks it."""

    __slots__ = (
        "crc",
        "data_at",
        "decoder",
        "extensions",
        "method",
        "name_digest",
        "offset",
        "position",
        "produced",
        "read",
        "remaining",
        "running_crc",
        "sniffers",
        "uncompressed_size",
    )

    def __init__(
        self,
        *,
        offset: int,
        data_at: int,
        name_digest: bytes,
        method: int,
        sizes: tuple[int, int, int] | None,
        extensions: frozenset[str],
        sniffers: tuple[TypeSniffer, ...],
        position: int,
    ) -> None:
        self.offset = offset
        self.data_at = data_at
        self.name_digest = name_digest
        self.method = method
        self.extensions = extensions
        self.sniffers = sniffers
        self.position = position
        # CRC-32 and sizes from the local header, or None when a data descriptor follows.
        self.crc: int | None = None
        self.remaining: int | None = None
        self.uncompressed_size: int | None = None
        if sizes is not None:
            self.crc, self.remaining, self.uncompressed_size = sizes
        self.decoder = zlib.decompressobj(-zlib.MAX_WBITS) if method == _METHOD_DEFLATED else None
        self.read = 0  # compressed bytes consumed
        self.produced = 0  # bytes inflated
        self.running_crc = 0


class _MemberWalk:
    """Walks the local headers of a plain ZIP stream and checks each member on its content.

    Each member's bytes are inflated in chunks of `_INFLATE_CHUNK` and fed to a `TypeSniffer`
    made for its declared extension, which checks no archive inside (a member named as an
    archive is refused by name, one disguised as another type by its content): one level deep.
    A refused member is in `refusal` at once, and a walk that cannot go on (damaged,
    encrypted, unsupported compression, over a limit) leaves its reason in `failure`: either
    refuses the archive before the rest is sent. Nothing is written anywhere: the inflated
    bytes live as long as one chunk.
    """

    def __init__(
        self,
        *,
        head_size: int,
        tail_size: int,
        max_members: int,
        max_uncompressed: int,
        max_ratio: int,
    ) -> None:
        self._head_size = head_size
        self._tail_size = tail_size
        self._max_members = max_members
        self._max_uncompressed = max_uncompressed
        self._max_ratio = max_ratio
        self._state = _WalkState.HEADER
        # Bytes at stream offset `_at` held until they can be parsed: a local header, a data
        # descriptor, or the last bytes of a stored member that may begin its descriptor.
        self._pending = bytearray()
        self._at = 0
        self._member: _Inflow | None = None
        self._files = 0
        self._declared = 0
        self._inflated = 0
        self.members: list[_WalkedMember] = []
        self.directory_at: int | None = None
        self.failure: Refusal | None = None
        self.refusal: SniffResult | None = None

    @property
    def held(self) -> int:
        """Bytes held in buffers, the member's sniffers included."""
        sniffers = () if self._member is None else self._member.sniffers
        return len(self._pending) + sum(sniffer.buffered_bytes for sniffer in sniffers)

    def feed(self, data: memoryview) -> None:
        """Walk the next chunk of the archive."""
        try:
            while data and self._state in (
                _WalkState.HEADER,
                _WalkState.DATA,
                _WalkState.DESCRIPTOR,
            ):
                if self._state is _WalkState.HEADER:
                    data = self._header(data)
                elif self._state is _WalkState.DATA:
                    data = self._data(data)
                else:
                    data = self._descriptor(data)
        except _ZipRefused as refused:
            self._stop()
            self.failure = refused.reason
        except _MemberRefused as refused:
            self._stop()
            self.refusal = refused.result
        except zlib.error:
            self._stop()
            self.failure = Refusal.ZIP_INVALID

    def disagreement(self, members: list[_ZipMember], directory_offset: int) -> Refusal | None:
        """Why the walk refuses an archive whose central directory is sound, if it does."""
        if self.failure is not None:
            return self.failure
        if self._state is not _WalkState.DONE:
            return Refusal.ZIP_INVALID  # the stream ended inside a member
        if self.directory_at != directory_offset or len(self.members) != len(members):
            return Refusal.ZIP_INVALID
        # Extractors trust the central directory, streaming ones the local headers: both must
        # describe the members that were checked, in the same places.
        listed = sorted(members, key=lambda member: member.offset)
        for walked, member in zip(self.members, listed, strict=True):
            expected = _WalkedMember(
                offset=member.offset,
                name_digest=_name_digest(member.name),
                method=member.method,
                compressed_size=member.compressed_size,
                uncompressed_size=member.uncompressed_size,
                crc=member.crc,
                extensions=_content_extensions(member.names),
            )
            if walked != expected:
                return Refusal.ZIP_INVALID
        return None

    def _current(self) -> _Inflow:
        if self._member is None:
            raise RuntimeError("no member is being read")
        return self._member

    def _stop(self) -> None:
        self._state = _WalkState.STOPPED
        self._member = None
        self._pending = bytearray()

    def _fill(self, data: memoryview, size: int) -> memoryview:
        take = max(0, size - len(self._pending))
        self._pending += data[:take]
        return data[take:]

    # -- local headers -------------------------------------------------------------------

    def _header(self, data: memoryview) -> memoryview:
        data = self._fill(data, len(_ZIP_LOCAL_MAGIC))
        if len(self._pending) < len(_ZIP_LOCAL_MAGIC):
            return data
        magic = bytes(self._pending[:4])
        if magic != _ZIP_LOCAL_MAGIC:
            if magic not in (_CENTRAL_MAGIC, _ZIP64_EOCD_MAGIC, _EOCD_MAGIC):
                raise _ZipRefused(Refusal.ZIP_INVALID)  # bytes between members
            self.directory_at = self._at
            self._state = _WalkState.DONE
            self._pending = bytearray()
            return data[:0]
        data = self._fill(data, _LOCAL.size)
        if len(self._pending) < _LOCAL.size:
            return data
        name_length, extra_length = _LOCAL.unpack_from(self._pending)[9:]
        size = _LOCAL.size + name_length + extra_length
        data = self._fill(data, size)
        if len(self._pending) < size:
            return data
        header = bytes(self._pending)
        self._pending = bytearray()
        self._begin(header, self._at, name_length)
        self._at += size
        return data

    def _begin(self, header: bytes, offset: int, name_length: int) -> None:
        fields = _LOCAL.unpack_from(header)
        flags, method, _, _, crc, compressed, uncompressed = fields[2:9]
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION | _FLAG_MASKED_HEADERS) or (
            method == _METHOD_AES
        ):
            raise _ZipRefused(Refusal.ZIP_ENCRYPTED)
        if method not in (_METHOD_STORED, _METHOD_DEFLATED):
            raise _ZipRefused(Refusal.ZIP_METHOD_UNSUPPORTED)
        if len(self.members) >= self._max_members:
            raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)
        name_end = _LOCAL.size + name_length
        names = [_decode_member_name(header[_LOCAL.size : name_end], utf8=bool(flags & _FLAG_UTF8))]
        zip64: tuple[int, ...] = ()
        for header_id, body in _extra_fields(header[name_end:]):
            if header_id == _ZIP64_EXTRA_ID:
                zip64 = struct.unpack_from(f"<{len(body) // 8}Q", body)
            elif header_id == _UNICODE_PATH_EXTRA_ID and len(body) > 5:
                names.append(_decode_member_name(body[5:], utf8=True))

        sizes: tuple[int, int, int] | None = None
        if not flags & _FLAG_DATA_DESCRIPTOR:
            sizes = (crc, *_local_sizes(compressed, uncompressed, zip64))
            if method == _METHOD_STORED and sizes[1] != sizes[2]:
                raise _ZipRefused(Refusal.ZIP_INVALID)
            self._declared += sizes[2]
            if self._declared > self._max_uncompressed:
                raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)

        extensions = _content_extensions(names)
        if extensions or not names[0].replace("\\", "/").endswith("/"):
            self._files += 1  # the position people count: folders are not files
        sniffers = tuple(
            TypeSniffer(
                f"{FALLBACK_FILENAME}.{extension}",
                head_size=self._head_size,
                tail_size=self._tail_size,
                max_zip_members=self._max_members,
                max_zip_uncompressed=self._max_uncompressed,
                max_zip_ratio=self._max_ratio,
                check_zip_members=False,
            )
            for extension in sorted(extensions)
        )
        self._member = _Inflow(
            offset=offset,
            data_at=offset + len(header),
            name_digest=_name_digest(names[0]),
            method=method,
            sizes=sizes,
            extensions=extensions,
            sniffers=sniffers,
            position=self._files,
        )
        self._state = _WalkState.DATA
        if sizes is not None and sizes[1] == 0:
            self._end_member(self._member)

    # -- member data ---------------------------------------------------------------------

    def _data(self, data: memoryview) -> memoryview:
        member = self._current()
        if member.remaining is not None:
            part = data[: member.remaining]
            used = self._consume(member, part)
            member.remaining -= used
            ended = member.decoder.eof if member.decoder is not None else member.remaining == 0
            if used < len(part) or ended != (member.remaining == 0):
                raise _ZipRefused(Refusal.ZIP_INVALID)  # Deflate data shorter or longer
            if member.remaining == 0:
                self._end_member(member)
            return data[used:]
        if member.decoder is not None:
            used = self._consume(member, data)
            if member.decoder.eof:
                self._state = _WalkState.DESCRIPTOR
            return data[used:]
        return self._scan_stored(member, data)

    def _consume(self, member: _Inflow, data: memoryview) -> int:
        """Inflate what `data` holds of the member and check it; return the bytes used."""
        decoder = member.decoder
        if decoder is None:
            self._release(member, data)
            return len(data)
        used = 0
        while not decoder.eof and used < len(data):
            used += self._inflate(member, decoder, data[used : used + _INFLATE_INPUT])
        return used

    def _inflate(self, member: _Inflow, decoder: zlib._Decompress, data: memoryview) -> int:
        start = member.read
        pending: bytes | memoryview = data
        while True:
            out = decoder.decompress(pending, _INFLATE_CHUNK)
            left = decoder.unused_data if decoder.eof else decoder.unconsumed_tail
            used = len(data) - len(left)
            member.read = start + used
            self._at = member.data_at + member.read
            self._check(member, out)
            if decoder.eof:
                return used
            pending = decoder.unconsumed_tail
            # A full output chunk may leave more output inside the decoder with no input left.
            if not pending and len(out) < _INFLATE_CHUNK:
                return used

    def _release(self, member: _Inflow, data: bytes | memoryview) -> None:
        member.read += len(data)
        self._at += len(data)
        self._check(member, data)

    def _check(self, member: _Inflow, out: bytes | memoryview) -> None:
        if not out:
            return
        member.produced += len(out)
        member.running_crc = zlib.crc32(out, member.running_crc)
        self._inflated += len(out)
        if member.uncompressed_size is not None and member.produced > member.uncompressed_size:
            raise _ZipRefused(Refusal.ZIP_INVALID)
        if self._inflated > self._max_uncompressed or (
            self._inflated - _ZIP_RATIO_ALLOWANCE > self._max_ratio * self._at
        ):
            raise _ZipRefused(Refusal.ZIP_TOO_COMPLEX)
        for sniffer in member.sniffers:
            sniffer.feed(out)
            if (verdict := sniffer.early_verdict()) is not None:
                raise _MemberRefused(SniffResult.member_refused(member.position, verdict, "zip"))

    def _end_member(self, member: _Inflow) -> None:
        if member.uncompressed_size is not None and (
            member.produced != member.uncompressed_size or member.running_crc != member.crc
        ):
            raise _ZipRefused(Refusal.ZIP_INVALID)
        for sniffer in member.sniffers:
            verdict = sniffer.finish()
            # An empty member is left alone: there is nothing in it to render or run.
            if not verdict.ok and member.produced > 0:
                raise _MemberRefused(SniffResult.member_refused(member.position, verdict, "zip"))
        self.members.append(
            _WalkedMember(
                offset=member.offset,
                name_digest=member.name_digest,
                method=member.method,
                compressed_size=member.read,
                uncompressed_size=member.produced,
                crc=member.running_crc,
                extensions=member.extensions,
            )
        )
        self._member = None
        self._state = _WalkState.HEADER

    # -- data descriptors (APPNOTE 4.3.9) ------------------------------------------------

    def _descriptor(self, data: memoryview) -> memoryview:
        member = self._current()
        data = self._fill(data, _DESCRIPTOR_LOOKAHEAD)
        if len(self._pending) < _DESCRIPTOR_LOOKAHEAD:
            return data
        length = _descriptor_length(bytes(self._pending), member, signed_only=False)
        if length is None:
            raise _ZipRefused(Refusal.ZIP_INVALID)
        self._at += length
        del self._pending[:length]  # the start of the next header
        self._end_member(member)
        return data

    def _scan_stored(self, member: _Inflow, data: memoryview) -> memoryview:
        # A stored member followed by a descriptor has no length anywhere before its end: it
        # ends at the first signed descriptor that matches the bytes before it, and is
        # followed by a signature. Data forging one ends early, and disagrees with the
        # central directory at the end.
        raw = bytes(self._pending) + data
        window = memoryview(raw)
        self._pending = bytearray()
        released = 0
        at = raw.find(_DESCRIPTOR_MAGIC)
        while at >= 0 and len(raw) - at >= _DESCRIPTOR_LOOKAHEAD:
            self._release(member, window[released:at])
            released = at
            candidate = raw[at : at + _DESCRIPTOR_LOOKAHEAD]
            if (length := _descriptor_length(candidate, member, signed_only=True)) is not None:
                self._at += length
                self._end_member(member)
                return window[at + length :]
            at = raw.find(_DESCRIPTOR_MAGIC, at + 1)
        keep = max(released, len(raw) - (_DESCRIPTOR_LOOKAHEAD - 1))
        self._release(member, window[released:keep])
        self._pending = bytearray(window[keep:])
        return window[:0]


def _local_sizes(compressed: int, uncompressed: int, zip64: tuple[int, ...]) -> tuple[int, int]:
    """The compressed and uncompressed sizes a local header gives, ZIP64 fields applied."""
    if _SENTINEL_32 not in (compressed, uncompressed):
        return compressed, uncompressed
    # APPNOTE 4.5.3: in a local header the field holds both sizes, uncompressed first; some
    # writers put only the ones whose 32-bit field is the sentinel, as in the directory.
    if len(zip64) >= 2:
        return (
            zip64[1] if compressed == _SENTINEL_32 else compressed,
            zip64[0] if uncompressed == _SENTINEL_32 else uncompressed,
        )
    if len(zip64) == 1 and (compressed, uncompressed).count(_SENTINEL_32) == 1:
        if uncompressed == _SENTINEL_32:
            return compressed, zip64[0]
        return zip64[0], uncompressed
    raise _ZipRefused(Refusal.ZIP_INVALID)


def _descriptor_length(data: bytes, member: _Inflow, *, signed_only: bool) -> int | None:
    """The length of the data descriptor at the start of `data` that matches the member."""
    actual = (member.running_crc, member.read, member.produced)
    for signed, layout in (
        (True, _DESCRIPTOR_NARROW),
        (True, _DESCRIPTOR_WIDE),
        (False, _DESCRIPTOR_NARROW),
        (False, _DESCRIPTOR_WIDE),
    ):
        if signed_only and not signed:
            break
        start = len(_DESCRIPTOR_MAGIC) if signed else 0
        if signed and not data.startswith(_DESCRIPTOR_MAGIC):
            continue
        end = start + layout.size
        # 32 or 64-bit sizes, with or without a signature: which one is told by what follows.
        if layout.unpack_from(data, start) == actual and data[end : end + 4] in (
            _ZIP_LOCAL_MAGIC,
            _CENTRAL_MAGIC,
        ):
            return end
    return None


# --- the sniffer -----------------------------------------------------------------------


class TypeSniffer:
    """Decides, from a stream seen once in chunks, whether a deposited file is accepted.

    Call `feed` for every chunk, `early_verdict` whenever convenient to stop a refused upload
    before it is all sent, then `finish` for the verdict. Memory held is at most `head_size`
    plus, for ZIP archives only, `tail_size`, plus one chunk while it is scanned. A plain
    archive (`.zip`) adds the sniffer of the member being read (the same bounds again, since
    an office document in it is a ZIP of its own), a local header (at most 128 KiB) and the
    inflater's window and output chunk; `check_zip_members=False` is how those members'
    sniffers are made, so that nesting stops there.
    """

    def __init__(
        self,
        filename: str,
        *,
        head_size: int = HEAD_SIZE,
        tail_size: int = TAIL_SIZE,
        max_zip_members: int = MAX_ZIP_MEMBERS,
        max_zip_uncompressed: int = MAX_ZIP_UNCOMPRESSED,
        max_zip_ratio: int = MAX_ZIP_RATIO,
        check_zip_members: bool = True,
    ) -> None:
        if head_size < _PDF_WINDOW:
            raise ValueError(f"head_size must be at least {_PDF_WINDOW} bytes")
        if tail_size < 1024:
            raise ValueError("tail_size must be at least 1024 bytes")
        self._extension = _extension_of(filename)
        self._head_size = head_size
        self._tail_size = tail_size
        self._max_zip_members = max_zip_members
        self._max_zip_uncompressed = max_zip_uncompressed
        self._max_zip_ratio = max_zip_ratio
        self._check_zip_members = check_zip_members
        self._walk: _MemberWalk | None = None
        self._head = bytearray()
        self._size = 0
        self._is_zip: bool | None = None
        self._tail: _TailRing | None = None
        self._head_checked = False
        self._scan: _TextScan | _Ole2Scan | None = None
        self._text_kind: FileKind | None = None
        # Set as soon as the verdict is known (a refusal, or a kind known from its magic).
        self._verdict: SniffResult | None = self._verdict_on_name()
        self._result: SniffResult | None = None

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in the head and tail buffers (for tests and metrics)."""
        tail = 0 if self._tail is None else self._tail.held
        return len(self._head) + tail + (0 if self._walk is None else self._walk.held)

    def feed(self, chunk: Chunk) -> None:
        """Take the next chunk of the stream, of any size."""
        if self._result is not None:
            raise RuntimeError("feed() after finish()")
        view = memoryview(chunk).cast("B")
        size = len(view)
        if size == 0:
            return
        offset = self._size
        self._size += size
        if self._verdict is not None:
            return
        taken = min(size, self._head_size - len(self._head))
        if taken > 0:
            self._head += view[:taken]
        if self._tail is not None:
            self._tail.write(view)
            self._walk_more(view)
        elif self._is_zip is None and len(self._head) >= 4:
            self._is_zip = bytes(self._head[:4]) in (_ZIP_LOCAL_MAGIC, _EOCD_MAGIC)
            if self._is_zip:
                self._tail = _TailRing(self._tail_size)
                # Everything before this chunk is in the head: fewer than 4 bytes.
                before = memoryview(bytes(self._head[:offset]))
                self._tail.write(before)
                self._tail.write(view)
                if self._extension == "zip" and self._check_zip_members:
                    self._walk = _MemberWalk(
                        head_size=self._head_size,
                        tail_size=self._tail_size,
                        max_members=self._max_zip_members,
                        max_uncompressed=self._max_zip_uncompressed,
                        max_ratio=self._max_zip_ratio,
                    )
                    self._walk_more(before)
                    self._walk_more(view)
        if self._verdict is not None:
            return  # a member of the archive is refused
        if not self._head_checked:
            if len(self._head) >= self._head_size:
                self._check_head(complete=False)
                if taken < size:
                    self._scan_more(view[taken:], offset + taken)
        else:
            self._scan_more(view, offset)

    def early_verdict(self) -> SniffResult | None:
        """Return the refusal once it is certain: from the name, the head or a later marker."""
        if self._verdict is not None and not self._verdict.ok:
            return self._verdict
        return None

    def finish(self) -> SniffResult:
        """Return the verdict on the whole stream; call once every chunk has been fed."""
        if self._result is not None:
            return self._result
        if self._verdict is None and self._size == 0:
            self._verdict = SniffResult.refused(Refusal.EMPTY, self._extension)
        if self._verdict is None and not self._head_checked:
            self._check_head(complete=True)
        result = self._verdict or self._final_verdict()
        self._result = result
        self._head = bytearray()
        self._tail = None
        self._walk = None
        self._scan = None
        return result

    # -- steps ---------------------------------------------------------------------------

    def _verdict_on_name(self) -> SniffResult | None:
        extension = self._extension
        if extension in _ACTIVE_EXTENSIONS:
            return SniffResult.refused(Refusal.ACTIVE_CONTENT, extension)
        if extension not in ACCEPTED_EXTENSIONS:
            return SniffResult.refused(Refusal.TYPE_REFUSED, extension)
        return None

    def _refuse(self, reason: Refusal, kind: FileKind | None = None) -> None:
        self._verdict = SniffResult.refused(reason, self._extension, kind)
        self._tail = None  # nothing more to learn: free the tail now, not at finish()
        self._walk = None

    def _walk_more(self, data: memoryview) -> None:
        if self._walk is None:
            return
        self._walk.feed(data)
        if self._walk.refusal is not None:
            self._verdict = self._walk.refusal
            self._tail = None
            self._walk = None
        elif self._walk.failure is not None:
            self._refuse(self._walk.failure, FileKind.ZIP)

    def _by_magic(self, kind: FileKind) -> None:
        if self._extension in kind.extensions:
            self._verdict = SniffResult.accepted(kind, self._extension)
        else:
            self._refuse(Refusal.EXTENSION_MISMATCH, kind)

    def _check_head(self, *, complete: bool) -> None:
        self._head_checked = True
        head = bytes(self._head)
        if self._is_zip:
            if self._extension not in _ZIP_CONTAINER_EXTENSIONS:
                self._refuse(Refusal.EXTENSION_MISMATCH)
            return
        if head.startswith(_OLE2_MAGIC):
            if not _is_ole2_header(head):
                self._refuse(Refusal.TYPE_REFUSED)
            elif self._extension not in _OLE2_EXTENSIONS:
                self._refuse(Refusal.EXTENSION_MISMATCH)
            else:
                self._scan = _Ole2Scan()
                self._scan_more(head, 0)
            return
        for magic, kind in _SIMPLE_MAGICS:
            if head.startswith(magic):
                self._by_magic(kind)
                return
        pdf_at = head.find(_PDF_MARKER, 0, _PDF_WINDOW)
        if pdf_at >= 0:
            # Bytes before the header are tolerated by readers, and used by polyglot files.
            if _has_active_marker(head[:pdf_at].translate(_ASCII_LOWER), is_xml=False):
                self._refuse(Refusal.ACTIVE_CONTENT, FileKind.PDF)
            else:
                self._by_magic(FileKind.PDF)
            return
        self._check_text_head(head, complete=complete)

    def _check_text_head(self, head: bytes, *, complete: bool) -> None:
        if _looks_binary(head):
            self._refuse(Refusal.TYPE_REFUSED)
            return
        is_xml = self._extension == "xml"
        # Active content is refused first, whatever the name says (SVG named .png).
        self._scan = _TextScan(is_xml=is_xml)
        self._scan_more(head, 0)
        if self._verdict is not None:
            return
        if self._extension not in _TEXT_KINDS:
            self._refuse(Refusal.EXTENSION_MISMATCH, FileKind.TXT)
            return
        if is_xml:
            if not head.removeprefix(_UTF8_BOM).lstrip().startswith(b"<"):
                self._refuse(Refusal.EXTENSION_MISMATCH, FileKind.TXT)
                return
            root = _xml_root_name(head)
            if root in (b"svg", b"html"):
                self._refuse(Refusal.ACTIVE_CONTENT, FileKind.XML)
                return
            if root is None:
                # No root element: not XML, or a prolog longer than the head (not checkable).
                self._refuse(Refusal.EXTENSION_MISMATCH if complete else Refusal.TYPE_REFUSED)
                return
        self._text_kind = _TEXT_KINDS[self._extension]

    def _scan_more(self, data: Chunk, offset: int) -> None:
        if self._scan is None or self._verdict is not None:
            return
        self._scan.feed(data, offset)
        if self._scan.refusal is not None:
            self._refuse(self._scan.refusal)

    def _final_verdict(self) -> SniffResult:
        if self._tail is not None:
            return _zip_verdict(
                self._tail,
                bytes(self._head),
                self._extension,
                max_members=self._max_zip_members,
                max_uncompressed=self._max_zip_uncompressed,
                walk=self._walk,
            )
        if isinstance(self._scan, _Ole2Scan):
            return self._ole2_verdict(self._scan.found)
        if self._text_kind is not None:
            return SniffResult.accepted(self._text_kind, self._extension)
        raise AssertionError("the head check leaves a verdict or a way to reach one")

    def _ole2_verdict(self, found: set[str]) -> SniffResult:
        extension = self._extension
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


def sniff(
    filename: str,
    chunks: Iterable[Chunk],
    *,
    head_size: int = HEAD_SIZE,
    tail_size: int = TAIL_SIZE,
    max_zip_members: int = MAX_ZIP_MEMBERS,
    max_zip_uncompressed: int = MAX_ZIP_UNCOMPRESSED,
    max_zip_ratio: int = MAX_ZIP_RATIO,
) -> SniffResult:
    """Check a whole stream, stopping at the first certain refusal."""
    sniffer = TypeSniffer(
        filename,
        head_size=head_size,
        tail_size=tail_size,
        max_zip_members=max_zip_members,
        max_zip_uncompressed=max_zip_uncompressed,
        max_zip_ratio=max_zip_ratio,
    )
    for chunk in chunks:
        sniffer.feed(chunk)
        if refusal := sniffer.early_verdict():
            return refusal
    return sniffer.finish()
