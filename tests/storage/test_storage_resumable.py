"""Resumable encrypted uploads on every backend: pieces, restarts, the digest, aborts."""

from __future__ import annotations

import hashlib
import os

import pytest

from storage import EncryptedStore, IntegrityError, ObjectStore, S3Store
from storage.errors import ObjectNotFound
from storage.resumable import PARTS_PREFIX, ResumableSha256, ResumableState, ResumableUploads
from tests.storage.helpers import SEGMENT, new_key

PIECE = 80 * SEGMENT  # 5 MiB: the smallest S3 part but the last


def test_saved_digest_state_resumes_in_a_fresh_object() -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    first = ResumableSha256()
    first.update(data[:1000])
    resumed = ResumableSha256(first.state())
    resumed.update(data[1000:])
    assert resumed.hexdigest() == hashlib.sha256(data).hexdigest()
    assert ResumableSha256().hexdigest() == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("tail", [0, 1, SEGMENT - 1, SEGMENT, 3 * SEGMENT + 5])
def test_pieces_make_the_object_a_streamed_put_would(
    encrypted: EncryptedStore, object_store: ObjectStore, tail: int
) -> None:
    data = os.urandom(2 * PIECE + tail)
    uploads = ResumableUploads(encrypted)
    key = new_key()
    state = uploads.begin(key, departement="62")
    offset = 0
    while len(data) - offset > PIECE:
        # A fresh ResumableUploads per piece, from the saved state only: a restarted server.
        state = ResumableUploads(encrypted).append(state, data[offset : offset + PIECE], last=False)
        offset += PIECE
    state = uploads.append(state, data[offset:], last=True)
    assert state.received == len(data)
    stored = uploads.complete(state)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    assert b"".join(encrypted.open(key)) == data
    # Only the object is left, and it is ciphertext.
    assert list(object_store.list(PARTS_PREFIX)) == []
    raw = b"".join(object_store.get(key))
    assert data[:4096] not in raw


def test_a_piece_that_is_not_the_last_holds_whole_segments(encrypted: EncryptedStore) -> None:
    uploads = ResumableUploads(encrypted)
    state = uploads.begin(new_key(), departement="62")
    with pytest.raises(ValueError):
        uploads.append(state, b"x" * (SEGMENT + 1), last=False)
    with pytest.raises(ValueError):
        uploads.append(state, b"", last=False)


def test_a_retried_piece_from_the_saved_state_is_counted_once(encrypted: EncryptedStore) -> None:
    data = os.urandom(PIECE + 100)
    uploads = ResumableUploads(encrypted)
    key = new_key()
    begun = uploads.begin(key, departement="62")
    after_first = uploads.append(begun, data[:PIECE], last=False)
    # The answer was lost: the client sends the piece again; the caller's saved state is
    # still `after_first` if it was saved, `begun` if not. Both end with the right object.
    again = uploads.append(begun, data[:PIECE], last=False)
    assert again.parts == after_first.parts
    stored = uploads.complete(uploads.append(again, data[PIECE:], last=True))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(encrypted.open(key)) == data


def test_abort_leaves_nothing(encrypted: EncryptedStore, object_store: ObjectStore) -> None:
    uploads = ResumableUploads(encrypted)
    key = new_key()
    state = uploads.append(uploads.begin(key, departement="62"), os.urandom(PIECE), last=False)
    uploads.abort(state)
    uploads.abort(state)
    assert list(object_store.list(PARTS_PREFIX)) == []
    assert not encrypted.exists(key)
    with pytest.raises(ObjectNotFound):
        encrypted.open(key)
    if isinstance(object_store, S3Store):
        assert all(name != key for name, _, _ in object_store.incomplete_uploads())


def test_the_object_is_bound_to_its_departement(encrypted: EncryptedStore) -> None:
    uploads = ResumableUploads(encrypted)
    state = uploads.begin(new_key(), departement="62")
    forged = ResumableState(**{**_fields(state), "departement": "59"})
    with pytest.raises(IntegrityError):  # the data key unwraps under its own département only
        uploads.append(forged, os.urandom(SEGMENT), last=True)


def _fields(state: ResumableState) -> dict[str, object]:
    return {name: getattr(state, name) for name in state.__dataclass_fields__}
