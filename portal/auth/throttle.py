"""Per-account and per-IP throttling of failed log-ins, shared between servers.

Never a global lock: each key (one account, one IP) is throttled on its own. After *limit*
failures within a minute the key must wait, and the wait doubles with every further failure
(60 s, 120 s, 240 s … capped), so a password-guessing run is slowed to a crawl while the
real user of another account is untouched.

An attempt is counted *before* it is evaluated (`Throttle.attempt`), not after: checking
first and counting once the slow password hash has answered lets a burst of parallel
requests all pass the check (a time-of-check to time-of-use race, CWE-367).
"""

from __future__ import annotations

import hashlib
import math
import secrets
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

    def add_shared(self, key: str, at: float) -> None:
        """Add an entry at *at* that every server sees before this returns."""

    def remove(self, key: str, at: float) -> None:
        """Remove one entry of *key* made at *at* (any of them if several share that time)."""


# Removes one member scored exactly ARGV[1]: entries at the same time are interchangeable.
_REMOVE_ONE = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1], 'LIMIT', 0, 1)
if found[1] then redis.call('ZREM', KEYS[1], found[1]) end
return #found
"""


class RedisFailureStore:
    """Failures in one sorted set per key (score = time), expiring after an hour."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._remove_one = self._redis.register_script(_REMOVE_ONE)

    def add(self, key: str, at: float) -> None:
        name = "filr:throttle:" + key
        pipe = self._redis.pipeline()
        # A random suffix: two requests in the same microsecond are two entries, not one.
        pipe.zadd(name, {f"{at:.6f}:{secrets.token_hex(4)}": at})
        pipe.zremrangebyscore(name, 0, at - MEMORY_SECONDS)
        pipe.expire(name, MEMORY_SECONDS)
        pipe.execute()

    def recent(self, key: str, since: float) -> list[float]:
        values = self._redis.zrangebyscore("filr:throttle:" + key, since, "+inf", withscores=True)
        pairs = cast(list[tuple[bytes, float]], values)
        return [float(score) for _member, score in pairs]

    def clear(self, key: str) -> None:
        self._redis.delete("filr:throttle:" + key)

    def add_shared(self, key: str, at: float) -> None:
        # Redis applies each command at once for every client: nothing to publish.
        self.add(key, at)

    def remove(self, key: str, at: float) -> None:
        self._remove_one(keys=["filr:throttle:" + key], args=[repr(at)])


class DatabaseFailureStore:
    """Failures as rows in the caller's transaction (the log-in commits them with its audit row).

    Using the request's own session matters on SQLite, where a second connection would wait
    for the write lock the request already holds. `add_shared` (an attempt about to be
    evaluated) commits that session at once, so the other servers see the attempt in time.
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

    def add_shared(self, key: str, at: float) -> None:
        # Committed at once: under READ COMMITTED a row of an open transaction is invisible to
        # the other requests, which would all see too few attempts (on SQLite the commit also
        # ends the request's write lock, taken again by the next statement).
        self.add(key, at)
        self._session().commit()

    def remove(self, key: str, at: float) -> None:
        session = self._session()
        row_id = session.execute(
            sa.select(ThrottleEvent.id)
            .where(ThrottleEvent.key == key, ThrottleEvent.at == datetime.fromtimestamp(at, UTC))
            .limit(1)
        ).scalar_one_or_none()
        if row_id is not None:
            session.execute(sa.delete(ThrottleEvent).where(ThrottleEvent.id == row_id))


@dataclass(frozen=True)
class Verdict:
    """Whether a key may try now, and if not for how long it must wait."""

    allowed: bool
    retry_after: int = 0


def _count_then_read_others(store: FailureStore, key: str, now: float, since: float) -> list[float]:
    """Add an entry of *key* at *now* that every server sees, then read the others since *since*.

    Counting before reading is what keeps a burst of parallel requests within a limit: each
    sees at least the entries of those that read before it.
    """
    store.add_shared(key, now)
    entries = store.recent(key, since)
    if entries:
        # Our own entry (the store may round its time to the microsecond).
        entries.remove(min(entries, key=lambda at: abs(at - now)))
    return entries


class Throttle:
    """Applies the growing-delay rule to any key."""

    def __init__(self, store: FailureStore, max_delay: int = 900) -> None:
        self.store = store
        self.max_delay = max_delay

    def attempt(self, key: str, limit: int, now: float | None = None) -> Verdict:
        """Count one attempt of *key* at *now*, then say whether it may be evaluated.

        The attempt is in the store before the verdict is read, and the verdict counts every
        other entry of the key, those of attempts still running included: of a burst, the
        attempt added after *limit* others sees them and is refused, whatever the order in which
        the requests read. A refused attempt is withdrawn (it is no failure); an evaluated one
        stays as the failure it is unless the caller calls `reset` or `withdraw` on success.
        """
        now = time.time() if now is None else now
        entries = _count_then_read_others(self.store, key, now, now - MEMORY_SECONDS)
        verdict = self._verdict(sorted(entries), limit, now)
        if not verdict.allowed:
            self.store.remove(key, now)
        return verdict

    def withdraw(self, key: str, at: float) -> None:
        """Take back the attempt of *key* made at *at* (it was refused, or it succeeded)."""
        self.store.remove(key, at)

    def reset(self, key: str) -> None:
        """Forget the failures of *key* (after a successful log-in of that account)."""
        self.store.clear(key)

    def _verdict(self, failures: list[float], limit: int, now: float) -> Verdict:
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
        # An attempt of another server still running may carry a later time than *now*: it
        # counts as a failure that has just happened.
        wait = failures[-1] + delay - now
        if wait <= 0:
            return Verdict(True)
        return Verdict(False, math.ceil(wait))


class RateLimit:
    """At most *limit* requests per key in any sliding minute (API tokens), shared by servers."""

    def __init__(self, store: FailureStore) -> None:
        self.store = store

    def hit(self, key: str, limit: int, now: float | None = None) -> Verdict:
        """Count one request of *key*; refused (with the wait) beyond *limit* in a minute.

        Counted before it is judged, as `Throttle.attempt` does: of a burst of parallel
        requests, at most *limit* see fewer than *limit* others and are served.
        """
        now = time.time() if now is None else now
        others = _count_then_read_others(self.store, key, now, now - WINDOW_SECONDS)
        if len(others) >= limit:
            # Refused requests are not counted: a client that waits is served again.
            self.store.remove(key, now)
            others.sort()
            wait = others[len(others) - limit] + WINDOW_SECONDS - now
            return Verdict(False, max(1, math.ceil(wait)))
        return Verdict(True)
