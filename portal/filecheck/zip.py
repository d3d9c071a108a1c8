"""ZIP archives: the central directory read from the tail of the stream, the structure checks
(paths, encryption, sizes, overlaps), and the walk of a plain archive's local headers that
checks each member on its content as the stream goes by."""

from __future__ import annotations

import hashlib
import struct
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise
from typing import Final, Protocol

from portal.filecheck.names import extension_of
from portal.filecheck.verdict import ACCEPTED_EXTENSIONS, Chunk, Refusal, SniffResult

# Inflated bytes allowed before the ratio applies: small archives of blank forms compress well.
_ZIP_RATIO_ALLOWANCE: Final = 16 * 1024**2

# Members of a plain archive: the accepted types except archives (they are not checked inside).
_ZIP_MEMBER_EXTENSIONS: Final = ACCEPTED_EXTENSIONS - {"zip"}
_ARCHIVE_EXTENSIONS: Final = frozenset(
    {"zip", "zipx", "7z", "rar", "tar", "gz", "tgz", "bz2", "tbz2", "xz", "txz", "zst", "lz"}
    | {"lzh", "lha", "arj", "cab", "iso", "jar", "war", "apk"}
)
# Metadata that desktop archivers add on their own; refusing them would only puzzle people.
_IGNORED_MEMBER_NAMES: Final = frozenset({".ds_store", "thumbs.db", "desktop.ini"})

# Extensions of the files that are ZIP archives: plain ones, OOXML and OpenDocument.
ZIP_CONTAINER_EXTENSIONS: Final = frozenset({"zip", "docx", "xlsx", "pptx", "odt", "ods", "odp"})

# --- ZIP (APPNOTE.TXT 6.3.10) ----------------------------------------------------------

ZIP_LOCAL_MAGIC: Final = b"PK\x03\x04"
# An archive with no member is its end record alone.
EOCD_MAGIC: Final = b"PK\x05\x06"

_EOCD = struct.Struct("<IHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<IIQI")
_ZIP64_LOCATOR_SIGNATURE: Final = 0x07064B50
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")
_ZIP64_EOCD_SIGNATURE: Final = 0x06064B50
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_CENTRAL_SIGNATURE: Final = 0x02014B50
LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
LOCAL_SIGNATURE: Final = 0x04034B50
_EXTRA_HEADER = struct.Struct("<HH")
_ZIP64_EXTRA_ID: Final = 0x0001
# Info-ZIP Unicode Path: 7-Zip and unzip extract under this name rather than the header's.
_UNICODE_PATH_EXTRA_ID: Final = 0x7075
_MAX_COMMENT: Final = 0xFFFF
_FLAG_ENCRYPTED: Final = 0x0001
FLAG_DATA_DESCRIPTOR: Final = 0x0008
_FLAG_STRONG_ENCRYPTION: Final = 0x0040
_FLAG_UTF8: Final = 0x0800
# APPNOTE 4.4.4 bit 13: the local headers are masked, the central directory encrypted.
_FLAG_MASKED_HEADERS: Final = 0x2000
METHOD_STORED: Final = 0
_METHOD_DEFLATED: Final = 8
_METHOD_AES: Final = 99
_S_IFMT: Final = 0o170000
_S_IFLNK: Final = 0o120000


class ZipRefused(Exception):
    """The archive is refused, for `reason`, by its structure."""

    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ZipMember:
    """One entry of the central directory."""

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


class TailRing:
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
class CentralDirectory:
    """Where the central directory is, and how many entries it announces."""

    entries: int
    offset: int
    end: int  # where the end records begin


