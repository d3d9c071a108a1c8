"""The encrypted object format: a header, then AES-256-GCM segments (the STREAM construction).

Layout (all integers big-endian)::

    header  = magic "FILR/ENC" | format u8 = 1 | algorithm u8 = 1 | segment_size u32
              | kek_version u32 | nonce_prefix 7 bytes                           (25 bytes)
    segment = AES-256-GCM(data key, nonce, plaintext, aad) = ciphertext | tag (16 bytes)
    nonce   = nonce_prefix (7) | segment counter u32 (4) | last-segment flag u8 (1)
    aad     = header | u16 len | object key | u8 len | département
              (| SHA-256 of the whole plaintext, 32 bytes, for the last segment only)

Every segment holds exactly `segment_size` plaintext bytes except the last, which holds fewer
(possibly none) and is the only one flagged "last". So a reader needs no look-ahead: a short
segment is the last, and a stream that ends after a full segment was truncated. The counter in
the nonce catches reordering, the flag catches truncation and extension, the header in the AAD
authenticates the header, and the object key and département in the AAD catch an object copied
over another's key (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and
its Nonce-Reuse Misuse-Resistance", CRYPTO 2015; the same design as Tink's streaming AEAD).

The last segment's AAD also carries the plaintext's SHA-256, computed while encrypting and
recorded beside the data key. Every tag proves its segment is the one encrypted, so the last tag
verifying proves that the recorded digest is the SHA-256 of exactly the plaintext returned: the
digest is checked at the end of every full read without hashing again. `verify_sha256=True`
hashes again as well, at about 0.6 ms of CPU per MiB, for defence in depth.

`kek_version` is the département key version under which the object was first written. Later
re-wrapping moves the data key to newer versions without touching the content, so a reader only
checks that it never exceeds the version of the data key's current wrapping.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.base import Chunk, ReadableStream
from storage.errors import IntegrityError, ObjectCorrupted
from storage.pipeline import BackgroundDigest, Prefetcher, SegmentHasher

MAGIC = b"FILR/ENC"
FORMAT_VERSION = 1
ALGORITHM_AES256GCM_STREAM = 1
MIN_SEGMENT_SIZE = 64 * 1024
MAX_SEGMENT_SIZE = 1024 * 1024
DEFAULT_SEGMENT_SIZE = MAX_SEGMENT_SIZE
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
_HEADER = struct.Struct(">8sBBII7s")
HEADER_SIZE = _HEADER.size
# Segments decrypted in the reader's thread before a helper thread takes over (short objects
# never start one), and how many authenticated segments that thread may hold ready.
INLINE_SEGMENTS = 2
DECRYPT_AHEAD = 3
# 2**32 segments of at most 1 MiB: 4 PiB, far beyond any deposit.
_MAX_SEGMENTS = 1 << 32


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed header of an encrypted object."""

    segment_size: int
    kek_version: int
    nonce_prefix: bytes

    def pack(self) -> bytes:
        """Return the header's bytes."""
        return _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            ALGORITHM_AES256GCM_STREAM,
            self.segment_size,
            self.kek_version,
            self.nonce_prefix,
        )

    @classmethod
    def parse(cls, data: bytes) -> Header:
        """Parse header bytes; raise IntegrityError if they cannot be ours."""
        if len(data) != HEADER_SIZE:
            raise IntegrityError("encrypted object truncated in its header")
        magic, version, algorithm, segment_size, kek_version, prefix = _HEADER.unpack(data)
        if magic != MAGIC:
            raise IntegrityError("not an encrypted object")
        if version != FORMAT_VERSION or algorithm != ALGORITHM_AES256GCM_STREAM:
            raise IntegrityError("unsupported encrypted object format")
        # Checked before use: a forged size must not make the reader allocate gigabytes.
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise IntegrityError("invalid segment size")
        return cls(segment_size=segment_size, kek_version=kek_version, nonce_prefix=prefix)


