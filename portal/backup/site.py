"""The backup site and the backup key, from the settings; the production bucket is refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from portal.settings import Settings
from storage import MasterKey, ObjectStore, open_store
from storage.backup import BackupKey, generate_backup_key_file


class BackupConfigurationError(Exception):
    """The backup settings are missing or unsafe (message in French, for the operator)."""


def _s3_options(endpoint: str | None, region: str | None, access: str | None,
                secret: str | None) -> dict[str, Any]:  # fmt: skip
    return {
        k: v
        for k, v in {
            "endpoint_url": endpoint,
            "region": region,
            "access_key": access,
            "secret_key": secret,
        }.items()
        if v
    }


def production_options(settings: Settings, url: str) -> dict[str, Any]:
    """Options of a store on the production S3 service (the drill's scratch bucket)."""
    if not url.startswith("s3://"):
        return {}
    return _s3_options(
        settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key, settings.s3_secret_key
    )


def _place(url: str, endpoint: str | None) -> tuple[str, str, str]:
    """(kind, where, path) of a store URL: the service and bucket, or the directory."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return "file", "", unquote(parts.path).rstrip("/") + "/"
    return parts.scheme, f"{(endpoint or '').rstrip('/')}|{parts.netloc}", ""


def check_separate(settings: Settings, url: str, endpoint: str | None, what: str) -> None:
    """Refuse a store URL that is the production store's bucket, or overlaps its directory."""
    kind, where, path = _place(url, endpoint)
    prod_kind, prod_where, prod_path = _place(settings.storage_url, settings.s3_endpoint_url)
    if kind != prod_kind:
        return
    if kind == "file":
        if path.startswith(prod_path) or prod_path.startswith(path):
            raise BackupConfigurationError(
                f"{what} ne peut pas être dans le répertoire du stockage de production "
                "(FILR_STORAGE_URL), ni le contenir."
            )
    elif where == prod_where:
        raise BackupConfigurationError(
            f"{what} ne peut pas être le seau de production (FILR_STORAGE_URL) : "
            "choisissez un autre seau, idéalement sur un autre service."
        )


def open_backup_site(settings: Settings) -> ObjectStore:
    """The backup site of FILR_BACKUP_URL (never the production bucket)."""
    url = settings.backup_url
    if not url:
        raise BackupConfigurationError(
            "FILR_BACKUP_URL n'est pas défini (s3://seau/préfixe ou file:///répertoire)."
        )
    if not url.startswith(("s3://", "file://")):
        raise BackupConfigurationError("FILR_BACKUP_URL commence par s3:// ou file://.")
    check_separate(settings, url, settings.backup_s3_endpoint_url, "FILR_BACKUP_URL")
    options: dict[str, Any] = {}
    if url.startswith("s3://"):
        options = _s3_options(
            settings.backup_s3_endpoint_url,
            settings.backup_s3_region,
            settings.backup_s3_access_key,
            settings.backup_s3_secret_key,
        )
    return open_store(url, **options)


def load_backup_key(settings: Settings) -> BackupKey:
    """The backup key of FILR_BACKUP_KEY_FILE, refused if it is the master key."""
    path = settings.backup_key_file or settings.data_dir / "secrets" / "backup.key"
    if path.parent == settings.data_dir / "secrets":
        # Embedded default only, as the master key: generated at first use (0600).
        generate_backup_key_file(path)
    try:
        key = BackupKey.from_file(path)
    except Exception as e:
        raise BackupConfigurationError(
            f"clé de sauvegarde illisible (FILR_BACKUP_KEY_FILE) : {e}"
        ) from None
    try:
        master = MasterKey.from_file(settings.master_key_file)
    except Exception:
        return key  # no master key to compare with: nothing was encrypted with one yet
    if key.is_master_key(master):
        raise BackupConfigurationError(
            "la clé de sauvegarde (FILR_BACKUP_KEY_FILE) doit être distincte de la clé "
            "maîtresse (FILR_MASTER_KEY_FILE)."
        )
    return key
