"""The sniffer: one pass over the upload stream, handing each part to the check of its format."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Final

from portal.filecheck.limits import (
    HEAD_SIZE,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    MAX_ZIP_UNCOMPRESSED,
    TAIL_SIZE,
)
from portal.filecheck.names import ACTIVE_EXTENSIONS, FALLBACK_FILENAME, extension_of
from portal.filecheck.office import (
    OLE2_EXTENSIONS,
    OLE2_MAGIC,
    Ole2Scan,
    is_ole2_header,
    is_ooxml,
    odf_has_macros,
    odf_kind,
    ole2_verdict,
    ooxml_has_macros,
    ooxml_kind,
)
from portal.filecheck.pdf import PDF_WINDOW, has_active_prelude, pdf_header_at
from portal.filecheck.text import TEXT_KINDS, UTF8_BOM, TextScan, looks_binary, xml_root_name
from portal.filecheck.verdict import ACCEPTED_EXTENSIONS, Chunk, FileKind, Refusal, SniffResult
from portal.filecheck.zip import (
    EOCD_MAGIC,
    ZIP_CONTAINER_EXTENSIONS,
    ZIP_LOCAL_MAGIC,
    MemberSniffer,
    MemberWalk,
    TailRing,
    ZipRefused,
    check_zip_structure,
    locate_central_directory,
    member_refusal,
    read_members,
)

# Images need nothing more than their magic bytes.
_SIMPLE_MAGICS: Final[tuple[tuple[bytes, FileKind], ...]] = (
    (b"\x89PNG\r\n\x1a\n", FileKind.PNG),
    (b"\xff\xd8\xff", FileKind.JPEG),
    (b"II*\x00", FileKind.TIFF),
    (b"MM\x00*", FileKind.TIFF),
)


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
        if head_size < PDF_WINDOW:
            raise ValueError(f"head_size must be at least {PDF_WINDOW} bytes")
        if tail_size < 1024:
            raise ValueError("tail_size must be at least 1024 bytes")
        self._extension = extension_of(filename)
        self._head_size = head_size
        self._tail_size = tail_size
        self._max_zip_members = max_zip_members
        self._max_zip_uncompressed = max_zip_uncompressed
        self._max_zip_ratio = max_zip_ratio
        self._check_zip_members = check_zip_members
        self._walk: MemberWalk | None = None
        self._head = bytearray()
        self._size = 0
        self._is_zip: bool | None = None
        self._tail: TailRing | None = None
        self._head_checked = False
        self._scan: TextScan | Ole2Scan | None = None
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
            self._is_zip = bytes(self._head[:4]) in (ZIP_LOCAL_MAGIC, EOCD_MAGIC)
            if self._is_zip:
                self._tail = TailRing(self._tail_size)
                # Everything before this chunk is in the head: fewer than 4 bytes.
                before = memoryview(bytes(self._head[:offset]))
                self._tail.write(before)
                self._tail.write(view)
                limits: dict[str, int] = {
                    "head_size": self._head_size,
                    "tail_size": self._tail_size,
                    "max_zip_members": self._max_zip_members,
                    "max_zip_uncompressed": self._max_zip_uncompressed,
                    "max_zip_ratio": self._max_zip_ratio,
                }
                if self._extension == "zip" and self._check_zip_members:
                    self._walk = MemberWalk(
                        sniffer_for=lambda extension: _member_sniffer(extension, **limits),
                        max_members=self._max_zip_members,
                        max_uncompressed=self._max_zip_uncompressed,
                        max_ratio=self._max_zip_ratio,
                    )
                elif self._extension in CONTAINER_EXTENSIONS and self._check_zip_members:
                    # An office document: its PDF members (embedded objects) are checked for
                    # active content as a ZIP's are; its other members are left to the checks
                    # of the package (kind, macros). No ratio limit: XML packs tightly.
                    self._walk = MemberWalk(
                        sniffer_for=partial(_embedded_sniffer, limits=limits),
                        unnamed=partial(_embedded_sniffer, limits=limits),
                        max_members=self._max_zip_members,
                        max_uncompressed=self._max_zip_uncompressed,
                        max_ratio=self._max_zip_uncompressed,
                    )
                if self._walk is not None:
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
        if extension in ACTIVE_EXTENSIONS:
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
            if self._extension in CONTAINER_EXTENSIONS:
                self._verdict = _embedded_refusal(self._walk.refusal, self._extension)
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
            if self._extension not in ZIP_CONTAINER_EXTENSIONS:
                self._refuse(Refusal.EXTENSION_MISMATCH)
            return
        if head.startswith(OLE2_MAGIC):
            if not is_ole2_header(head):
                self._refuse(Refusal.TYPE_REFUSED)
            elif self._extension not in OLE2_EXTENSIONS:
                self._refuse(Refusal.EXTENSION_MISMATCH)
            else:
                self._scan = Ole2Scan()
                self._scan_more(head, 0)
            return
        for magic, kind in _SIMPLE_MAGICS:
            if head.startswith(magic):
                self._by_magic(kind)
                return
        pdf_at = pdf_header_at(head)
        if pdf_at >= 0:
            if has_active_prelude(head, pdf_at):
                self._refuse(Refusal.ACTIVE_CONTENT, FileKind.PDF)
            else:
                self._by_magic(FileKind.PDF)
            return
        self._check_text_head(head, complete=complete)

    def _check_text_head(self, head: bytes, *, complete: bool) -> None:
        if looks_binary(head):
            self._refuse(Refusal.TYPE_REFUSED)
            return
        is_xml = self._extension == "xml"
        # Active content is refused first, whatever the name says (SVG named .png).
        self._scan = TextScan(is_xml=is_xml)
        self._scan_more(head, 0)
        if self._verdict is not None:
            return
        if self._extension not in TEXT_KINDS:
            self._refuse(Refusal.EXTENSION_MISMATCH, FileKind.TXT)
            return
        if is_xml:
            if not head.removeprefix(UTF8_BOM).lstrip().startswith(b"<"):
                self._refuse(Refusal.EXTENSION_MISMATCH, FileKind.TXT)
                return
            root = xml_root_name(head)
            if root in (b"svg", b"html"):
                self._refuse(Refusal.ACTIVE_CONTENT, FileKind.XML)
                return
            if root is None:
                # No root element: not XML, or a prolog longer than the head (not checkable).
                self._refuse(Refusal.EXTENSION_MISMATCH if complete else Refusal.TYPE_REFUSED)
                return
        self._text_kind = TEXT_KINDS[self._extension]

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
        if isinstance(self._scan, Ole2Scan):
            return ole2_verdict(self._scan.found, self._extension)
        if self._text_kind is not None:
            return SniffResult.accepted(self._text_kind, self._extension)
        raise AssertionError("the head check leaves a verdict or a way to reach one")


def _member_sniffer(extension: str, **limits: int) -> TypeSniffer | _PdfMemberSniffer:
    # A member is checked like a file of its extension, but one level deep: an archive inside
    # it is refused by its name, or by its content when disguised as another type.
    sniffer = TypeSniffer(f"{FALLBACK_FILENAME}.{extension}", **limits, check_zip_members=False)
    return _PdfMemberSniffer(sniffer) if extension == "pdf" else sniffer


class _PdfMemberSniffer:
    """A PDF member's sniffer that also checks its active content (`pdf_content.check_pdf`),
    as for a PDF deposited on its own: its bytes are kept (one member at a time) until its
    end."""

    def __init__(self, inner: TypeSniffer) -> None:
        self._inner = inner
        self._data = bytearray()

    @property
    def buffered_bytes(self) -> int:
        return self._inner.buffered_bytes + len(self._data)

    def feed(self, chunk: Chunk) -> None:
        from portal.filecheck.pdf_content import PDF_CHECK_MAX_BYTES

        self._inner.feed(chunk)
        if len(self._data) <= PDF_CHECK_MAX_BYTES:  # beyond: refused as too large at finish
            self._data += chunk

    def early_verdict(self) -> SniffResult | None:
        return self._inner.early_verdict()

    def finish(self) -> SniffResult:
        from portal.filecheck.pdf_content import check_pdf

        verdict = self._inner.finish()
        data, self._data = bytes(self._data), bytearray()
        if not verdict.ok or verdict.kind is not FileKind.PDF:
            return verdict
        finding = check_pdf(data)
        if finding is None:
            return verdict
        return SniffResult(
            FileKind.PDF, None, "pdf", False, Refusal.ACTIVE_CONTENT, finding.message_fr
        )


# The extensions of ZIP-based office documents (OOXML, OpenDocument).
CONTAINER_EXTENSIONS: Final = ZIP_CONTAINER_EXTENSIONS - {"zip"}


def _embedded_sniffer(extension: str = "", *, limits: dict[str, int]) -> MemberSniffer:
    """What checks one member of an office document, whatever its name: accepted, unless its
    content is a PDF's, which must then pass the checks of a PDF deposited on its own."""
    return _EmbeddedPdfSniffer(limits)


