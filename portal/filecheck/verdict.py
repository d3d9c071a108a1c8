"""What a check decides: the kinds of file deposits accept, why a file is refused, the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeAlias

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
