"""EncryptedStore on every backend: round trips, secrecy, tampering, rotation, shredding."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from storage import (
    EncryptedStore,
    IntegrityError,
    InvalidObjectKey,
    Keyring,
    KeyringError,
    LocalStore,
    MemoryKeyStore,
    MemoryStore,
    ObjectCorrupted,
    ObjectExists,
    ObjectNotFound,
    ObjectShredded,
    ObjectStore,
    S3Store,
    UnknownDepartement,
)
from storage.keystore import DataKeyRecord, Rewrapped
from storage.s3 import READ_CHUNK_SIZE
from storage.stream import DECRYPT_AHEAD, HEADER_SIZE, TAG_SIZE
from tests.storage.helpers import (
    SEGMENT,
    chunked,
    new_key,
    open_descriptors,
    random_bytes,
    read_all,
)
from tests.support.seaweedfs import S3Endpoint

FRAME = SEGMENT + TAG_SIZE


def put(store: EncryptedStore, data: bytes, departement: str = "62") -> str:
    key = new_key("deposits")
    store.put(key, chunked(data, 10_000), departement=departement)
    return key


def raw(store: EncryptedStore, key: str) -> bytes:
    return read_all(store.inner, key)


def overwrite(store: EncryptedStore, key: str, data: bytes) -> None:
    """Replace the stored ciphertext behind the encryption layer's back."""
    store.inner.put(key, [data])


def read_until_error(stream: Iterator[bytes]) -> tuple[bytes, Exception | None]:
    """Collect what a stream yields until it ends or raises."""
    received = []
    try:
        for chunk in stream:
            received.append(chunk)
    except Exception as e:
        return b"".join(received), e
    return b"".join(received), None


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 3 * SEGMENT + 17, 5 * 1024 * 1024 + 3],
)
def test_round_trip_returns_the_plaintext(encrypted: EncryptedStore, size: int) -> None:
    data = random_bytes(size)
    key = new_key()

    stored = encrypted.put(key, chunked(data, 7000), departement="62")

    assert b"".join(encrypted.open(key)) == data
    assert stored.size == size
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.kek_version == 1
    assert stored.departement == "62"
    assert encrypted.stat(key) == stored
    # Header, one 16-byte tag per segment, and a last segment that is never full.
    segments = size // SEGMENT + 1
    assert encrypted.inner.size(key) == HEADER_SIZE + size + segments * TAG_SIZE


def test_same_plaintext_gives_different_ciphertexts(encrypted: EncryptedStore) -> None:
    data = random_bytes(100_000)

    first, second = put(encrypted, data), put(encrypted, data)

    one, two = raw(encrypted, first), raw(encrypted, second)
    assert len(one) == len(two)
    assert one != two
    # Not even a shared segment: fresh data key and nonce prefix for each object.
    assert one[HEADER_SIZE : HEADER_SIZE + 64] != two[HEADER_SIZE : HEADER_SIZE + 64]


def test_open_yields_segments_one_by_one(encrypted: EncryptedStore) -> None:
    data = random_bytes(4 * SEGMENT + 100)
    key = put(encrypted, data)

    chunks = list(encrypted.open(key))

    assert [len(chunk) for chunk in chunks] == [SEGMENT] * 4 + [100]


def test_object_keys_are_never_reused(encrypted: EncryptedStore) -> None:
    key = put(encrypted, b"first")

    with pytest.raises(ObjectExists):
        encrypted.put(key, [b"second"], departement="62")
    encrypted.delete(key)
    with pytest.raises(ObjectExists):
        encrypted.put(key, [b"third"], departement="62")

    assert not encrypted.exists(key)


def test_unknown_or_malformed_departement_is_refused(encrypted: EncryptedStore) -> None:
    with pytest.raises(UnknownDepartement):
        encrypted.put(new_key(), [b"x"], departement="2A")
    with pytest.raises(KeyringError):
        encrypted.put(new_key(), [b"x"], departement="../62")
    with pytest.raises(InvalidObjectKey):
        encrypted.put("../x", [b"x"], departement="62")


def test_missing_object_raises_object_not_found_at_open(encrypted: EncryptedStore) -> None:
    with pytest.raises(ObjectNotFound):
        encrypted.open(new_key())
    with pytest.raises(ObjectNotFound):
        encrypted.stat(new_key())
    assert not encrypted.exists(new_key())


