"""The application's long-lived service objects, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from portal.auth.passwords import Argon2
from portal.auth.throttle import DatabaseFailureStore, FailureStore, RedisFailureStore, Throttle
from portal.auth.totp import SecretBox
from portal.db import Database
from portal.mail import Mailer, make_mailer
from portal.settings import Settings


@dataclass(frozen=True)
class Services:
    """Everything a request or a job needs besides the database session."""

    settings: Settings
    argon2: Argon2
    throttle: Throttle
    mailer: Mailer
    secret_box: SecretBox


def build_services(settings: Settings, database: Database) -> Services:
    """Create the service objects for *settings*."""
    store: FailureStore
    if settings.redis_url:
        store = RedisFailureStore(settings.redis_url)
    else:
        store = DatabaseFailureStore(lambda: database.session)
    return Services(
        settings=settings,
        argon2=Argon2(settings.argon2_time_cost, settings.argon2_memory_kib),
        throttle=Throttle(store, settings.throttle_max_delay_seconds),
        mailer=make_mailer(settings),
        secret_box=SecretBox(settings.secret_key),
    )


def services() -> Services:
    """The services of the current app."""
    value = current_app.extensions["filr"]
    assert isinstance(value, Services)  # noqa: S101 - set by create_app
    return value
