"""`/sante/pret` and `/metrics` in the application: what they answer, and to whom."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

import audit
from audit import AuditAction
from portal.db import db
from portal.settings import Settings, SettingsError
from tests.factories import Factory, OfficerWorld

TOKEN = "m" * 40
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def scrape(client: FlaskClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Metric sample name → (labels, value) of one scrape, parsed as Prometheus does."""
    response = client.get("/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_readiness_answers_200_when_database_and_store_answer(client: FlaskClient) -> None:
    response = client.get("/sante/pret")
    assert response.status_code == 200
    assert response.json == {
        "statut": "pret",
        "verifications": {"base_de_donnees": "ok", "stockage": "ok"},
    }


def test_readiness_answers_503_when_redis_is_configured_but_down(
    make_app: Callable[..., Flask],
) -> None:
    # Given a portal whose Redis is a port where nothing listens
    app = make_app(redis_url="redis://127.0.0.1:9/0")
    # Then it is alive but not ready, and says which component is missing
    client = app.test_client()
    assert client.get("/sante").status_code == 200
    response = client.get("/sante/pret")
    assert response.status_code == 503
    assert response.json["verifications"]["redis"] == "indisponible"  # type: ignore[index]


def test_metrics_do_not_exist_without_a_token_configured(client: FlaskClient) -> None:
    # Given no FILR_METRICS_TOKEN: the endpoint is not there, whatever is sent
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers=BEARER).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": f"Bearer {TOKEN}x"}],
)  # fmt: skip
def test_metrics_refuse_a_missing_or_wrong_token_with_a_404(
    make_app: Callable[..., Flask], headers: dict[str, str]
) -> None:
    # Given metrics protected by a token on the public port
    client = make_app(metrics_token=TOKEN).test_client()
    # When asked without the right bearer token: Then nothing but a 404
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 404
    assert b"filr_" not in response.data


def test_a_short_metrics_token_is_refused(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="METRICS_TOKEN"):
        settings.with_overrides(metrics_token="short")


def test_metrics_label_routes_by_family_never_by_url(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    app = make_app(metrics_token=TOKEN)
    client = app.test_client()
    # Given requests on a route with an id, an unknown URL and the health check
    deposit_id = "0123456789abcdef0123456789abcdef"
    client.get(f"/depots/{deposit_id}")
    client.get("/nulle-part/ABCDEF")
    client.get("/sante")
    samples = scrape(client)
    # Then the latency histogram names route families, with a 1-second bucket
    buckets = samples["filr_http_request_duration_seconds_bucket"]
    routes = {labels["route"] for labels, _ in buckets}
    assert {"home.health", "deposits.show", "inconnue"} <= routes, routes
    assert any(labels["le"] == "1.0" for labels, _ in buckets)
    every_label = {v for rows in samples.values() for labels, _ in rows for v in labels.values()}
    assert not any(deposit_id in v or "ABCDEF" in v for v in every_label)
    # And errors are counted by kind
    kinds = {labels["kind"] for labels, _ in samples["filr_http_errors_total"]}
    assert "not_found" in kinds


def test_metrics_label_unknown_methods_other(make_app: Callable[..., Flask]) -> None:
    client = make_app(metrics_token=TOKEN).test_client()
    # Given requests with made-up methods, unauthenticated
    for method in ("FOOBAR", "XYZZY-1", "get"):
        client.open("/sante", method=method)
    # Then the method label holds known methods and OTHER only
    samples = scrape(client)
    methods = {
        labels["method"] for labels, _ in samples["filr_http_request_duration_seconds_bucket"]
    }
    assert "OTHER" in methods
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}


def test_metrics_give_the_jobs_backup_age_and_chain_status_from_the_database(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    app = make_app(metrics_token=TOKEN)
    client = app.test_client()
    # Given no backup ever: no age (absent, not 0)
    assert "filr_backup_age_seconds" not in scrape(client)
    # When a backup and a purge succeed, and the alert job verifies the chain
    OfficerWorld.build(factory)
    with app.app_context():
        for job in ("backup", "purge"):
            audit.record(
                db.session,
                AuditAction.JOB_RUN,
                target=audit.Target("job", job),
                details={"job": job},
            )
        db.session.commit()
    from portal.securite.alerts import run_alert_job

    with app.app_context():
        from portal.container import services
        from portal.db import utcnow

        svc = services()
        run_alert_job(
            db.session, svc.settings, svc.mailer, utcnow(), audit.Context(), verify_chain=True
        )
    samples = scrape(client)
    # Then the backup's age is a few seconds, each job's last success is there
    [(_, age)] = samples["filr_backup_age_seconds"]
    assert 0 <= age < 60 and not math.isnan(age)
    jobs = {labels["job_name"] for labels, _ in samples["filr_job_last_success_timestamp_seconds"]}
    assert {"backup", "purge"} <= jobs
    assert samples["filr_audit_chain_valid"] == [({}, 1.0)]
    assert samples["filr_metrics_database_reachable"] == [({}, 1.0)]


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, route: str) -> float:
    return sum(v for labels, v in samples.get(name, []) if labels.get("route") == route)


def test_metrics_count_the_bytes_of_files_uploaded_and_downloaded(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    from tests.api.conftest import bare_client, make_token, sent_deposit
    from tests.factories import Api, World

    app = make_app(metrics_token=TOKEN)
    world = World.build(factory)
    content = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 1000
    before = scrape(app.test_client())
    # Given a file sent and fetched through the API
    sender = Api(bare_client(app), make_token(app, world.adviser_ft))
    recipient = Api(bare_client(app), make_token(app, world.agent62))
    deposit_id = sent_deposit(sender, [world.cd62], {"scan.png": content})
    [file] = recipient.get(f"/api/v1/deposits/{deposit_id}").json["files"]  # type: ignore[index]
    fetched = recipient.get(file["content_url"])
    assert fetched.status_code == 200 and fetched.data == content
    after = scrape(app.test_client())
    # Then the counters grew by the file's size, each on its route
    up = "filr_uploaded_bytes_total"
    down = "filr_downloaded_bytes_total"
    assert _value(after, up, "api.file_upload") - _value(before, up, "api.file_upload") == len(
        content
    )
    assert _value(after, down, "api.file_content") - _value(
        before, down, "api.file_content"
    ) == len(content)
