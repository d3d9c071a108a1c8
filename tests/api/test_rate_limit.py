"""A token's requests are counted across servers and refused beyond the per-minute limit."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from flask import Flask

from portal.auth.throttle import RateLimit
from tests.api.conftest import assert_problem, bare_client, make_token
from tests.factories import Api, Factory, World
from tests.support.services import REDIS_URL, port_open, unavailable
from tests.support.throttle import MemoryFailureStore

LIMIT = 3


class _Simultaneous(MemoryFailureStore):
    """No request goes on before every request has read the counters: the worst interleaving
    of parallel requests on several servers (all read before any of them counts itself, if
    it counts itself after reading)."""

    def __init__(self, requests: int) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(requests, timeout=10)

    def add(self, key: str, at: float) -> None:
        with self.lock:
            super().add(key, at)

    add_shared = add

    def recent(self, key: str, since: float) -> list[float]:
        with self.lock:
            seen = super().recent(key, since)
        self.barrier.wait()
        return seen

    def remove(self, key: str, at: float) -> None:
        with self.lock:
            super().remove(key, at)


def test_the_limit_is_a_sliding_minute_and_refusals_do_not_count() -> None:
    limiter = RateLimit(MemoryFailureStore())
    assert [limiter.hit("k", 2, now=t).allowed for t in (0.0, 10.0)] == [True, True]
    refused = limiter.hit("k", 2, now=20.0)
    assert not refused.allowed and refused.retry_after == 40
    assert limiter.hit("k", 2, now=59.0).allowed is False
    assert limiter.hit("k", 2, now=60.5).allowed is True  # the request of t=0 left the window
    assert limiter.hit("other", 2, now=20.0).allowed is True


def test_a_burst_of_parallel_requests_never_gets_more_than_the_limit() -> None:
    # Given 12 requests of one token arriving at once, against a limit of 3
    limiter = RateLimit(_Simultaneous(12))
    verdicts: list[bool] = []

    def request(at: float) -> None:
        verdicts.append(limiter.hit("token", LIMIT, now=at).allowed)

    threads = [threading.Thread(target=request, args=(100.0 + i / 1000,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then at most 3 are served: each request is counted before the counters are read
    assert len(verdicts) == 12 and sum(verdicts) <= LIMIT


@pytest.mark.parametrize("store", ["database", "redis"])
def test_a_token_beyond_its_limit_gets_429_on_every_server_and_other_tokens_do_not(
    make_app: Callable[..., Flask], factory: Factory, world: World, store: str
) -> None:
    overrides: dict[str, object] = {"api_requests_per_minute": LIMIT}
    if store == "redis":
        if not port_open("127.0.0.1", 6379):
            unavailable("Redis on 127.0.0.1:6379")
        overrides["redis_url"] = REDIS_URL
    # Given two application servers sharing the counters, and two tokens
    server_a, server_b = make_app(**overrides), make_app(**overrides)
    secret = make_token(server_a, world.technicien_ft)
    other = Api(bare_client(server_b), make_token(server_a, world.agent62))
    on_a, on_b = Api(bare_client(server_a), secret), Api(bare_client(server_b), secret)

    # When the first token makes LIMIT requests, spread over both servers
    assert [on_a.get("/api/v1/me").status_code for _ in range(2)] == [200, 200]
    assert on_b.get("/api/v1/me").status_code == 200

    # Then the next one is refused on either server, with the wait in Retry-After
    refused = on_a.get("/api/v1/me")
    body = assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "réessayez dans" in body["detail"]
    assert_problem(on_b.get("/api/v1/me"), 429, "rate_limited")
    # And another token of the same space is served
    assert other.get("/api/v1/me").status_code == 200