def locate_central_directory(ring: TailRing, max_members: int) -> CentralDirectory:
    """Find the end records at the end of the stream and check what they announce."""
    total = ring.total
    search = min(total - ring.start, _EOCD.size + _MAX_COMMENT)
    region = ring.read(total - search, total)
    at = region.rfind(EOCD_MAGIC)
    # The comment must run exactly to the end: no bytes hidden after the archive.
    while at >= 0 and not (
        at + _EOCD.size <= len(region)
        and at + _EOCD.size + _EOCD.unpack_from(region, at)[7] == len(region)
    ):
        at = region.rfind(EOCD_MAGIC, 0, at + 3)
    if at < 0:
        if ring.start > 0 and search < _EOCD.size + _MAX_COMMENT:
            raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)
        raise ZipRefused(Refusal.ZIP_INVALID)
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
                raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)
            if z64_at + _ZIP64_EOCD.size > locator_at:
                raise ZipRefused(Refusal.ZIP_INVALID)
            if z64_at < ring.start:
                raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)
            record = _ZIP64_EOCD.unpack(ring.read(z64_at, z64_at + _ZIP64_EOCD.size))
            signature, record_size, _, _, disk, cd_disk, disk_entries, entries = record[:8]
            cd_size, cd_offset = record[8:]
            if signature != _ZIP64_EOCD_SIGNATURE or z64_at + 12 + record_size != locator_at:
                raise ZipRefused(Refusal.ZIP_INVALID)
            cd_end = z64_at
            needs_zip64 = False
    elif needs_zip64 and ring.start > 0:
        raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)  # the ZIP64 locator is before the tail
    if needs_zip64:
        raise ZipRefused(Refusal.ZIP_INVALID)

    if disk != 0 or cd_disk != 0 or disk_entries != entries:
        raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)  # a split (multi-volume) archive
    if entries == 0:
        raise ZipRefused(Refusal.EMPTY)
    if entries > max_members:
        raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)
    if cd_offset + cd_size != cd_end:
        raise ZipRefused(Refusal.ZIP_INVALID)
    if cd_offset < ring.start:
        raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)  # the directory does not fit in the tail
    return CentralDirectory(entries=entries, offset=cd_offset, end=cd_end)


def read_members(ring: TailRing, directory: CentralDirectory) -> list[ZipMember]:
    """Parse every central directory entry; they must fill the directory exactly."""
    members: list[ZipMember] = []
    at = directory.offset
    for _ in range(directory.entries):
        if at + _CENTRAL.size > directory.end:
            raise ZipRefused(Refusal.ZIP_INVALID)
        fields = _CENTRAL.unpack(ring.read(at, at + _CENTRAL.size))
        signature, _, _, flags, method, _, _, crc, compressed, uncompressed = fields[:10]
        name_length, extra_length, comment_length, disk, _, external, offset = fields[10:]
        name_at = at + _CENTRAL.size
        extra_at = name_at + name_length
        end = extra_at + extra_length + comment_length
        if signature != _CENTRAL_SIGNATURE or end > directory.end:
            raise ZipRefused(Refusal.ZIP_INVALID)
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
                    raise ZipRefused(Refusal.ZIP_INVALID) from None
            elif header_id == _UNICODE_PATH_EXTRA_ID and len(body) > 5:
                names.append(_decode_member_name(body[5:], utf8=True))  # after version, CRC
        members.append(
            ZipMember(
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
        raise ZipRefused(Refusal.ZIP_INVALID)
    return members


def _extra_fields(extra: bytes) -> Iterator[tuple[int, bytes]]:
    at = 0
    # Like zipfile, tolerate fewer than 4 trailing bytes (padding some writers leave).
    while at + _EXTRA_HEADER.size <= len(extra):
        header_id, size = _EXTRA_HEADER.unpack_from(extra, at)
        body = extra[at + _EXTRA_HEADER.size : at + _EXTRA_HEADER.size + size]
        if len(body) != size:
            raise ZipRefused(Refusal.ZIP_INVALID)
        yield header_id, body
        at += _EXTRA_HEADER.size + size


def _decode_member_name(raw: bytes, *, utf8: bool) -> str:
    try:
        return raw.decode("utf-8" if utf8 else "cp437")
    except UnicodeDecodeError:
        # Extractors disagree on undecodable names; refuse rather than guess which one wins.
        raise ZipRefused(Refusal.ZIP_INVALID) from None


def _is_dangerous_member_name(name: str) -> bool:
    if any(unicodedata.category(char) == "Cc" for char in name):
        return True  # a NUL or CR would cut or fold the name in some extractors
    path = name.replace("\\", "/")
    if path.startswith("/") or ":" in path:
        return True  # absolute, drive letter (C:) or NTFS alternate data stream
    # Windows drops trailing dots and spaces from each component, so ". ." is ".." there.
    return any(part not in ("", ".") and not part.strip(". ") for part in path.split("/"))


def check_zip_structure(members: list[ZipMember], cd_offset: int, max_uncompressed: int) -> None:
    """Refuse members unsafe to extract, encrypted, split, duplicated, too big or overlapping."""
    seen: set[str] = set()
    uncompressed = 0
    for member in members:
        if member.is_symlink or any(_is_dangerous_member_name(name) for name in member.names):
            raise ZipRefused(Refusal.ZIP_PATH_TRAVERSAL)
        if member.flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION) or (
            member.method == _METHOD_AES
        ):
            raise ZipRefused(Refusal.ZIP_ENCRYPTED)
        if member.disk != 0:
            raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)
        if member.name in seen:
            raise ZipRefused(Refusal.ZIP_INVALID)  # two members, one name: which one wins?
        seen.add(member.name)
        uncompressed += member.uncompressed_size
    if uncompressed > max_uncompressed:
        raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)
    # Members must tile the archive from offset 0 without overlapping: overlapping entries
    # are how the smallest zip bombs multiply their output (Fifield, "A better zip bomb").
    spans = sorted(
        (
            member.offset,
            member.offset + LOCAL_HEADER.size + member.name_length + member.compressed_size,
        )
        for member in members
    )
    if spans[0][0] != 0 or spans[-1][1] > cd_offset:
        raise ZipRefused(Refusal.ZIP_INVALID)
    if any(previous_end > start for (_, previous_end), (start, _) in pairwise(spans)):
        raise ZipRefused(Refusal.ZIP_INVALID)