def associated_data(header: bytes, object_key: str, departement: str) -> bytes:
    """Return the associated data shared by every segment of an object."""
    key = object_key.encode("ascii")
    dep = departement.encode("ascii")
    return header + struct.pack(">H", len(key)) + key + struct.pack(">B", len(dep)) + dep


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= _MAX_SEGMENTS:
        raise IntegrityError("too many segments")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class Encryptor:
    """Encrypt a plaintext stream into the format, hashing and counting the plaintext."""

    def __init__(
        self,
        data_key: bytes,
        *,
        object_key: str,
        departement: str,
        kek_version: int,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError("segment_size must be between 64 KiB and 1 MiB")
        self._aead = AESGCM(data_key)
        self._header = Header(segment_size, kek_version, os.urandom(NONCE_PREFIX_SIZE)).pack()
        self._aad = associated_data(self._header, object_key, departement)
        self._segment_size = segment_size
        self._hasher = SegmentHasher(segment_size)
        self.sha256 = ""
        self.size = 0
        self.is_finished = False

    def encrypt(self, chunks: Iterable[bytes]) -> Generator[Chunk, None, None]:
        """Yield the header, then one encrypted segment at a time; then set size and sha256.

        Segments are yielded in one reused buffer: write or copy each before taking the next.
        """
        try:
            yield from self._encrypt(chunks)
        finally:
            self._hasher.close()

    def _encrypt(self, chunks: Iterable[bytes]) -> Generator[Chunk, None, None]:
        yield self._header
        segment_size = self._segment_size
        prefix = self._header[-NONCE_PREFIX_SIZE:]
        encrypt_into = self._aead.encrypt_into
        aad = self._aad
        hasher = self._hasher
        # One output buffer, reused for every segment, and a few plaintext buffers that the
        # hasher gives back: no 1 MiB object is allocated per segment (see SegmentHasher).
        # Consumers write or copy each chunk before asking for the next (see ObjectStore.put).
        out = memoryview(bytearray(segment_size + TAG_SIZE))
        segment = hasher.take()
        filled = 0
        counter = 0
        for chunk in chunks:
            view = memoryview(chunk)
            self.size += len(view)
            while view:
                take = min(segment_size - filled, len(view))
                segment[filled : filled + take] = view[:take]
                filled += take
                view = view[take:]
                if filled == segment_size:
                    encrypt_into(_nonce(prefix, counter, False), segment, aad, out)
                    hasher.submit(segment, segment_size)
                    yield out
                    segment = hasher.take()
                    filled = 0
                    counter += 1
        hasher.submit(segment, filled)
        self.sha256 = hasher.hexdigest()
        final_aad = aad + bytes.fromhex(self.sha256)
        # encrypt_into wants an output of exactly the ciphertext's size.
        last = out[: filled + TAG_SIZE]
        encrypt_into(_nonce(prefix, counter, True), memoryview(segment)[:filled], final_aad, last)
        yield last
        self.is_finished = True


class _Reader:
    """Cut a stream of arbitrary chunks into exact-size pieces, copying as little as possible."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._buffer = bytearray()

    def read(self, size: int) -> memoryview:
        """Return the next `size` bytes, fewer only at the end; valid until the next call."""
        if len(self._pending) >= size:
            piece = self._pending[:size]
            self._pending = self._pending[size:]
            return piece
        if len(self._buffer) < size:
            self._buffer = bytearray(size)
        buffer = self._buffer
        filled = len(self._pending)
        buffer[:filled] = self._pending
        self._pending = memoryview(b"")
        while filled < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            view = memoryview(chunk)
            take = min(size - filled, len(view))
            buffer[filled : filled + take] = view[:take]
            filled += take
            self._pending = view[take:]
        return memoryview(buffer)[:filled]


class BufferRing:
    """Frame buffers lent to a reader one segment at a time and given back once it has sent it.

    With `EncryptedStore.open(..., reuse_buffers=True)` each segment is read (or copied) into
    one of these buffers, decrypted in place, and yielded as a view of it; the reader gives the
    buffer back when it asks for the next segment. Nothing of 1 MiB is allocated per segment (a
    fresh `bytes` per segment cost a 1 MiB memset and page faults in a gunicorn worker). No call
    ever waits for a buffer: one is allocated when none is free, and the read-ahead bounds how
    many are out at once (the reader's, those queued, the one being filled). The last buffer
    given back is the first lent again, while it is still in the CPU's caches.
    """

    def __init__(self, size: int = MAX_SEGMENT_SIZE + TAG_SIZE) -> None:
        self.size = size  # a whole frame of the largest segment the header may announce
        self._free: list[bytearray] = []  # append and pop are atomic: two threads share it
        self.created = 0

    def take(self) -> memoryview:
        """A buffer of `size` bytes to fill."""
        try:
            return memoryview(self._free.pop())
        except IndexError:
            self.created += 1
            return memoryview(bytearray(self.size))

    def give_back(self, view: memoryview) -> None:
        """Return the buffer under `view` (a view of a buffer from `take`)."""
        buffer = view.obj
        if isinstance(buffer, bytearray) and len(buffer) == self.size:
            self._free.append(buffer)


class _InlineDigest:
    """SHA-256 in the calling thread, for plaintext in reused buffers (no queue can hold them)."""

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self.update = self._sha256.update

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()

    def close(self) -> None:
        pass


class _FileReader:
    """Read exact-size pieces of a `ReadableStream` into one reused buffer (no copy, no chunk)."""

    def __init__(self, stream: ReadableStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    def read(self, size: int) -> memoryview:
        """Return the next `size` bytes, fewer only at the end; valid until the next call."""
        if len(self._buffer) < size:
            self._buffer = bytearray(size)
        view = memoryview(self._buffer)[:size]
        return view[: self._stream.readinto(view)]


def decrypt(
    chunks: Iterator[bytes],
    data_key: bytes,
    *,
    object_key: str,
    departement: str,
    max_kek_version: int,
    sha256: str,
    verify_sha256: bool = False,
    ahead: int = DECRYPT_AHEAD,
    reuse_buffers: bool = False,
) -> Generator[bytes, None, None]:
    """Yield the plaintext of an encrypted stream, one authenticated segment at a time.

    The first value yielded is an empty marker, sent once the header and first segment are
    authenticated (see `storage.base.primed`). The last segment is held back until its tag has
    proved the end of the stream and the recorded digest `sha256`, so a reader never receives a
    complete-looking file that is not exactly the one stored.

    After the first `INLINE_SEGMENTS`, a helper thread reads and decrypts up to `ahead` segments
    ahead of the reader (AES-GCM releases the GIL), so that decryption overlaps with whatever the
    reader does with each segment (writing it to a socket or a file); `ahead=0` never starts one.
    Only authenticated plaintext is ever queued.

    With `reuse_buffers`, each segment is decrypted in place in a buffer of a `BufferRing` and
    yielded as a `memoryview` of it, valid only until the next segment is asked for: for a
    reader that writes or copies each chunk before asking for the next (a server sending it),
    never for one that collects them (`b"".join(...)`, `list(...)`).
    """
    ring = BufferRing() if reuse_buffers else None
    rehash: BackgroundDigest | _InlineDigest | None = None
    if verify_sha256:
        # A helper thread would hash a reused buffer after it was given back and refilled.
        rehash = _InlineDigest() if reuse_buffers else BackgroundDigest()
    segments = _segments(
        chunks,
        AESGCM(data_key),
        associated=(object_key, departement),
        max_kek_version=max_kek_version,
        sha256=sha256,
        rehash=rehash,
        ring=ring,
    )
    yield from _pipelined(segments, ahead, ring)


def _pipelined(
    segments: Generator[bytes, None, None], ahead: int, ring: BufferRing | None = None
) -> Generator[bytes, None, None]:
    """Yield the empty marker once the first segment is authenticated, then every plaintext.

    `segments` is closed (and with it the backend's stream) by whichever thread runs it last:
    this generator's until the hand-over, the helper thread's after it. With a `ring`, the
    buffer of each segment goes back to it when the reader asks for the next one.
    """
    handed_over = False
    try:
        first = next(segments, None)  # raises IntegrityError if the start is forged
        yield b""
        if first is None:
            return
        if first:
            yield first
        for _ in range(INLINE_SEGMENTS):
            plaintext = next(segments, None)
            if plaintext is None:
                return
            yield plaintext
            if ring is not None:
                ring.give_back(cast(memoryview, plaintext))
        if ahead <= 0:
            rest: Iterator[bytes] = segments
        else:
            # From here the helper thread alone runs `segments`, until the end or until close().
            handed_over = True
            rest = Prefetcher(segments, depth=ahead)
        try:
            if ring is None:
                yield from rest
            else:
                for plaintext in rest:
                    yield plaintext
                    ring.give_back(cast(memoryview, plaintext))
        finally:
            if handed_over:
                cast(Prefetcher, rest).close()
    finally:
        if not handed_over:
            segments.close()


def _segments(
    chunks: Iterator[bytes],
    aead: AESGCM,
    *,
    associated: tuple[str, str],
    max_kek_version: int,
    sha256: str,
    rehash: BackgroundDigest | _InlineDigest | None,
    ring: BufferRing | None = None,
) -> Generator[bytes, None, None]:
    """Yield each segment's plaintext once its tag is verified; the first may be empty.

    With a `ring`, each frame is read (a file) or copied (chunks) into a buffer of the ring and
    decrypted in place; the plaintext yielded is a view of that buffer.

    Owns `chunks`: closes it when it ends, fails or is closed, so the backend's file or HTTP
    body is released now, not whenever the collector runs. Every failure is an ObjectCorrupted
    naming the object and the segment, so that the caller can say what is damaged.
    """
    segment: int | None = None  # None while the header is read, then the segment being read
    try:
        try:
            digest = bytes.fromhex(sha256)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise IntegrityError("malformed recorded digest")
        file = chunks if isinstance(chunks, ReadableStream) else None
        reader = _FileReader(file) if file is not None else _Reader(chunks)
        header_bytes = bytes(reader.read(HEADER_SIZE))
        header = Header.parse(header_bytes)
        if header.kek_version > max_kek_version:
            raise IntegrityError("header names a newer key version than the data key's")
        aad = associated_data(header_bytes, *associated)
        final_aad = aad + digest
        frame_size = header.segment_size + TAG_SIZE
        prefix = header.nonce_prefix
        counter = 0
        decrypt_into = aead.decrypt_into
        while True:
            segment = counter
            buffer = None
            if ring is None:
                frame = reader.read(frame_size)
            elif file is not None:
                buffer = ring.take()[:frame_size]
                frame = buffer[: file.readinto(buffer)]
            else:
                buffer = ring.take()[:frame_size]
                frame = reader.read(frame_size)
            last = len(frame) < frame_size
            if last and len(frame) < TAG_SIZE:
                raise IntegrityError("encrypted object truncated")
            nonce = _nonce(prefix, counter, last)
            try:
                if buffer is None:
                    plaintext = aead.decrypt(nonce, frame, final_aad if last else aad)
                else:
                    # In place for a file (OpenSSL allows it); what fails its tag is never
                    # yielded, and the buffer is overwritten by the next frame.
                    view = buffer[: len(frame) - TAG_SIZE]
                    decrypt_into(nonce, frame, final_aad if last else aad, view)
                    plaintext = cast(bytes, view)  # read as bytes are (see `decrypt`)
            except InvalidTag:
                raise IntegrityError("encrypted object failed authentication") from None
            if rehash is not None:
                rehash.update(plaintext)
                if last and not hmac.compare_digest(rehash.hexdigest(), digest.hex()):
                    raise IntegrityError("plaintext digest mismatch")
            if counter == 0 or plaintext:
                yield plaintext
            if last:
                return
            counter += 1
    except IntegrityError as e:
        raise ObjectCorrupted(str(e), object_key=associated[0], segment=segment) from None
    finally:
        try:
            if rehash is not None:
                rehash.close()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
