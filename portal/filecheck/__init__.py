"""Content-based type checks for deposited files, made in one pass over the upload stream.

Uploads go straight from the client into the encrypting object store, so the check cannot
reread the file: `TypeSniffer` sees every chunk once and keeps only a bounded head (the magic
bytes), a bounded tail (the ZIP central directory lives at the end of the archive) and a few
flags found by scanning. Memory stays bounded whatever the size of the file.

The members of a plain ZIP archive are checked on their content too, by the same sniffer as a
top-level file: the archive is walked as it streams by, each member is inflated in chunks and
fed to a `TypeSniffer` of its own, and what the walk saw must agree with the central directory
read at the end (so the bytes checked are the bytes every extractor will write).

A PDF the sniffer accepts is then parsed for active content (`pdf_content`: JavaScript,
launch actions, XFA, embedded files of refused types), and every file goes through the ClamAV
daemon (`clamd`, its client) as it streams.

One module per format: `text` (CSV, TXT, XML and active content), `pdf`, `office` (OLE2,
OOXML, OpenDocument), `zip` (the archive's structure and the walk of its members); `names`
(safe file names, `Content-Disposition`), `limits`, `verdict` (kinds, refusals, the result)
and `sniffer`, which hands each part of the stream to the check of its format.

Framework-free: the portal and the API pass the declared file name and the chunks in, and turn
a refused `SniffResult` into a French error for people or a problem detail for scripts.
"""

from portal.filecheck.limits import (
    HEAD_SIZE,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    MAX_ZIP_UNCOMPRESSED,
    TAIL_SIZE,
)
from portal.filecheck.names import content_disposition, safe_filename
from portal.filecheck.sniffer import TypeSniffer, sniff
from portal.filecheck.verdict import ACCEPTED_EXTENSIONS, FileKind, Refusal, SniffResult

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