def member_refusal(member: ZipMember) -> Refusal | None:
    """Why the names of a plain archive's *member* refuse it (nested archive, type), if so."""
    for basename in _file_basenames(member.names):
        extension = extension_of(basename)
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
    extensions = (extension_of(basename) for basename in _file_basenames(names))
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


class MemberSniffer(Protocol):
    """What checks the content of one member: a `TypeSniffer` that checks no archive inside."""

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in its buffers."""

    def feed(self, chunk: Chunk) -> None:
        """Take the next chunk of the member's inflated bytes."""

    def early_verdict(self) -> SniffResult | None:
        """The member's refusal, once certain."""

    def finish(self) -> SniffResult:
        """The verdict on the whole member."""


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
        sniffers: tuple[MemberSniffer, ...],
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


class MemberWalk:
    """Walks the local headers of a plain ZIP stream and checks each member on its content.

    Each member's bytes are inflated in chunks of `_INFLATE_CHUNK` and fed to the sniffer that
    `sniffer_for` makes for its declared extension, a `TypeSniffer` that checks no archive
    inside (a member named as an archive is refused by name, one disguised as another type by
    its content): one level deep.
    A refused member is in `refusal` at once, and a walk that cannot go on (damaged,
    encrypted, unsupported compression, over a limit) leaves its reason in `failure`: either
    refuses the archive before the rest is sent. Nothing is written anywhere: the inflated
    bytes live as long as one chunk.
    """

    def __init__(
        self,
        *,
        sniffer_for: Callable[[str], MemberSniffer],
        max_members: int,
        max_uncompressed: int,
        max_ratio: int,
        unnamed: Callable[[], MemberSniffer] | None = None,
    ) -> None:
        self._sniffer_for = sniffer_for
        # The sniffer of a member without an extension (none by default: a plain archive's
        # member named without one is left to the central directory's checks).
        self._unnamed = unnamed
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
        except ZipRefused as refused:
            self._stop()
            self.failure = refused.reason
        except _MemberRefused as refused:
            self._stop()
            self.refusal = refused.result
        except zlib.error:
            self._stop()
            self.failure = Refusal.ZIP_INVALID

    def disagreement(self, members: list[ZipMember], directory_offset: int) -> Refusal | None:
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
        data = self._fill(data, len(ZIP_LOCAL_MAGIC))
        if len(self._pending) < len(ZIP_LOCAL_MAGIC):
            return data
        magic = bytes(self._pending[:4])
        if magic != ZIP_LOCAL_MAGIC:
            if magic not in (_CENTRAL_MAGIC, _ZIP64_EOCD_MAGIC, EOCD_MAGIC):
                raise ZipRefused(Refusal.ZIP_INVALID)  # bytes between members
            self.directory_at = self._at
            self._state = _WalkState.DONE
            self._pending = bytearray()
            return data[:0]
        data = self._fill(data, LOCAL_HEADER.size)
        if len(self._pending) < LOCAL_HEADER.size:
            return data
        name_length, extra_length = LOCAL_HEADER.unpack_from(self._pending)[9:]
        size = LOCAL_HEADER.size + name_length + extra_length
        data = self._fill(data, size)
        if len(self._pending) < size:
            return data
        header = bytes(self._pending)
        self._pending = bytearray()
        self._begin(header, self._at, name_length)
        self._at += size
        return data

    def _begin(self, header: bytes, offset: int, name_length: int) -> None:
        fields = LOCAL_HEADER.unpack_from(header)
        flags, method, _, _, crc, compressed, uncompressed = fields[2:9]
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION | _FLAG_MASKED_HEADERS) or (
            method == _METHOD_AES
        ):
            raise ZipRefused(Refusal.ZIP_ENCRYPTED)
        if method not in (METHOD_STORED, _METHOD_DEFLATED):
            raise ZipRefused(Refusal.ZIP_METHOD_UNSUPPORTED)
        if len(self.members) >= self._max_members:
            raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)
        name_end = LOCAL_HEADER.size + name_length
        names = [
            _decode_member_name(header[LOCAL_HEADER.size : name_end], utf8=bool(flags & _FLAG_UTF8))
        ]
        zip64: tuple[int, ...] = ()
        for header_id, body in _extra_fields(header[name_end:]):
            if header_id == _ZIP64_EXTRA_ID:
                zip64 = struct.unpack_from(f"<{len(body) // 8}Q", body)
            elif header_id == _UNICODE_PATH_EXTRA_ID and len(body) > 5:
                names.append(_decode_member_name(body[5:], utf8=True))

        sizes: tuple[int, int, int] | None = None
        if not flags & FLAG_DATA_DESCRIPTOR:
            sizes = (crc, *_local_sizes(compressed, uncompressed, zip64))
            if method == METHOD_STORED and sizes[1] != sizes[2]:
                raise ZipRefused(Refusal.ZIP_INVALID)
            self._declared += sizes[2]
            if self._declared > self._max_uncompressed:
                raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)

        extensions = _content_extensions(names)
        if extensions or not names[0].replace("\\", "/").endswith("/"):
            self._files += 1  # the position people count: folders are not files
        sniffers = tuple(self._sniffer_for(extension) for extension in sorted(extensions))
        if not extensions and self._unnamed is not None:
            sniffers = (self._unnamed(),)
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
                raise ZipRefused(Refusal.ZIP_INVALID)  # Deflate data shorter or longer
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
            raise ZipRefused(Refusal.ZIP_INVALID)
        if self._inflated > self._max_uncompressed or (
            self._inflated - _ZIP_RATIO_ALLOWANCE > self._max_ratio * self._at
        ):
            raise ZipRefused(Refusal.ZIP_TOO_COMPLEX)
        for sniffer in member.sniffers:
            sniffer.feed(out)
            if (verdict := sniffer.early_verdict()) is not None:
                raise _MemberRefused(SniffResult.member_refused(member.position, verdict, "zip"))

    def _end_member(self, member: _Inflow) -> None:
        if member.uncompressed_size is not None and (
            member.produced != member.uncompressed_size or member.running_crc != member.crc
        ):
            raise ZipRefused(Refusal.ZIP_INVALID)
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
            raise ZipRefused(Refusal.ZIP_INVALID)
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
    raise ZipRefused(Refusal.ZIP_INVALID)


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
            ZIP_LOCAL_MAGIC,
            _CENTRAL_MAGIC,
        ):
            return end
    return None
