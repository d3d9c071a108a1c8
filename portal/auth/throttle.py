"""Per-account and per-IP throttling of failed log-ins, shared between servers.

Never a global lock: each key (one account, one IP) is throttled on its own. After *limit*
failures within a minute the key must wait, and the wait doubles with every further failure
(60 s, 120 s, 240 s … capped), so a password-guessing run is slowed to a crawl while the
real user of another account is untouched.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.auth.models import ThrottleEvent

WINDOW_SECONDS = 60
MEMORY_SECONDS = 3600  # failures older than this no longer count


def account_key(email: str) -> str:
    """Throttle key of an account name (hashed: the e-mail never sits in Redis in clear)."""
    return "acct:" + hashlib.sha256(email.strip().casefold().encode()).hexdigest()[:40]


def ip_key(ip: str | None) -> str:
    """Throttle key of a source address."""
    return "ip:" + (ip or "unknown")


class FailureStore(Protocol):
    """Where failure timestamps live (Redis when configured, the database otherwise)."""

    def add(self, key: str, at: float) -> None: ...

    def recent(self, key: str, since: float) -> list[float]: ...

    def clear(self, key: str) -> None: ...


class RedisFailureStore:
    """Failures in one sorted set per key (score = time), expiring after an hour."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def add(self, key: str, at: float) -> None:
        name = "filr:throttle:" + key
        pipe = self._redis.pipeline()
        pipe.zadd(name, {f"{at:.6f}": at})
        pipe.zremrangebyscore(name, 0, at - MEMORY_SECONDS)
        pipe.expire(name, MEMORY_SECONDS)
        pipe.execute()

    def recent(self, key: str, since: float) -> list[float]:
        values = self._redis.zrangebyscore("filr:throttle:" + key, since, "+inf", withscores=True)
        pairs = cast(list[tuple[bytes, float]], values)
        return [float(score) for _member, score in pairs]

    def clear(self, key: str) -> None:
        self._redis.delete("filr:throttle:" + key)


class DatabaseFailureStore:
    """Failures as rows in the caller's transaction (the log-in commits them with its audit row).

    Using the request's own session matters on SQLite, where a second connection would wait
    for the write lock the request already holds.
    """

    def __init__(self, current_session: Callable[[], Session]) -> None:
        self._session = current_session

    def add(self, key: str, at: float) -> None:
        session = self._session()
        session.add(ThrottleEvent(key=key, at=datetime.fromtimestamp(at, UTC)))
        session.execute(
            sa.delete(ThrottleEvent).where(
                ThrottleEvent.key == key,
                ThrottleEvent.at < datetime.fromtimestamp(at - MEMORY_SECONDS, UTC),
            )
        )
        session.flush()

    def recent(self, key: str, since: float) -> list[float]:
        rows = (
            self._session()
            .execute(
                sa.select(ThrottleEvent.at).where(
                    ThrottleEvent.key == key, ThrottleEvent.at >= datetime.fromtimestamp(since, UTC)
                )
            )
            .scalars()
        )
        return [r.timestamp() for r in rows]

    def clear(self, key: str) -> None:
        self._session().execute(sa.delete(ThrottleEvent).where(ThrottleEvent.key == key))


@dataclass(frozen=True)
class Verdict:
    """Whether a key may try now, and if not for how long it must wait."""

    allowed: bool
    retry_after: int = 0


class Throttle:
    """Applies the growing-delay rule to any key."""

    def __init__(self, store: FailureStore, max_delay: int = 900) -> None:
        self.store = store
        self.max_delay = max_delay

    def check(self, key: str, limit: int, now: float | None = None) -> Verdict:
        """May *key* try again now?"""
        now = time.time() if now is None else now
        failures = sorted(self.store.recent(key, now - MEMORY_SECONDS))
        if len(failures) < limit:
            return Verdict(True)
        # Was the limit reached within one minute at some point? Then the delay applies.
        bursts = any(
            failures[i + limit - 1] - failures[i] <= WINDOW_SECONDS
            for i in range(len(failures) - limit + 1)
        )
        if not bursts:
            return Verdict(True)
        excess = len(failures) - limit
        delay = min(WINDOW_SECONDS * 2**excess, self.max_delay)
        wait = failures[-1] + delay - now
        if wait <= 0:
            return Verdict(True)
        return Verdict(False, math.ceil(wait))

    def fail(self, key: str, now: float | None = None) -> None:
        """Count one failure for *key*."""
        self.store.add(key, time.time() if now is None else now)

    def reset(self, key: str) -> None:
        """Forget the failures of *key* (after a successful log-in of that account)."""
        self.store.clear(key)


class RateLimit:
    """At most *limit* requests per key in any sliding minute (API tokens), shared by servers."""

    def __init__(self, store: FailureStore) -> None:
        self.store = store

    def hit(self, key: str, limit: int, now: float | None = None) -> Verdict:
        """Count one request of *key*; refused (with the wait) beyond *limit* in a minute."""
        now = time.time() if now is None else now
        recent = sorted(self.store.recent(key, now - WINDOW_SECONDS))
        if len(recent) >= limit:
            # Refused requests are not counted: a client that waits is served again.
            wait = recent[len(recent) - limit] + WINDOW_SECONDS - now
            return Verdict(False, max(1, math.ceil(wait)))
        self.store.add(key, now)
        return Verdict(True)
