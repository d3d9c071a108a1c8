"""The package's surface: store URLs, key rules, and independence from Flask."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import storage
from storage import (
    InvalidConfiguration,
    InvalidObjectKey,
    LocalStore,
    MemoryStore,
    S3Store,
    open_store,
    validate_key,
    validate_prefix,
)

ROOT = Path(__file__).resolve().parents[2]


def test_memory_url_gives_a_fresh_memory_store() -> None:
    first, second = open_store("memory://"), open_store("memory://")

    assert isinstance(first, MemoryStore)
    first.put("k", [b"v"])
    assert not second.exists("k")


def test_file_url_gives_a_local_store(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/objects")

    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "objects").resolve()


def test_file_url_with_escaped_characters(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/with%20space")

    assert isinstance(store, LocalStore)
    assert store.root.name == "with space"


def test_s3_url_gives_an_s3_store_without_contacting_it() -> None:
    store = open_store(
        "s3://filr-deposits/prod/objects",
        endpoint_url="http://127.0.0.1:1",
        region="fr-par",
        access_key="AK",
        secret_key="SK",
        part_size=16 * 1024 * 1024,
    )

    assert isinstance(store, S3Store)
    with store:
        assert (store.bucket, store.prefix, store.part_size) == (
            "filr-deposits",
            "prod/objects/",
            16 * 1024 * 1024,
        )


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("ftp://host/path", {}),
        ("memory://somewhere", {}),
        ("memory://", {"create": True}),
        ("file://relative/path", {}),
        ("file://otherhost/path", {}),
        ("file:relative", {}),
        ("s3:///no-bucket", {}),
        ("s3://Bad_Bucket/x", {}),
        ("s3://bucket/x?secret=1", {}),
        ("s3://user:password@bucket/x", {}),
        ("s3://bucket/../x", {}),
        ("s3://bucket/x", {"endpoint": "http://typo"}),
        ("s3://bucket/x", {"part_size": 1024}),
    ],
)
def test_malformed_store_urls_are_configuration_errors(
    url: str, options: dict[str, object]
) -> None:
    with pytest.raises(InvalidConfiguration):
        open_store(url, **options)


def test_configuration_errors_are_value_errors() -> None:
    # Settings code can catch ValueError without knowing the storage package.
    assert issubclass(InvalidConfiguration, ValueError)
    assert issubclass(InvalidObjectKey, ValueError)


@pytest.mark.parametrize("key", ["a", "deposits/2026/03/0f1e2d", "A-b_c.d/e", "x" * 200])
def test_generated_key_shapes_are_valid(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("prefix", ["", "deposits/", "deposits/20", "a.b", "a-"])
def test_prefixes_of_valid_keys_are_valid(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


def test_key_validation_is_linear_time() -> None:
    with pytest.raises(InvalidObjectKey):
        validate_prefix("a" * 199 + "!")
    with pytest.raises(InvalidObjectKey):
        validate_key("a/" * 99 + "!")


def test_storage_never_imports_flask() -> None:
    code = "import sys, storage; sys.exit('flask' in sys.modules or 'portal' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)

    assert result.returncode == 0
    for path in Path(storage.__file__).parent.rglob("*.py"):
        assert re.search(r"^\s*(from|import)\s+flask", path.read_text(), re.M) is None, path
