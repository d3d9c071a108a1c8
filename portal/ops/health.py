"""Readiness: can this server serve now? The database, the object store and Redis, each within a
short timeout, checked at once (a load balancer asks every few seconds)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storage import ObjectStore

# Short: a probe that waits longer than the load balancer's own timeout says nothing.
CHECK_TIMEOUT_SECONDS = 2.0
# A key no deposit has (deposit keys are `deposits/<id>/<id>`): asking for it costs one HEAD.
PROBE_KEY = "sante/pret"
# Bounded: a component that hangs leaves at most this many threads waiting on it, and the
# next probes time out in the queue instead of piling up threads.
_POOL = ThreadPoolExecutor(max_workers=6, thread_name_prefix="filr-sante")


@dataclass(frozen=True)
class Readiness:
    """Each component checked, and whether all answered."""

    checks: dict[str, bool]

    @property
    def is_ready(self) -> bool:
        """True when every component answered in time."""
        return all(self.checks.values())


def _database(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def _store(store: ObjectStore) -> None:
    store.exists(PROBE_KEY)


def _redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


def check_readiness(
    engine: Engine,
    store: ObjectStore,
    redis_url: str | None,
    *,
    timeout: float = CHECK_TIMEOUT_SECONDS,
) -> Readiness:
    """Check the database, the object store (the backend, no decryption) and Redis if set."""
    probes: dict[str, Callable[[], None]] = {
        "base_de_donnees": lambda: _database(engine),
        "stockage": lambda: _store(store),
    }
    if redis_url:
        probes["redis"] = lambda: _redis(redis_url)
    futures = {name: _POOL.submit(probe) for name, probe in probes.items()}
    wait(futures.values(), timeout=timeout)  # all at once: the probe takes one timeout at most
    checks: dict[str, bool] = {}
    for name, future in futures.items():
        if not future.done():
            future.cancel()
            checks[name] = False
        else:
            # Any failure of a component means "not ready", whatever its kind.
            checks[name] = future.exception() is None
    return Readiness(checks)