def test_failing_source_leaves_neither_object_nor_key(encrypted: EncryptedStore) -> None:
    key = new_key()

    def source() -> Iterator[bytes]:
        yield random_bytes(6 * 1024 * 1024)
        raise ConnectionResetError("the browser went away")

    with pytest.raises(ConnectionResetError):
        encrypted.put(key, source(), departement="62")

    assert not encrypted.exists(key)
    assert not encrypted.inner.exists(key)
    assert encrypted.keyring.keystore.get_data_key(key) is None


def test_failing_key_store_removes_the_uploaded_ciphertext(
    encrypted: EncryptedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()

    def broken(_record: DataKeyRecord) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(encrypted.keyring.keystore, "add_data_key", broken)

    with pytest.raises(ConnectionError):
        encrypted.put(key, [b"data"], departement="62")

    assert not encrypted.inner.exists(key)


# --- confidentiality -------------------------------------------------------------------


def stored_bytes(store: ObjectStore, request: pytest.FixtureRequest) -> list[bytes]:
    """Every byte the backend holds, read below the ObjectStore API where possible."""
    if isinstance(store, LocalStore):
        return [path.read_bytes() for path in Path(store.root).rglob("*") if path.is_file()]
    if isinstance(store, S3Store):
        endpoint: S3Endpoint = request.getfixturevalue("seaweedfs")
        # Through the S3 API, the whole bucket, then SeaweedFS's own files on disk.
        client = store.client
        objects = [
            client.get_object(Bucket=store.bucket, Key=item["Key"])["Body"].read()
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
            for item in page.get("Contents", [])
        ]
        files = [path.read_bytes() for path in endpoint.workdir.rglob("*") if path.is_file()]
        return objects + files
    assert isinstance(store, MemoryStore)
    return [read_all(store, key) for key in store.list()]


def test_no_plaintext_reaches_the_backend(
    encrypted: EncryptedStore, request: pytest.FixtureRequest
) -> None:
    # Given a plaintext carrying a unique marker many times, inside incompressible data
    marker = b"NIR-MARKER-" + os.urandom(12).hex().encode()
    data = b"".join(marker + random_bytes(5000) for _ in range(300))

    # When it is stored, and every byte the backend holds is searched (for LocalStore and
    # SeaweedFS, the files on disk too)
    put(encrypted, data)
    blobs = stored_bytes(encrypted.inner, request)

    # Then the marker is nowhere
    assert blobs
    assert not any(marker in blob for blob in blobs)
    # ...and the search does see plaintext when there is some (control)
    encrypted.inner.put(new_key("control"), [marker + random_bytes(5000)])
    assert any(marker in blob for blob in stored_bytes(encrypted.inner, request))


def test_the_object_store_holds_no_key_material(encrypted: EncryptedStore) -> None:
    key = put(encrypted, random_bytes(1000))
    record = encrypted.keyring.keystore.get_data_key(key)
    assert record is not None and record.wrapped_key is not None

    ciphertext = raw(encrypted, key)

    assert record.wrapped_key[13:] not in ciphertext
    assert record.sha256 is not None
    assert bytes.fromhex(record.sha256) not in ciphertext


# --- tampering -------------------------------------------------------------------------


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def segment_at(index: int) -> int:
    return HEADER_SIZE + index * FRAME


TAMPERINGS: dict[str, Callable[[bytes], bytes]] = {
    "bit flip in the magic": lambda c: flip(c, 0),
    "bit flip in the segment size": lambda c: flip(c, 12),
    "bit flip in the key version": lambda c: flip(c, 16),
    "bit flip in the nonce prefix": lambda c: flip(c, HEADER_SIZE - 1),
    "bit flip in the first segment": lambda c: flip(c, segment_at(0) + 5),
    "bit flip in a middle segment": lambda c: flip(c, segment_at(2) + 100),
    "bit flip in a tag": lambda c: flip(c, segment_at(1) + FRAME - 1),
    "bit flip in the last segment": lambda c: flip(c, len(c) - 20),
    "truncated to nothing": lambda c: b"",
    "truncated in the header": lambda c: c[: HEADER_SIZE - 3],
    "truncated after the header": lambda c: c[:HEADER_SIZE],
    "last segment removed": lambda c: c[: segment_at(4)],
    "truncated inside the last segment": lambda c: c[:-1],
    "truncated inside a middle segment": lambda c: c[: segment_at(2) + 1000],
    "extended by one byte": lambda c: c + b"\x00",
    "extended by a copy of a segment": lambda c: c + c[segment_at(1) : segment_at(2)],
    "segments reordered": lambda c: (
        (c[: segment_at(1)] + c[segment_at(2) : segment_at(3)] + c[segment_at(1) : segment_at(2)])
        + c[segment_at(3) :]
    ),
    "segment duplicated": lambda c: c[: segment_at(2)] + c[segment_at(1) :],
    "segment dropped": lambda c: c[: segment_at(1)] + c[segment_at(2) :],
    "last segment flag forged by cutting": lambda c: c[: segment_at(3)] + c[segment_at(3) : -1],
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS), ids=list(TAMPERINGS))
def test_tampering_is_detected(encrypted: EncryptedStore, tampering: str) -> None:
    # Given an object of four full segments and a short last one
    data = random_bytes(4 * SEGMENT + 1000)
    key = put(encrypted, data)
    # When its ciphertext is altered in the object store
    overwrite(encrypted, key, TAMPERINGS[tampering](raw(encrypted, key)))

    # Then reading fails with IntegrityError, having yielded only authentic, in-order segments
    try:
        received, error = read_until_error(encrypted.open(key))
    except IntegrityError:
        return  # refused at open(): nothing at all was yielded
    assert isinstance(error, IntegrityError)
    assert len(received) % SEGMENT == 0
    assert received == data[: len(received)]
    assert len(received) < len(data)


