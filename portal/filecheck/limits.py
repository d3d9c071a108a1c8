"""The bounds of a check: what the sniffer keeps in memory, and what an archive may hold.

Each is the default of the `TypeSniffer` and `sniff` argument named like it in lower case,
bound when they are defined: a caller (or a test) that wants other bounds passes arguments.
"""

from __future__ import annotations

from typing import Final

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
