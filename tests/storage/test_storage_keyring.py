"""Master key handling and the keyring's versioned département keys."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from storage import (
    InvalidConfiguration,
    Keyring,
    KeyringError,
    MasterKey,
    MemoryKeyStore,
    UnknownDepartement,
    WrongMasterKey,
    generate_master_key_file,
    validate_departement,
)
from storage.keystore import KekRecord


def test_generated_master_key_file_is_private_and_loadable(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "master.key"

    assert generate_master_key_file(path) is True

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip())) == 32
    assert MasterKey.from_file(path).key_id
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]


def test_existing_master_key_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    generate_master_key_file(path)
    before = path.read_bytes()

    assert generate_master_key_file(path) is False

    assert path.read_bytes() == before


def test_servers_starting_together_agree_on_one_master_key(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(generate_master_key_file(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count(True) == 1
    MasterKey.from_file(path)


def test_master_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = os.urandom(32)
    monkeypatch.setenv("FILR_TEST_MASTER_KEY", base64.b64encode(secret).decode())

    loaded = MasterKey.from_env("FILR_TEST_MASTER_KEY")

    assert loaded.key_id == MasterKey(secret).key_id


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_malformed_master_keys_are_refused(text: str) -> None:
    with pytest.raises(InvalidConfiguration):
        MasterKey.from_text(text)


def test_missing_master_key_sources_are_configuration_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FILR_TEST_MASTER_KEY", raising=False)
    with pytest.raises(InvalidConfiguration):
        MasterKey.from_env("FILR_TEST_MASTER_KEY")
    with pytest.raises(InvalidConfiguration):
        MasterKey.from_file(tmp_path / "absent.key")


def test_master_key_never_shows_in_repr() -> None:
    secret = os.urandom(32)
    key = MasterKey(secret)

    text = repr(key) + str(key) + repr(Keyring(key, MemoryKeyStore()))

    assert secret.hex() not in text
    assert base64.b64encode(secret).decode() not in text


@pytest.mark.parametrize("code", ["01", "62", "2A", "2B", "95", "971", "976", "69M"])
def test_departement_codes_are_accepted(code: str) -> None:
    assert validate_departement(code) == code


@pytest.mark.parametrize("code", ["", "6", "2a", "62 ", "../", "9711", "A2", "62\n"])
def test_malformed_departement_codes_are_refused(code: str) -> None:
    with pytest.raises(KeyringError):
        validate_departement(code)


def test_ensure_creates_the_first_version_once() -> None:
    keyring = Keyring(MasterKey.generate(), MemoryKeyStore())

    assert keyring.ensure("62") == 1
    assert keyring.ensure("62") == 1
    assert keyring.versions("62") == [1]
    assert keyring.departements() == ["62"]


def test_rotate_adds_versions_and_needs_an_existing_departement() -> None:
    keyring = Keyring(MasterKey.generate(), MemoryKeyStore())
    with pytest.raises(UnknownDepartement):
        keyring.rotate("62")
    keyring.ensure("62")

    assert keyring.rotate("62") == 2
    assert keyring.rotate("62") == 3
    assert keyring.versions("62") == [1, 2, 3]
    assert keyring.current_version("62") == 3


def test_concurrent_rotation_does_not_fail() -> None:
    # Given a store where another server adds version 2 just before we do
    keystore = MemoryKeyStore()
    keyring = Keyring(MasterKey.generate(), keystore)
    keyring.ensure("62")
    other = Keyring(MasterKey.generate(), keystore)
    original = keystore.kek_versions
    raced = False

    def stale_versions(departement: str) -> list[int]:
        nonlocal raced
        versions = list(original(departement))
        if not raced:
            raced = True
            other._add_version(departement, 2)
        return versions

    keystore.kek_versions = stale_versions  # type: ignore[method-assign]

    # When we rotate, then Then we settle on the version that won
    assert keyring.rotate("62") == 2


def test_department_keys_are_stored_wrapped() -> None:
    keystore = MemoryKeyStore()
    master = MasterKey.generate()
    Keyring(master, keystore).ensure("62")

    record = keystore.get_kek("62", 1)

    assert isinstance(record, KekRecord)
    assert len(record.wrapped_key) == 61
    assert record.master_key_id == master.key_id
    assert master.unwrap("62", 1, record.wrapped_key) != record.wrapped_key


def test_a_keyring_with_another_master_key_is_refused() -> None:
    keystore = MemoryKeyStore()
    Keyring(MasterKey.generate(), keystore).ensure("62")
    intruder = Keyring(MasterKey.generate(), keystore)

    with pytest.raises(WrongMasterKey):
        intruder.new_data_key("obj/1", "62")