# Where each damage is first noticed: the segment (None: the header), as ObjectCorrupted says.
FIRST_BAD_SEGMENT: dict[str, int | None] = {
    "bit flip in the magic": None,
    "truncated in the header": None,
    "bit flip in the first segment": 0,
    "bit flip in a middle segment": 2,
    "truncated inside a middle segment": 2,
    "last segment removed": 4,
    "segments reordered": 1,
    "segment dropped": 1,
}


@pytest.mark.parametrize("tampering", list(FIRST_BAD_SEGMENT), ids=list(FIRST_BAD_SEGMENT))
def test_a_damaged_object_is_named_with_its_first_bad_segment(
    encrypted: EncryptedStore, tampering: str
) -> None:
    # Given an object of four full segments and a short last one, damaged in the object store
    data = random_bytes(4 * SEGMENT + 1000)
    key = put(encrypted, data)
    overwrite(encrypted, key, TAMPERINGS[tampering](raw(encrypted, key)))

    # When it is read
    try:
        _received, error = read_until_error(encrypted.open(key))
    except ObjectCorrupted as e:
        error = e

    # Then the error is ObjectCorrupted (an IntegrityError), naming the object and the segment
    # where reading stopped, and nothing of the content
    assert isinstance(error, ObjectCorrupted) and isinstance(error, IntegrityError)
    assert error.object_key == key
    assert error.segment == FIRST_BAD_SEGMENT[tampering]
    assert key in str(error) and data[:16].hex() not in str(error)


def test_bytes_of_a_tampered_segment_are_never_returned(encrypted: EncryptedStore) -> None:
    # Given an object of five segments whose third segment was altered
    data = random_bytes(5 * SEGMENT)
    key = put(encrypted, data)
    overwrite(encrypted, key, flip(raw(encrypted, key), segment_at(2) + 7))

    # When it is read
    stream = encrypted.open(key)
    received, error = read_until_error(stream)

    # Then exactly the first two segments came out, then IntegrityError
    assert isinstance(error, IntegrityError)
    assert received == data[: 2 * SEGMENT]


def test_tampered_first_segment_fails_at_open(encrypted: EncryptedStore) -> None:
    key = put(encrypted, random_bytes(3 * SEGMENT))
    overwrite(encrypted, key, flip(raw(encrypted, key), segment_at(0) + 3))

    with pytest.raises(IntegrityError):
        encrypted.open(key)


