"""Prometheus metrics: what the service levels of the conventions are measured with.

Two sources, one exposition:

- what each request does (latency per route family, bytes uploaded and downloaded, errors by
  kind), counted in the process that served it; under gunicorn every worker writes its values
  to `PROMETHEUS_MULTIPROC_DIR` (set by `filr serve`) and a scrape sums them
  (`prometheus_client`'s multiprocess mode);
- what the database knows, read at scrape time (jobs' last success and failures, the backup's
  age, the audit chain's status): the same on every server, whoever ran the job.

Labels never hold an id: a route is its Flask endpoint (`deposits.download`), never its URL.
A job is labelled `job_name`: `job` is Prometheus' own label for the scrape target.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy.orm import Session

from audit.models import AuditEvent
from portal.ops.models import ScheduledJob

ROUTE_ENVIRON_KEY = "filr.route"
UNMATCHED_ROUTE = "inconnue"  # no route: a 404 or a request refused before routing

# The 1-second bucket is the conventions' "90 % of answers under 1 second".
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUEST_SECONDS = Histogram(
    "filr_http_request_duration_seconds",
    "Time until the answer's status and headers are ready (a download's body streams after).",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
UPLOADED_BYTES = Counter(
    "filr_uploaded_bytes", "Bytes of files received (pages and API).", ["route"]
)
DOWNLOADED_BYTES = Counter(
    "filr_downloaded_bytes", "Bytes of files sent (pages and API).", ["route"]
)
ERRORS = Counter("filr_http_errors", "Answers in error, by kind.", ["kind"])

UPLOAD_ROUTES = frozenset({"deposits.upload", "flows.upload", "api.file_upload"})
DOWNLOAD_ROUTES = frozenset({"deposits.download", "api.file_content"})
_ERROR_KINDS = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "server_error",
}
DATABASE_UNAVAILABLE_ENVIRON_KEY = "filr.database_unavailable"


def error_kind(status: int, *, database_unavailable: bool) -> str | None:
    """The kind of an answer in error (bounded set), or None for a success."""
    if status < 400:
        return None
    if status == 503:
        return "database_unavailable" if database_unavailable else "storage_unavailable"
    return _ERROR_KINDS.get(status, "other_server_error" if status >= 500 else "other_client")


class _CountingInput:
    """`wsgi.input` counting what the application reads."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.count = 0

    def read(self, *args: Any) -> bytes:
        data: bytes = self._stream.read(*args)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        # What Werkzeug's LimitedStream calls when it exists (the test client's input has it,
        # gunicorn's does not: then a read into the buffer).
        inner = getattr(self._stream, "readinto", None)
        if inner is not None:
            count: int = inner(buffer) or 0
        else:
            data = self._stream.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        self.count += count
        return count

    def readline(self, *args: Any) -> bytes:
        data: bytes = self._stream.readline(*args)
        self.count += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self.count += len(line)
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class MetricsMiddleware:
    """WSGI middleware: the latency, bytes and errors of every request.

    Outside Flask so that the time spent loading the session and the answers Flask builds for
    errors are counted as the client sees them; the route is left in the environ by a
    `before_request` hook (`ROUTE_ENVIRON_KEY`).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        counting = _CountingInput(environ["wsgi.input"])
        environ["wsgi.input"] = counting
        status_holder: list[int] = []

        def _start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            status_holder[:] = [int(status.split(" ", 1)[0])]
            return start_response(status, headers, exc_info)

        body = self.app(environ, _start_response)
        route = str(environ.get(ROUTE_ENVIRON_KEY) or UNMATCHED_ROUTE)
        status = status_holder[0] if status_holder else 500
        REQUEST_SECONDS.labels(route, method_label(environ), str(status)).observe(
            time.perf_counter() - started
        )
        kind = error_kind(
            status, database_unavailable=bool(environ.get(DATABASE_UNAVAILABLE_ENVIRON_KEY))
        )
        if kind is not None:
            ERRORS.labels(kind).inc()
        if route in UPLOAD_ROUTES and counting.count:
            UPLOADED_BYTES.labels(route).inc(counting.count)
        if route in DOWNLOAD_ROUTES and status < 400:
            return _counted(body, route)
        return body


KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(environ: dict[str, Any]) -> str:
    """The request's method as a metric label: any other (sent by anyone, unauthenticated)
    is OTHER, so that the number of series stays bounded."""
    method = str(environ.get("REQUEST_METHOD", "GET"))
    return method if method in KNOWN_METHODS else "OTHER"


def _counted(body: Iterable[bytes], route: str) -> Iterator[bytes]:
    sent = 0
    try:
        for chunk in body:
            sent += len(chunk)
            yield chunk
    finally:
        if sent:
            DOWNLOADED_BYTES.labels(route).inc(sent)
        close = getattr(body, "close", None)
        if close is not None:
            close()


# --- what the database knows ------------------------------------------------------------

BACKUP_JOB = "backup"
# The newest `job:run` rows read when a job's rows carry no target (rows written before the
# `@job` wrapper named its job as target, or by a service of its own).
_RECENT_JOB_RUNS = 500


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def last_job_runs(
    session: Session, names: Iterable[str]
) -> dict[str, tuple[float | None, float | None]]:
    """Job name → (last success, last failure) as Unix times, from the audit trail."""
    found: dict[str, list[float | None]] = {}
    for name in names:
        pair: list[float | None] = [None, None]
        for index, outcome in enumerate(("success", "failure")):
            at = session.execute(
                sa.select(AuditEvent.occurred_at)
                .where(
                    AuditEvent.target_id == name,
                    AuditEvent.action == "job:run",
                    AuditEvent.outcome == outcome,
                )
                .order_by(AuditEvent.seq.desc())
                .limit(1)
            ).scalar_one_or_none()
            pair[index] = _timestamp(at)
        found[name] = pair
    recent = session.execute(
        sa.select(AuditEvent.occurred_at, AuditEvent.outcome, AuditEvent.details)
        .where(AuditEvent.action == "job:run", AuditEvent.target_id.is_(None))
        .order_by(AuditEvent.seq.desc())
        .limit(_RECENT_JOB_RUNS)
    )
    for occurred_at, outcome, details in recent:
        try:
            job = json.loads(details).get("job")
        except (ValueError, AttributeError):
            continue
        if job in found:
            index = 0 if outcome == "success" else 1
            current = found[job][index]
            seen = occurred_at.timestamp()
            if current is None or seen > current:
                found[job][index] = seen
    return {name: (pair[0], pair[1]) for name, pair in found.items()}


class DatabaseCollector(Collector):
    """The metrics read from the database at scrape time."""

    def __init__(self, session: Session, job_names: Iterable[str], now: float) -> None:
        self.session = session
        self.job_names = tuple(job_names)
        self.now = now

    def collect(self) -> Iterator[Metric]:
        from portal.securite.models import AlertJobState

        success = GaugeMetricFamily(
            "filr_job_last_success_timestamp_seconds",
            "Last successful run of each job (Unix time); absent if it never succeeded.",
            labels=["job_name"],
        )
        failure = GaugeMetricFamily(
            "filr_job_last_failure_timestamp_seconds",
            "Last failed run of each job (Unix time); absent if it never failed.",
            labels=["job_name"],
        )
        consecutive = GaugeMetricFamily(
            "filr_job_consecutive_failures",
            "Failed runs of each job since its last success (scheduler).",
            labels=["job_name"],
        )
        names = {*self.job_names, BACKUP_JOB}
        audited = last_job_runs(self.session, sorted(names))
        scheduled = {row.name: row for row in self.session.scalars(sa.select(ScheduledJob))}
        for name in sorted(names | set(scheduled)):
            row = scheduled.get(name)
            ok = _latest(
                audited.get(name, (None, None))[0], _timestamp(row.succeeded_at if row else None)
            )
            ko = _latest(
                audited.get(name, (None, None))[1], _timestamp(row.failed_at if row else None)
            )
            if ok is not None:
                success.add_metric([name], ok)
            if ko is not None:
                failure.add_metric([name], ko)
            if row is not None:
                consecutive.add_metric([name], row.failures)
        yield from (success, failure, consecutive)

        # Prometheus practice: a value never measured is absent, not 0 (a 0 age would say
        # "backed up just now"); the alert rules treat the absence as the worst case.
        backup = audited.get(BACKUP_JOB, (None, None))[0]
        if backup is not None:
            yield GaugeMetricFamily(
                "filr_backup_age_seconds",
                "Seconds since the last successful backup (`job:run` of the job backup).",
                value=max(0.0, self.now - backup),
            )

        state = self.session.get(AlertJobState, 1)
        if state is not None and state.chain_is_valid is not None:
            yield GaugeMetricFamily(
                "filr_audit_chain_valid",
                "1 when the last verification found the audit chain intact, 0 when broken.",
                value=1.0 if state.chain_is_valid else 0.0,
            )
            checked = _timestamp(state.chain_checked_at)
            if checked is not None:
                yield GaugeMetricFamily(
                    "filr_audit_chain_checked_timestamp_seconds",
                    "When the audit chain was last verified (Unix time).",
                    value=checked,
                )


def _latest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return max(present) if present else None


def exposition(session: Session, job_names: Iterable[str]) -> tuple[bytes, str]:
    """The text exposition of every metric (all workers' and the database's), its type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)  # type: ignore[no-untyped-call] # untyped library
        text = generate_latest(processes)
    else:
        text = generate_latest(REGISTRY)
    database = CollectorRegistry()
    database.register(DatabaseCollector(session, job_names, time.time()))
    reachable = 1
    try:
        text += generate_latest(database)
    except sa.exc.SQLAlchemyError:
        reachable = 0  # the requests' metrics still go out: they say what the outage costs
    finally:
        session.rollback()
    text += (
        b"# HELP filr_metrics_database_reachable 1 when the database answered this scrape.\n"
        b"# TYPE filr_metrics_database_reachable gauge\n"
        b"filr_metrics_database_reachable %d\n" % reachable
    )
    return text, CONTENT_TYPE_LATEST
