"""Fixtures of the `filr` command's tests: the environment a command reads its settings from."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from portal.cli import main
from portal.settings import Settings


def cli_environment(settings: Settings) -> dict[str, str]:
    """The `FILR_*` variables pointing `filr` at the test's database, mail and files."""
    return {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_SMTP_HOST": settings.smtp_host or "",
        "FILR_SMTP_PORT": str(settings.smtp_port),
        "FILR_BASE_URL": settings.base_url,
        "FILR_STORAGE_URL": settings.storage_url,
        "FILR_MASTER_KEY_FILE": str(settings.master_key_file),
        "FILR_CLAMD_URL": settings.clamd_url,
        # The S3 store of the tests on PostgreSQL (SeaweedFS), when there is one.
        "FILR_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "FILR_S3_REGION": settings.s3_region or "",
        "FILR_S3_ACCESS_KEY": settings.s3_access_key or "",
        "FILR_S3_SECRET_KEY": settings.s3_secret_key or "",
    }


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The environment of the `filr` command, pointing at the test's database, mail and files."""
    for name, value in cli_environment(settings).items():
        monkeypatch.setenv(name, value)
    return settings


def filr(args: list[str], code: int = 0, stdin: str | None = None) -> Result:
    """Run `filr ARGS` in this process; its exit code must be *code*."""
    result = CliRunner().invoke(main, args, input=stdin, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result
