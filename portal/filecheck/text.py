"""Text files (CSV, TXT, XML): binary bytes, active-content markers (HTML, SVG, scripts,
XSLT, DTDs) scanned in every chunk, and the root element of an XML file."""

from __future__ import annotations

import re
from typing import Final

from portal.filecheck.verdict import Chunk, FileKind, Refusal

TEXT_KINDS: Final[dict[str, FileKind]] = {
    "xml": FileKind.XML,
    "csv": FileKind.CSV,
    "txt": FileKind.TXT,
}

UTF8_BOM: Final = b"\xef\xbb\xbf"
_TEXT_CONTROLS: Final = frozenset(range(0x20)) - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1A}
_NOT_TEXT_CONTROLS: Final = bytes(b for b in range(256) if b not in _TEXT_CONTROLS)
ASCII_LOWER: Final = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")

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
# flows never carry one (portal.flows.core.encoding refuses it too).
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


def has_active_marker(lowered: bytes, *, is_xml: bool) -> bool:
    """True when *lowered* (lower-case bytes) holds markup or a URL a browser would run."""
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


def looks_binary(head: bytes) -> bool:
    """True when *head* holds a NUL byte or more than 1 % of control characters."""
    if b"\x00" in head:
        return True
    controls = len(head.translate(None, _NOT_TEXT_CONTROLS))
    return controls * 100 > len(head)


def xml_root_name(head: bytes) -> bytes | None:
    """Return the lower-case local name of the root element, if the head shows it."""
    at = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
    while match := _XML_MISC.match(head, at):
        at = match.end()
    root = _XML_ROOT.match(head, at)
    if root is None:
        return None
    return root.group(1).rsplit(b":", 1)[-1].lower()


class TextScan:
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
        elif has_active_marker(window.translate(ASCII_LOWER), is_xml=self._is_xml):
            self.refusal = Refusal.ACTIVE_CONTENT
        self._carry = window[-_TEXT_OVERLAP:]