class _EmbeddedPdfSniffer:
    """Accepts any member, except one that readers would open as a PDF (`%PDF-` in its first
    `PDF_WINDOW` bytes): that one is checked for active content (`_PdfMemberSniffer`)."""

    def __init__(self, limits: dict[str, int]) -> None:
        self._limits = limits
        self._head = bytearray()
        self._pdf: TypeSniffer | _PdfMemberSniffer | None = None
        self._other = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._head) + (0 if self._pdf is None else self._pdf.buffered_bytes)

    def feed(self, chunk: Chunk) -> None:
        if self._other:
            return
        if self._pdf is not None:
            self._pdf.feed(chunk)
            return
        view = memoryview(chunk).cast("B")
        take = PDF_WINDOW - len(self._head)
        self._head += view[:take]
        if pdf_header_at(bytes(self._head)) >= 0:
            pdf = self._start_pdf()
            if len(view) > take:
                pdf.feed(view[take:])
        elif len(self._head) >= PDF_WINDOW:
            self._other = True
            self._head = bytearray()

    def _start_pdf(self) -> TypeSniffer | _PdfMemberSniffer:
        self._pdf = pdf = _member_sniffer("pdf", **self._limits)
        pdf.feed(bytes(self._head))
        self._head = bytearray()
        return pdf

    def early_verdict(self) -> SniffResult | None:
        return None if self._pdf is None else self._pdf.early_verdict()

    def finish(self) -> SniffResult:
        if self._pdf is None and self._head and pdf_header_at(bytes(self._head)) >= 0:
            self._start_pdf()
        if self._pdf is None:
            return SniffResult.accepted(FileKind.TXT, "")  # not a PDF: left to the package
        return self._pdf.finish()


