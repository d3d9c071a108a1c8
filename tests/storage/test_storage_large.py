"""An object above 2 GiB, streamed both ways through EncryptedStore(LocalStore) in bounded memory.

AES-GCM refuses a single call above 2**31 - 1 bytes: only segmenting makes this work at all.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import EncryptedStore, Keyring, LocalStore, MasterKey, MemoryKeyStore

MIB = 1024 * 1024
SIZE = 2 * 1024 * MIB + MIB + 3  # above 2 GiB, and not a whole number of segments
MEMORY_BUDGET = 64 * MIB


def _status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (VmHWM) of this process; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.mark.slow
def test_object_above_2_gib_streams_in_bounded_memory(tmp_path: Path) -> None:
    # Given a 2 GiB+ upload produced on the fly (never held in memory)
    keyring = Keyring(MasterKey.generate(), MemoryKeyStore())
    keyring.ensure("62")
    store = EncryptedStore(LocalStore(tmp_path / "objects"), keyring)
    block = os.urandom(MIB)
    expected = hashlib.sha256()

    def source() -> Iterator[bytes]:
        sent = 0
        while sent < SIZE:
            # Chunks of an odd size, so that they never line up with segments.
            piece = block[: min(MIB - 1, SIZE - sent)]
            expected.update(piece)
            sent += len(piece)
            yield piece

    can_measure = _reset_peak_rss()
    baseline = _status("VmRSS")

    # When it is stored, then read back in full
    stored = store.put("big/object", source(), departement="62")
    received = 0
    last = b""
    for chunk in store.open("big/object"):
        assert len(chunk) <= MIB
        received += len(chunk)
        last = chunk

    # Then every byte came back (the SHA-256 is checked at the end of the read), in order
    assert stored.size == received == SIZE
    assert stored.sha256 == expected.hexdigest()
    period = block[: MIB - 1]
    start = (SIZE - len(last)) % len(period)
    assert last == (period * 3)[start : start + len(last)]
    # ...and memory stayed bounded by a few segments, whatever the size
    peak = _status("VmHWM")
    if can_measure and baseline is not None and peak is not None:
        assert peak - baseline < MEMORY_BUDGET, f"peak RSS grew by {(peak - baseline) // MIB} MiB"
    store.inner.delete("big/object")  # pytest keeps recent tmp dirs: do not leave 2 GiB behind
