"""The application's long-lived service objects, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy.engine import Engine

from portal.auth.passwords import Argon2
from portal.auth.throttle import DatabaseFailureStore, FailureStore, RedisFailureStore, Throttle
from portal.auth.totp import SecretBox
from portal.db import Database
from portal.fiches.catalogue import Catalogue, load_catalogue
from portal.fiches.protection import load_contacts
from portal.filecheck.clamd import ClamdClient
from portal.mail import Mailer, make_mailer
from portal.settings import Settings
from storage import (
    EncryptedStore,
    Keyring,
    MasterKey,
    SqlKeyStore,
    generate_master_key_file,
    open_store,
)


@dataclass(frozen=True)
class Services:
    """Everything a request or a job needs besides the database session."""

    settings: Settings
    argon2: Argon2
    throttle: Throttle
    mailer: Mailer
    secret_box: SecretBox
    store: EncryptedStore
    clamd: ClamdClient
    # The forms of the fiches (portal/fiches/catalogue.py): a malformed file stops the start-up.
    catalogue: Catalogue


def build_store(settings: Settings, engine: Engine) -> EncryptedStore:
    """The encrypted object store: backend from the URL, keys in the database, master key aside."""
    options: dict[str, Any] = {}
    if settings.storage_url.startswith("s3://"):
        options = {
            k: v
            for k, v in {
                "endpoint_url": settings.s3_endpoint_url,
                "region": settings.s3_region,
                "access_key": settings.s3_access_key,
                "secret_key": settings.s3_secret_key,
            }.items()
            if v
        }
    inner = open_store(settings.storage_url, **options)
    if settings.master_key_file.parent == settings.data_dir / "secrets":
        # Embedded default only: the master key is generated at first start (0600). Elsewhere
        # it is provisioned as a secret file, and its absence is an error.
        generate_master_key_file(settings.master_key_file)
    keyring = Keyring(MasterKey.from_file(settings.master_key_file), SqlKeyStore(engine))
    return EncryptedStore(inner, keyring)


def build_services(settings: Settings, database: Database, engine: Engine) -> Services:
    """Create the service objects for *settings*."""
    store: FailureStore
    if settings.redis_url:
        store = RedisFailureStore(settings.redis_url)
    else:
        store = DatabaseFailureStore(lambda: database.session)
    # The data-protection contacts printed on fiches: a malformed file stops the start-up.
    load_contacts(settings.data_protection_contacts_file)
    return Services(
        settings=settings,
        argon2=Argon2(settings.argon2_time_cost, settings.argon2_memory_kib),
        throttle=Throttle(store, settings.throttle_max_delay_seconds),
        mailer=make_mailer(settings),
        secret_box=SecretBox(settings.secret_key),
        store=build_store(settings, engine),
        clamd=ClamdClient(settings.clamd_url, timeout=settings.clamd_timeout_seconds),
        catalogue=load_catalogue(settings.fiches_catalogue_dirs),
    )


def services() -> Services:
    """The services of the current app."""
    value = current_app.extensions["filr"]
    assert isinstance(value, Services)  # noqa: S101 - set by create_app
    return value