def _embedded_refusal(member: SniffResult, extension: str) -> SniffResult:
    """An office document refused for a PDF it holds, said as such (not as a ZIP archive)."""
    position, reason = member.member_position, member.member_reason
    assert position is not None and reason is not None  # noqa: S101 - a member's refusal
    detail = member.message_fr.split(". ", 1)[-1]
    message = (
        f"Document refusé : le fichier n° {position} qu'il contient (un PDF incorporé) est "
        f"refusé. {detail}"
    )
    return SniffResult(None, None, extension, False, reason, message, position, reason)


def _zip_verdict(
    ring: TailRing,
    head: bytes,
    extension: str,
    *,
    max_members: int,
    max_uncompressed: int,
    walk: MemberWalk | None,
) -> SniffResult:
    try:
        directory = locate_central_directory(ring, max_members)
        members = read_members(ring, directory)
        check_zip_structure(members, directory.offset, max_uncompressed)
    except ZipRefused as refused:
        return SniffResult.refused(refused.reason, extension, FileKind.ZIP)

    paths = [member.name.replace("\\", "/").casefold() for member in members]
    has_macros = False
    if is_ooxml(paths):
        ooxml = ooxml_kind(paths)
        if ooxml is None:
            return SniffResult.refused(Refusal.TYPE_REFUSED, extension)
        kind = ooxml
        has_macros = ooxml_has_macros(paths)
    elif odf := odf_kind(head, members):
        kind = odf
        has_macros = odf_has_macros(paths)
    else:
        kind = FileKind.ZIP

    if extension not in kind.extensions:
        return SniffResult.refused(Refusal.EXTENSION_MISMATCH, extension, kind)
    if has_macros:
        return SniffResult.refused(Refusal.MACROS, extension, kind)
    if kind is FileKind.ZIP:
        for member in members:
            if refusal := member_refusal(member):
                return SniffResult.refused(refusal, extension, kind)
    # The members checked are those the central directory lists (an office document's walk
    # too: a PDF only the directory points at would escape it).
    if walk is not None and (refusal := walk.disagreement(members, directory.offset)):
        return SniffResult.refused(refusal, extension, kind)
    return SniffResult.accepted(kind, extension)


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