def test_object_copied_over_another_key_is_refused(encrypted: EncryptedStore) -> None:
    # Given two objects of the same département
    first = put(encrypted, random_bytes(2 * SEGMENT))
    second = put(encrypted, random_bytes(2 * SEGMENT))
    # When the first's ciphertext is copied over the second's key
    overwrite(encrypted, second, raw(encrypted, first))

    # Then reading the second fails
    with pytest.raises(IntegrityError):
        b"".join(encrypted.open(second))


def test_object_and_key_row_copied_together_are_refused(encrypted: EncryptedStore) -> None:
    # Given someone who can write both the bucket and the key database
    keystore = encrypted.keyring.keystore
    assert isinstance(keystore, MemoryKeyStore)
    first = put(encrypted, random_bytes(1000))
    second = put(encrypted, random_bytes(1000))
    # When the first object and its key row are copied onto the second object's key
    overwrite(encrypted, second, raw(encrypted, first))
    record = keystore.get_data_key(first)
    assert record is not None
    keystore._data_keys[second] = dataclasses.replace(record, object_key=second)

    # Then the data key does not unwrap: it is bound to the first object's key
    with pytest.raises(IntegrityError):
        encrypted.open(second)


def test_object_moved_to_another_departement_is_refused(encrypted: EncryptedStore) -> None:
    keystore = encrypted.keyring.keystore
    assert isinstance(keystore, MemoryKeyStore)
    key = put(encrypted, random_bytes(1000), departement="62")
    record = keystore.get_data_key(key)
    assert record is not None
    keystore._data_keys[key] = dataclasses.replace(record, departement="59")

    with pytest.raises(IntegrityError):
        encrypted.open(key)


def test_digest_mismatch_withholds_the_last_segment(encrypted: EncryptedStore) -> None:
    # Given an object whose recorded SHA-256 no longer matches (a corrupted key row)
    keystore = encrypted.keyring.keystore
    assert isinstance(keystore, MemoryKeyStore)
    data = random_bytes(3 * SEGMENT + 10)
    key = put(encrypted, data)
    record = keystore.get_data_key(key)
    assert record is not None
    keystore._data_keys[key] = dataclasses.replace(record, sha256="0" * 64)

    # When it is read in full
    received, error = read_until_error(encrypted.open(key))

    # Then the reader never gets the whole file, and learns why
    assert isinstance(error, IntegrityError)
    assert received == data[: 3 * SEGMENT]


def test_digest_mismatch_of_a_small_object_fails_at_open(encrypted: EncryptedStore) -> None:
    keystore = encrypted.keyring.keystore
    assert isinstance(keystore, MemoryKeyStore)
    key = put(encrypted, b"short")
    record = keystore.get_data_key(key)
    assert record is not None
    keystore._data_keys[key] = dataclasses.replace(record, sha256="0" * 64)

    with pytest.raises(IntegrityError):
        encrypted.open(key)


def test_ciphertext_lost_from_the_backend_is_not_found(encrypted: EncryptedStore) -> None:
    key = put(encrypted, b"data")
    encrypted.inner.delete(key)

    with pytest.raises(ObjectNotFound):
        encrypted.open(key)


# --- rotation and shredding ------------------------------------------------------------


def test_rotation_keeps_old_objects_readable(encrypted: EncryptedStore) -> None:
    # Given objects written under version 1 of the key of 62
    keyring = encrypted.keyring
    old_data = random_bytes(2 * SEGMENT + 3)
    old = put(encrypted, old_data)

    # When the key is rotated and a new object written
    assert keyring.rotate("62") == 2
    new_data = random_bytes(1000)
    new = put(encrypted, new_data)

    # Then both read back, each under its own version, and 59 is untouched
    assert b"".join(encrypted.open(old)) == old_data
    assert b"".join(encrypted.open(new)) == new_data
    assert encrypted.stat(old).kek_version == 1
    assert encrypted.stat(new).kek_version == 2
    assert keyring.current_version("59") == 1


