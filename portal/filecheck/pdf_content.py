"""PDF active content: JavaScript, launch actions, XFA forms and embedded files of refused types.

The one-pass sniffer only sees a PDF's bytes go by; what a PDF *does* hides in its objects,
often compressed in object streams (PDF 1.5) and with names escaped (`/J#61vaScript`). So a
PDF accepted by the sniffer is parsed, once stored, with pypdf (pure Python, maintained by the
py-pdf project): every object of the cross-reference table, those in object streams included,
and every dictionary nested in them, is looked at, without rendering anything.

Refused (ISO 32000-1 §12.6 actions, §12.7.8 XFA, §7.11.4 embedded files):
- JavaScript anywhere: an action `/S /JavaScript`, a `/JS` entry, the `/JavaScript` name tree
  (document-level scripts), whatever triggers it (`/OpenAction`, `/AA`, a link, a form field);
- `/Launch`, `/ImportData`, `/GoToE` actions (start a program or open a file), `/GoToR` and
  `/SubmitForm` anywhere (open a remote document, send data out: an SMB path leaks the
  reader's NTLM hash), and an `/OpenAction` or an additional action (`/AA` of the catalog, a
  page or a field) that is anything but a plain "go to" (the document acts by itself);
- XFA forms (`/XFA` in the AcroForm): they carry their own scripts;
- embedded files (`/EmbeddedFile` streams, attachments) that the portal would refuse if they were
  deposited on their own (checked by `sniff` on their content and their declared name);
- a PDF that cannot be parsed, or is encrypted with a password: not checkable, refused.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from portal.filecheck.sniffer import sniff
from portal.filecheck.verdict import FileKind, SniffResult

PDF_CHECK_MAX_BYTES: Final = 64 * 1024 * 1024
"""Bytes of a PDF parsed for active content (kept in memory while it uploads); a bigger PDF
is refused: it cannot be checked."""

# Actions that run or open something outside the document. "GoTo" (a page of this document)
# and "URI" (a link the reader asks about) are the only ones an opening may trigger.
_SCRIPT_ACTIONS: Final = frozenset({"/JavaScript", "/Rendition", "/RichMediaExecute"})
_LAUNCH_ACTIONS: Final = frozenset({"/Launch", "/ImportData", "/GoToE"})
# Actions that reach out of the document without asking: open a remote document (an SMB path
# leaks the reader's NTLM hash) or send the form's fields somewhere. Refused anywhere.
_REMOTE_ACTIONS: Final = frozenset({"/GoToR", "/SubmitForm"})
_HARMLESS_OPEN_ACTIONS: Final = frozenset({"/GoTo"})
_MAX_NESTING: Final = 64


@dataclass(frozen=True, slots=True)
class PdfFinding:
    """Why a PDF is refused: a stable code for the API and the trail, a French message."""

    code: str
    message_fr: str


JAVASCRIPT: Final = PdfFinding(
    "pdf_javascript",
    "PDF refusé : il contient du code JavaScript, qui s'exécuterait à l'ouverture ou lors "
    "d'une action. Imprimez-le en PDF (« Microsoft Print to PDF », « Enregistrer au format "
    "PDF ») pour obtenir un document sans script, puis déposez-le à nouveau.",
)
LAUNCH: Final = PdfFinding(
    "pdf_launch",
    "PDF refusé : il contient une action qui lance un programme ou ouvre un autre fichier "
    "(/Launch). Imprimez-le en PDF pour obtenir un document sans action, puis déposez-le à "
    "nouveau.",
)
REMOTE_ACTION: Final = PdfFinding(
    "pdf_remote_action",
    "PDF refusé : il contient une action qui ouvre un document distant ou envoie des données "
    "à l'extérieur (/GoToR, /SubmitForm). Imprimez-le en PDF pour obtenir un document sans "
    "action, puis déposez-le à nouveau.",
)
AUTOMATIC_ACTION: Final = PdfFinding(
    "pdf_automatic_action",
    "PDF refusé : il déclenche une action automatique (à l'ouverture, à la fermeture, sur une "
    "page ou un champ : /AA). Imprimez-le en PDF pour obtenir un document sans action, puis "
    "déposez-le à nouveau.",
)
OPEN_ACTION: Final = PdfFinding(
    "pdf_open_action",
    "PDF refusé : il déclenche une action dès son ouverture (/OpenAction). Imprimez-le en PDF "
    "pour obtenir un document sans action, puis déposez-le à nouveau.",
)
XFA: Final = PdfFinding(
    "pdf_xfa",
    "PDF refusé : c'est un formulaire XFA, qui embarque ses propres scripts. Imprimez le "
    "formulaire rempli en PDF, puis déposez ce PDF.",
)
EMBEDDED_REFUSED: Final = PdfFinding(
    "pdf_embedded_file_refused",
    "PDF refusé : il contient un fichier joint d'un type non accepté (programme, script, page "
    "web, archive…). Retirez la pièce jointe ou imprimez le document en PDF, puis déposez-le à "
    "nouveau.",
)
UNREADABLE: Final = PdfFinding(
    "pdf_unreadable",
    "PDF refusé : il est endommagé ou mal formé, son contenu ne peut pas être vérifié. "
    "Enregistrez-le à nouveau depuis son application d'origine, puis déposez-le.",
)
ENCRYPTED: Final = PdfFinding(
    "pdf_encrypted",
    "PDF protégé par mot de passe refusé : son contenu ne peut pas être vérifié. Retirez la "
    "protection, puis déposez-le à nouveau.",
)
TOO_LARGE: Final = PdfFinding(
    "pdf_too_large",
    "PDF refusé : au-delà de 64 Mio, son contenu ne peut pas être vérifié. Découpez-le en "
    "plusieurs documents ou réduisez la résolution des images, puis déposez-le à nouveau.",
)


def check_pdf(data: bytes) -> PdfFinding | None:
    """The first reason to refuse the PDF in *data*, or None when it carries no active content."""
    if len(data) > PDF_CHECK_MAX_BYTES:
        return TOO_LARGE
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            # An owner password only (printing, copying restrictions) opens with the empty
            # user password; a user password means we cannot read what it holds.
            return ENCRYPTED
        for obj in _objects(reader):
            finding = _finding_in(obj, 0)
            if finding is not None:
                return finding
    except (PyPdfError, RecursionError):
        return UNREADABLE
    except Exception:
        # pypdf raises many kinds (ValueError, KeyError, struct.error…) on hostile input:
        # whatever it is, a PDF that cannot be read through is not checked, so it is refused.
        return UNREADABLE
    return None


def _objects(reader: Any) -> Iterator[Any]:
    from pypdf.generic import IndirectObject

    seen: set[tuple[int, int]] = set()
    yield reader.trailer
    for generation, table in reader.xref.items():
        for number in table:
            seen.add((number, generation))
    for number in reader.xref_objStm:
        seen.add((number, 0))
    for number, generation in sorted(seen):
        # An entry that cannot be read could hide anything: the caller refuses the PDF.
        yield IndirectObject(number, generation, reader).get_object()


def _finding_in(obj: Any, depth: int) -> PdfFinding | None:
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject

    if depth > _MAX_NESTING:
        raise RecursionError("PDF objects nested too deep")
    if isinstance(obj, IndirectObject):
        return None  # visited on its own
    if isinstance(obj, ArrayObject):
        for item in obj:
            if (found := _finding_in(item, depth + 1)) is not None:
                return found
        return None
    if not isinstance(obj, DictionaryObject):
        return None
    keys = set(obj.keys())
    action = obj.get("/S")
    if "/JS" in keys or "/JavaScript" in keys or action in _SCRIPT_ACTIONS:
        return JAVASCRIPT
    if action in _LAUNCH_ACTIONS or obj.get("/Type") == "/Launch":
        return LAUNCH
    if action in _REMOTE_ACTIONS:
        return REMOTE_ACTION
    if "/XFA" in keys:
        return XFA
    if "/OpenAction" in keys and (found := _open_action(obj["/OpenAction"])) is not None:
        return found
    if "/AA" in keys and (found := _additional_actions(obj["/AA"])) is not None:
        return found
    is_filespec = obj.get("/Type") == "/Filespec" or "/EF" in keys
    if is_filespec and (found := _embedded(obj)) is not None:
        return found
    for key, value in obj.items():
        if key in ("/Parent", "/P"):
            continue
        if (found := _finding_in(value, depth + 1)) is not None:
            return found
    return None


def _open_action(value: Any) -> PdfFinding | None:
    from pypdf.generic import ArrayObject, DictionaryObject

    action = value.get_object()
    if isinstance(action, ArrayObject):
        return None  # a destination: the page to show first
    if isinstance(action, DictionaryObject):
        kind = action.get("/S")
        if kind in _SCRIPT_ACTIONS or "/JS" in action:
            return JAVASCRIPT
        if kind in _LAUNCH_ACTIONS:
            return LAUNCH
        if kind not in _HARMLESS_OPEN_ACTIONS:
            return OPEN_ACTION
    return None


def _additional_actions(value: Any) -> PdfFinding | None:
    """Actions triggered by events (opening, closing, a page shown, a field focused): only a
    plain "go to" (and its /Next chain of "go to") is accepted."""
    from pypdf.generic import ArrayObject, DictionaryObject

    triggers = value.get_object()
    if not isinstance(triggers, DictionaryObject):
        return AUTOMATIC_ACTION
    pending = list(triggers.values())
    seen = 0
    while pending:
        seen += 1
        if seen > _MAX_NESTING:
            raise RecursionError("PDF action chain too long")
        action = pending.pop().get_object()
        if isinstance(action, ArrayObject):
            pending += list(action)
            continue
        if not isinstance(action, DictionaryObject):
            return AUTOMATIC_ACTION
        kind = action.get("/S")
        if kind in _SCRIPT_ACTIONS or "/JS" in action:
            return JAVASCRIPT
        if kind in _LAUNCH_ACTIONS:
            return LAUNCH
        if kind in _REMOTE_ACTIONS:
            return REMOTE_ACTION
        if kind not in _HARMLESS_OPEN_ACTIONS:
            return AUTOMATIC_ACTION
        if "/Next" in action:
            pending.append(action["/Next"])
    return None


def _embedded(filespec: Any) -> PdfFinding | None:
    from pypdf.generic import DictionaryObject

    streams = filespec.get("/EF")
    if streams is None:
        return None
    streams = streams.get_object()
    if not isinstance(streams, DictionaryObject):
        return EMBEDDED_REFUSED
    name = str(filespec.get("/UF") or filespec.get("/F") or "")
    for stream in streams.values():
        data = stream.get_object().get_data()
        verdict: SniffResult = sniff(name or "piece-jointe.bin", [data])
        if not verdict.ok:
            return EMBEDDED_REFUSED
        if verdict.kind is FileKind.PDF and check_pdf(data) is not None:
            return EMBEDDED_REFUSED
    return None


__all__ = [
    "AUTOMATIC_ACTION",
    "EMBEDDED_REFUSED",
    "ENCRYPTED",
    "JAVASCRIPT",
    "LAUNCH",
    "OPEN_ACTION",
    "PDF_CHECK_MAX_BYTES",
    "REMOTE_ACTION",
    "TOO_LARGE",
    "UNREADABLE",
    "XFA",
    "PdfFinding",
    "check_pdf",
]
