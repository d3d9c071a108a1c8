"""The user's file names: made safe to show and save, sent back in `Content-Disposition`, and
the extension a file is checked under (the one it will be saved with)."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from typing import Final

MAX_FILENAME_CHARS: Final = 150
# 255 bytes is the limit of a file name on ext4, XFS and APFS.
MAX_FILENAME_BYTES: Final = 255
FALLBACK_FILENAME: Final = "fichier"

# Names that a browser or the desktop would render or run: refused before a byte is read.
ACTIVE_EXTENSIONS: Final = frozenset(
    {"htm", "html", "xhtml", "xht", "shtml", "mht", "mhtml", "svg", "svgz", "js", "mjs", "hta"}
    | {"xsl", "xslt", "swf", "jnlp", "wsf", "vbs", "vbe", "jse"}
)

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


def extension_of(name: str) -> str:
    """The lower-case extension (no dot) of *name* once made safe; empty when it has none."""
    # The extension of the name as it will be served, so what is checked is what is saved.
    stem, dot, extension = safe_filename(name).rpartition(".")
    return extension.lower() if dot and stem else ""