def test_rewrap_moves_old_data_keys_without_touching_content(encrypted: EncryptedStore) -> None:
    # Given objects of 62 under version 1, one of 59, then a rotation of 62
    keyring = encrypted.keyring
    contents = {put(encrypted, data): data for data in (random_bytes(n) for n in (0, 10, 99_999))}
    other = put(encrypted, b"59", departement="59")
    ciphertexts = {key: raw(encrypted, key) for key in contents}
    keyring.rotate("62")

    # When the data keys are re-wrapped, in small batches, twice
    report = keyring.rewrap("62", batch_size=2)
    again = keyring.rewrap("62", batch_size=2)

    # Then every object of 62 is under version 2, unchanged in the store, still readable
    assert (report.rewrapped, report.version, report.failed) == (3, 2, ())
    assert again.rewrapped == 0
    for key, data in contents.items():
        assert encrypted.stat(key).kek_version == 2
        assert raw(encrypted, key) == ciphertexts[key]
        assert b"".join(encrypted.open(key)) == data
    assert encrypted.stat(other).kek_version == 1


def test_rewrap_resumes_after_an_interruption(
    encrypted: EncryptedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = encrypted.keyring
    keystore = keyring.keystore
    keys = [put(encrypted, os.urandom(10)) for _ in range(5)]
    keyring.rotate("62")
    save = keystore.save_rewrapped
    calls = 0

    def crash_on_second_batch(items: Sequence[Rewrapped]) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("job killed")
        return save(items)

    with monkeypatch.context() as patch:
        patch.setattr(keystore, "save_rewrapped", crash_on_second_batch)
        with pytest.raises(ConnectionError):
            keyring.rewrap("62", batch_size=2)

    assert sorted(encrypted.stat(key).kek_version for key in keys) == [1, 1, 1, 2, 2]
    assert keyring.rewrap("62", batch_size=2).rewrapped == 3
    assert all(encrypted.stat(key).kek_version == 2 for key in keys)
    assert all(len(b"".join(encrypted.open(key))) == 10 for key in keys)


def test_shredding_makes_every_copy_unreadable(encrypted: EncryptedStore) -> None:
    # Given an object, and a copy of its ciphertext kept elsewhere (a backup)
    data = random_bytes(2 * SEGMENT)
    key = put(encrypted, data)
    backup = raw(encrypted, key)

    # When it is shredded
    assert encrypted.shred(key) is True
    assert encrypted.shred(key) is False

    # Then it cannot be read, not even after restoring the ciphertext from the backup
    with pytest.raises(ObjectShredded):
        encrypted.open(key)
    overwrite(encrypted, key, backup)
    with pytest.raises(ObjectShredded):
        encrypted.open(key)
    assert not encrypted.exists(key)
    record = encrypted.keyring.keystore.get_data_key(key)
    assert record is not None
    assert (record.wrapped_key, record.sha256) == (None, None)
    assert record.shredded_at is not None


def test_shredded_object_stays_unreadable_after_rotation(encrypted: EncryptedStore) -> None:
    key = put(encrypted, b"secret")
    encrypted.shred(key)
    encrypted.keyring.rotate("62")

    assert encrypted.keyring.rewrap("62").rewrapped == 0
    with pytest.raises(ObjectShredded):
        encrypted.open(key)


def test_delete_shreds_and_removes_the_ciphertext(encrypted: EncryptedStore) -> None:
    key = put(encrypted, b"to be purged")

    encrypted.delete(key)
    encrypted.delete(key)

    assert not encrypted.inner.exists(key)
    with pytest.raises(ObjectShredded):
        encrypted.open(key)


def test_another_master_key_cannot_read(encrypted: EncryptedStore) -> None:
    from storage import MasterKey, WrongMasterKey

    key = put(encrypted, b"data")
    intruder = EncryptedStore(
        encrypted.inner, Keyring(MasterKey.generate(), encrypted.keyring.keystore)
    )

    with pytest.raises(WrongMasterKey):
        intruder.open(key)


def test_abandoned_plaintext_stream_releases_the_backend(encrypted: EncryptedStore) -> None:
    # More than one read of the S3 store, so that its HTTP body is left half-read (one read to its
    # end goes back to the connection pool, open and reusable, which is no leak).
    data = random_bytes(READ_CHUNK_SIZE + 3 * SEGMENT)
    key = put(encrypted, data)
    # A stream of a file or of an HTTP body holds one descriptor; one of the in-memory twin none.
    held_by_a_stream = 0 if isinstance(encrypted.inner, MemoryStore) else 1

    # Given a plaintext stream read for one segment, When its reader closes it
    stream = encrypted.open(key)
    assert next(stream) == data[:SEGMENT]
    held = open_descriptors()
    stream.close()  # type: ignore[attr-defined]
    # Then it yields nothing more and the backend's file or connection is released now
    assert list(stream) == []
    assert open_descriptors() <= held - held_by_a_stream

    # Given a stream never read, When it is dropped, Then the backend is released at once
    dropped = encrypted.open(key)
    held = open_descriptors()
    del dropped
    assert open_descriptors() <= held - held_by_a_stream


# --- large objects, read ahead and re-hashing ------------------------------------------


def test_large_object_tampered_in_the_middle_stops_there(encrypted: EncryptedStore) -> None:
    # Given an object large enough to be read ahead by a helper thread, altered in segment 50
    data = random_bytes(100 * SEGMENT + 5)
    key = put(encrypted, data)
    overwrite(encrypted, key, flip(raw(encrypted, key), segment_at(50) + 9))

    # When it is read, Then exactly the 50 segments before it come out
    received, error = read_until_error(encrypted.open(key))

    assert isinstance(error, IntegrityError)
    assert received == data[: 50 * SEGMENT]


def test_large_object_truncated_never_looks_complete(encrypted: EncryptedStore) -> None:
    data = random_bytes(100 * SEGMENT)
    key = put(encrypted, data)
    overwrite(encrypted, key, raw(encrypted, key)[: segment_at(100)])  # the empty last is gone

    received, error = read_until_error(encrypted.open(key))

    assert isinstance(error, IntegrityError)
    assert received == data


def test_abandoned_large_read_stops_its_helper_thread(encrypted: EncryptedStore) -> None:
    import threading

    key = put(encrypted, random_bytes(100 * SEGMENT))
    before = threading.active_count()

    stream = encrypted.open(key)
    next(stream)
    stream.close()  # type: ignore[attr-defined]

    assert threading.active_count() == before


@pytest.mark.parametrize("size", [0, 5, 3 * SEGMENT + 1, 90 * SEGMENT + 1])
def test_verify_sha256_mode_reads_back(
    object_store: ObjectStore, keyring: Keyring, size: int
) -> None:
    store = EncryptedStore(object_store, keyring, segment_size=SEGMENT, verify_sha256=True)
    data = random_bytes(size)
    key = put(store, data)

    assert b"".join(store.open(key)) == data


@pytest.mark.parametrize("verify_sha256", [False, True])
def test_recorded_digest_is_checked_in_both_modes(
    object_store: ObjectStore, keyring: Keyring, verify_sha256: bool
) -> None:
    store = EncryptedStore(object_store, keyring, segment_size=SEGMENT, verify_sha256=verify_sha256)
    keystore = keyring.keystore
    assert isinstance(keystore, MemoryKeyStore)
    data = random_bytes(90 * SEGMENT + 1)
    key = put(store, data)
    record = keystore.get_data_key(key)
    assert record is not None
    keystore._data_keys[key] = dataclasses.replace(record, sha256=hashlib.sha256(b"x").hexdigest())

    received, error = read_until_error(store.open(key))

    assert isinstance(error, IntegrityError)
    assert received == data[: 90 * SEGMENT]


def test_orphans_are_ciphertexts_without_a_live_key(encrypted: EncryptedStore) -> None:
    live = put(encrypted, b"live")
    shredded = put(encrypted, b"shredded")
    encrypted.shred(shredded)
    crashed = new_key("deposits")
    encrypted.inner.put(crashed, [b"ciphertext whose key was never saved"])

    found = set(encrypted.orphans("deposits/"))

    assert found == {shredded, crashed}
    assert live not in found


def test_malformed_recorded_digest_releases_the_backend_and_its_threads(
    encrypted: EncryptedStore, keyring: Keyring
) -> None:
    import threading

    # Given a large object (read ahead from S3) whose key row holds a malformed digest
    key = put(encrypted, random_bytes(90 * SEGMENT))
    keystore = keyring.keystore
    assert isinstance(keystore, MemoryKeyStore)
    record = keystore.get_data_key(key)
    assert record is not None
    keystore._data_keys[key] = dataclasses.replace(record, sha256="not hex")
    before = threading.active_count()
    # When it is opened, Then it is refused and no helper thread is left reading the backend
    for _ in range(3):
        with pytest.raises(IntegrityError):
            encrypted.open(key)
    assert threading.active_count() == before


# --- reused buffers (a server that sends each chunk before asking for the next) ---------


def read_sending(stream: Iterator[bytes]) -> tuple[bytes, Exception | None, set[int]]:
    """Copy each chunk before asking for the next, as a server sending it does; also return the
    identities of the buffers under the chunks."""
    received = bytearray()
    buffers: set[int] = set()
    try:
        for chunk in stream:
            received += chunk
            if isinstance(chunk, memoryview):
                buffers.add(id(chunk.obj))
    except Exception as e:
        return bytes(received), e, buffers
    return bytes(received), None, buffers


@pytest.mark.parametrize("verify_sha256", [False, True])
@pytest.mark.parametrize("size", [0, 1, SEGMENT, 3 * SEGMENT + 17, 90 * SEGMENT + 1])
def test_reused_buffers_return_the_plaintext_in_a_few_buffers(
    object_store: ObjectStore, keyring: Keyring, size: int, verify_sha256: bool
) -> None:
    # Given objects of every shape, small to read ahead by a helper thread
    store = EncryptedStore(object_store, keyring, segment_size=SEGMENT, verify_sha256=verify_sha256)
    data = random_bytes(size)
    key = put(store, data)

    # When they are read with reused buffers, each chunk copied before the next is asked for
    received, error, buffers = read_sending(store.open(key, reuse_buffers=True))

    # Then the plaintext is exact, and came through a few buffers whatever the size
    assert error is None
    assert received == data
    assert len(buffers) <= DECRYPT_AHEAD + 3


@pytest.mark.parametrize("tampering", list(TAMPERINGS), ids=list(TAMPERINGS))
def test_tampering_is_detected_with_reused_buffers(
    encrypted: EncryptedStore, tampering: str
) -> None:
    # Given an object of four full segments and a short last one, altered in the object store
    data = random_bytes(4 * SEGMENT + 1000)
    key = put(encrypted, data)
    overwrite(encrypted, key, TAMPERINGS[tampering](raw(encrypted, key)))

    # When it is read with reused buffers
    try:
        received, error, _ = read_sending(encrypted.open(key, reuse_buffers=True))
    except IntegrityError:
        return  # refused at open(): nothing at all was yielded
    # Then only authentic, in-order segments came out, then ObjectCorrupted
    assert isinstance(error, ObjectCorrupted)
    assert len(received) % SEGMENT == 0
    assert received == data[: len(received)]
    assert len(received) < len(data)


def test_reused_buffers_never_hand_over_a_segment_that_failed_in_place(
    encrypted: EncryptedStore,
) -> None:
    # Given a large object (read ahead, decrypted in place) altered in segment 50, and a short
    # one cut inside its last segment
    data = random_bytes(100 * SEGMENT + 5)
    key = put(encrypted, data)
    overwrite(encrypted, key, flip(raw(encrypted, key), segment_at(50) + 9))
    truncated = put(encrypted, data)
    overwrite(encrypted, truncated, raw(encrypted, truncated)[:-1])

    # When they are read with reused buffers, Then nothing of the bad segments comes out
    received, error, _ = read_sending(encrypted.open(key, reuse_buffers=True))
    assert isinstance(error, ObjectCorrupted) and error.segment == 50
    assert received == data[: 50 * SEGMENT]
    received, error, _ = read_sending(encrypted.open(truncated, reuse_buffers=True))
    assert isinstance(error, ObjectCorrupted) and error.segment == 100
    assert received == data[: 100 * SEGMENT]


def test_an_abandoned_read_with_reused_buffers_stops_its_helper_thread(
    encrypted: EncryptedStore,
) -> None:
    import threading

    key = put(encrypted, random_bytes(100 * SEGMENT))
    before = threading.active_count()

    stream = encrypted.open(key, reuse_buffers=True)
    for _ in range(10):
        next(stream)
    stream.close()  # type: ignore[attr-defined]

    assert threading.active_count() == before
