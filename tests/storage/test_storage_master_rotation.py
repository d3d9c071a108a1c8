"""Master key rotation: département keys re-wrapped under a new master key, content untouched."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any

import pytest

from storage import (
    EncryptedStore,
    IntegrityError,
    InvalidConfiguration,
    Keyring,
    KeyStore,
    MasterKey,
    MemoryKeyStore,
    MemoryStore,
    StorageUnavailable,
    WrongMasterKey,
)
from storage.keystore import RewrappedKek
from tests.storage.helpers import SEGMENT


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _fill(keystore: KeyStore, master: MasterKey) -> tuple[EncryptedStore, dict[str, bytes]]:
    """Given objects of three départements, 62 with three key versions, under `master`."""
    store = EncryptedStore(MemoryStore(), Keyring(master, keystore), segment_size=SEGMENT)
    contents: dict[str, bytes] = {}
    for departement in ("59", "62", "2A"):
        store.keyring.ensure(departement)
    for index in range(9):
        departement = ("59", "62", "2A")[index % 3]
        if departement == "62" and index in (4, 7):
            store.keyring.rotate("62")  # objects under versions 1, 2 and 3 of 62
        key = f"deposits/{departement}/{index}"
        contents[key] = os.urandom(SEGMENT + 1000 * index)
        store.put(key, [contents[key]], departement=departement)
    return store, contents


def _read_all(store: EncryptedStore, contents: dict[str, bytes]) -> None:
    for key, content in contents.items():
        assert b"".join(store.open(key)) == content


class _InterruptedKeyStore:
    """A key store whose n-th save of re-wrapped département keys fails (a crash midway)."""

    def __init__(self, inner: KeyStore, fail_on: int) -> None:
        self._inner = inner
        self._fail_on = fail_on
        self.saves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save_rewrapped_keks(self, rewrapped: Sequence[RewrappedKek]) -> int:
        self.saves += 1
        if self.saves == self._fail_on:
            raise StorageUnavailable("key database unavailable")
        return self._inner.save_rewrapped_keks(rewrapped)


def test_a_master_key_file_holds_the_current_key_then_previous_ones() -> None:
    new, old, older = os.urandom(32), os.urandom(32), os.urandom(32)
    text = (
        f"# current\n{_b64(new)}\n\n"
        f"# previous, until the rotation job is done\n{_b64(old)}, {_b64(older)}\n"
    )

    key = MasterKey.from_text(text)

    assert key.key_id == MasterKey(new).key_id
    assert [k.key_id for k in key.previous] == [MasterKey(old).key_id, MasterKey(older).key_id]
    assert key.for_key_id(MasterKey(older).key_id) is key.previous[1]
    assert key.for_key_id(MasterKey.generate().key_id) is None
    assert MasterKey.from_text(_b64(new) + "\n").previous == ()


@pytest.mark.parametrize("text", ["# only a comment\n", f"{_b64(os.urandom(32))}\nnot-base64!"])
def test_master_key_files_with_a_bad_line_are_refused(text: str) -> None:
    with pytest.raises(InvalidConfiguration):
        MasterKey.from_text(text)


def test_previous_master_keys_never_show_in_repr() -> None:
    old = os.urandom(32)
    key = MasterKey(os.urandom(32), previous=[MasterKey(old)])

    assert _b64(old) not in repr(key) and old.hex() not in repr(key)
    assert MasterKey(old).key_id in repr(key)


def test_master_rotation_keeps_every_object_readable(keystore: KeyStore) -> None:
    # Given objects of several départements and key versions under the old master key
    old = MasterKey.generate()
    store, contents = _fill(keystore, old)
    keks = len(keystore.keks())
    # When the servers restart with the new master key first and the old one as previous
    new_bytes = os.urandom(32)
    rotated = MasterKey(new_bytes, previous=[old])
    during = EncryptedStore(store.inner, Keyring(rotated, keystore))
    # Then every object stays readable before the job
    _read_all(during, contents)

    # When the job runs
    report = during.keyring.rewrap_master(batch_size=2)

    # Then every département key moved to the new master key, and nothing else changed
    assert report.rewrapped == keks == 5
    assert report.failed == ()
    assert {kek.master_key_id for kek in keystore.keks()} == {rotated.key_id}
    _read_all(during, contents)
    # and a server holding the new master key alone reads everything, old and new objects
    after = EncryptedStore(store.inner, Keyring(MasterKey(new_bytes), keystore))
    _read_all(after, contents)
    during.put("deposits/62/new", [b"after the rotation"], departement="62")
    assert b"".join(after.open("deposits/62/new")) == b"after the rotation"


def test_the_old_master_key_alone_cannot_unwrap_after_the_job(keystore: KeyStore) -> None:
    # Given a finished master key rotation
    old_bytes = os.urandom(32)
    old = MasterKey(old_bytes)
    store, contents = _fill(keystore, old)
    Keyring(MasterKey(os.urandom(32), previous=[old]), keystore).rewrap_master()

    # When someone holding only the old master key tries to read
    stale = EncryptedStore(store.inner, Keyring(MasterKey(old_bytes), keystore))

    # Then the keyring refuses, and even bypassing its check the old key unwraps nothing
    for key in contents:
        with pytest.raises(WrongMasterKey):
            stale.open(key)
    for kek in keystore.keks():
        with pytest.raises(IntegrityError):
            old.unwrap(kek.departement, kek.version, kek.wrapped_key)


def test_master_rotation_is_idempotent(keystore: KeyStore) -> None:
    old = MasterKey.generate()
    _fill(keystore, old)
    keyring = Keyring(MasterKey(os.urandom(32), previous=[old]), keystore)
    keyring.rewrap_master()
    wrapped = [kek.wrapped_key for kek in keystore.keks()]

    again = keyring.rewrap_master()

    assert again.rewrapped == 0 and again.failed == ()
    assert [kek.wrapped_key for kek in keystore.keks()] == wrapped


def test_an_interrupted_master_rotation_resumes_where_it_stopped(keystore: KeyStore) -> None:
    # Given a job that crashes on its second batch of two
    old = MasterKey.generate()
    store, contents = _fill(keystore, old)
    new = MasterKey(os.urandom(32), previous=[old])
    crashing = _InterruptedKeyStore(keystore, fail_on=2)
    with pytest.raises(StorageUnavailable):
        Keyring(new, crashing).rewrap_master(batch_size=2)  # type: ignore[arg-type]

    # Then the first batch is saved, the rest still under the old key, and all is readable
    ids = [kek.master_key_id for kek in keystore.keks()]
    assert ids.count(new.key_id) == 2 and ids.count(old.key_id) == 3
    during = EncryptedStore(store.inner, Keyring(new, keystore))
    _read_all(during, contents)

    # When the job runs again, it does only what was left; a third run finds nothing
    assert during.keyring.rewrap_master(batch_size=2).rewrapped == 3
    assert during.keyring.rewrap_master(batch_size=2).rewrapped == 0
    assert {kek.master_key_id for kek in keystore.keks()} == {new.key_id}
    _read_all(during, contents)


def test_keys_under_an_unconfigured_master_key_are_reported_and_left(
    keystore: KeyStore,
) -> None:
    # Given one département whose keys were wrapped by a master key nobody configured
    old, stranger = MasterKey.generate(), MasterKey.generate()
    _fill(keystore, old)
    Keyring(stranger, keystore).ensure("971")
    before = keystore.get_kek("971", 1)

    report = Keyring(MasterKey(os.urandom(32), previous=[old]), keystore).rewrap_master()

    assert report.rewrapped == 5
    assert report.failed == (("971", 1),)
    assert keystore.get_kek("971", 1) == before


def test_a_concurrent_master_rotation_does_not_overwrite(keystore: KeyStore) -> None:
    # Given two servers re-wrapping at the same time (compare-and-set on the master key id)
    old = MasterKey.generate()
    _fill(keystore, old)
    new = MasterKey(os.urandom(32), previous=[old])
    first = Keyring(new, keystore)
    batch = keystore.keks_to_rewrap(new.key_id, None, 100)
    assert first.rewrap_master().rewrapped == 5
    stale = [
        RewrappedKek(
            departement=kek.departement,
            version=kek.version,
            old_master_key_id=old.key_id,
            master_key_id=new.key_id,
            wrapped_key=b"\x01" + bytes(60),
        )
        for kek in batch
    ]

    # When the second server saves what it computed from the rows it read before
    assert keystore.save_rewrapped_keks(stale) == 0

    # Then nothing was overwritten
    assert all(kek.wrapped_key != b"\x01" + bytes(60) for kek in keystore.keks())


def test_kek_listing_pages_in_order_and_skips_the_current_master_key() -> None:
    keystore = MemoryKeyStore()
    old, new = MasterKey.generate(), MasterKey.generate()
    keyring = Keyring(old, keystore)
    for departement in ("62", "59"):
        keyring.ensure(departement)
        keyring.rotate(departement)
    Keyring(new, keystore).ensure("2A")

    first = keystore.keks_to_rewrap(new.key_id, None, 3)
    rest = keystore.keks_to_rewrap(new.key_id, (first[-1].departement, first[-1].version), 3)

    assert [(k.departement, k.version) for k in first] == [("59", 1), ("59", 2), ("62", 1)]
    assert [(k.departement, k.version) for k in rest] == [("62", 2)]
    assert keystore.data_key_counts() == {}
