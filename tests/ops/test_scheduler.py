"""`filr jobs scheduler` for real: a child process per run, once across servers, retries, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.db import db, make_engine
from portal.ops.models import ScheduledJob
from portal.ops.schedule import Entry, When
from portal.ops.scheduler import Scheduler, claim_slot
from portal.securite.models import AlertKind, SecurityAlert
from portal.settings import Settings
from tests.conftest import audit_rows, login
from tests.factories import Factory, OfficerWorld

ALERT_DEADLINE_SECONDS = 60.0


def _alerts(app: Flask) -> list[SecurityAlert]:
    with app.app_context():
        return list(db.session.scalars(sa.select(SecurityAlert)))


def test_the_scheduler_raises_the_alert_of_six_failed_logins_with_nobody_typing_a_command(
    cli_env: Settings,
    app: Flask,
    factory: Factory,
    client: FlaskClient,
    login_as: Callable[..., FlaskClient],
    tmp_path: Path,
) -> None:
    world = OfficerWorld.build(factory)
    # Given `filr jobs scheduler` running beside the portal, the alert job every 2 seconds
    log = tmp_path / "scheduler.log"
    with log.open("wb") as out:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "jobs", "scheduler", "--only", "alerts",
             "--set", "alerts=every 2 s"],
            env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # When someone fails to log in six times on an agent's account
        for _ in range(6):
            login(client, world.agent62, password="not the password")
        # Then the alert appears without any command typed by hand
        deadline = time.monotonic() + ALERT_DEADLINE_SECONDS
        while time.monotonic() < deadline and not _alerts(app):
            assert scheduler.poll() is None, log.read_text()
            time.sleep(0.5)
        kinds = {a.kind for a in _alerts(app)}
        assert AlertKind.LOGIN_FAILURES_ACCOUNT in kinds, log.read_text()
    finally:
        # And SIGTERM stops it cleanly
        scheduler.send_signal(signal.SIGTERM)
        code = scheduler.wait(timeout=60)
    assert code == 0, log.read_text()
    assert "Planificateur arrêté." in log.read_text()
    # And the officer of 62 sees it in the security workspace
    officer = login_as(world.officer62, on=app.test_client())
    page = officer.get("/securite").get_data(as_text=True)
    assert "Échecs de connexion répétés sur un compte" in page
    with app.app_context():
        row = db.session.get(ScheduledJob, "alerts")
        assert row is not None and row.succeeded_at is not None and row.failures == 0


def test_two_servers_claim_one_slot_exactly_once(app: Flask) -> None:
    # Given two schedulers waking for the same 03:15 run
    slot = datetime(2026, 12, 8, 2, 15, tzinfo=UTC)
    engine = db.bound(app).engine
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        results.append(claim_slot(engine, "audit-head", slot, slot))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly one runs it; the next slot is claimable again
    assert sorted(results) == [False, False, False, True]
    assert claim_slot(engine, "audit-head", slot.replace(day=9), slot) is True


def test_a_failed_job_is_retried_and_each_failure_reported(settings: Settings, app: Flask) -> None:
    # Given a job that fails, retried after 1 second
    entry = Entry("broken", ("jobs", "broken"), When.parse("every 60 min"), (1, 1))
    engine = make_engine(settings.database_url)
    said: list[str] = []
    scheduler = Scheduler(
        (entry,),
        engine,
        say=said.append,
        argv=lambda _e: [sys.executable, "-c", "raise SystemExit(3)"],
        run_at_start=True,  # its first slot now, as if the hour had just struck
    )
    scheduler_thread = threading.Thread(target=scheduler.run)
    try:
        scheduler_thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(_failures(app)) < 3:
            time.sleep(0.2)
    finally:
        scheduler.stop.set()
        scheduler_thread.join(timeout=30)
        engine.dispose()
    # Then three attempts (one run and two retries), each reported in the trail
    failures = _failures(app)
    assert [f["attempt"] for f in failures] == [1, 2, 3]
    assert {f["exit_code"] for f in failures} == {3}
    assert failures[-1]["retry_at"] is None  # no retry left: next slot
    with app.app_context():
        row = db.session.get(ScheduledJob, "broken")
        assert row is not None and row.failures == 3 and row.exit_code == 3
    assert sum("démarrage" in line for line in said) == 3


def _failures(app: Flask) -> list[dict[str, object]]:
    import json

    rows = audit_rows(app, AuditAction.JOB_RUN)
    return [json.loads(r.details) for r in rows if r.outcome == "failure"]


def test_sigterm_lets_the_running_job_finish_and_records_its_success(
    settings: Settings, app: Flask
) -> None:
    # Given a job of two seconds, started by the scheduler
    entry = Entry("slow", ("jobs", "slow"), When.parse("every 1 s"), ())
    engine = make_engine(settings.database_url)
    said: list[str] = []
    scheduler = Scheduler(
        (entry,),
        engine,
        say=said.append,
        argv=lambda _e: [sys.executable, "-c", "import time; time.sleep(2)"],
    )
    thread = threading.Thread(target=scheduler.run)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not any("démarrage" in line for line in said):
            assert time.monotonic() < deadline, said
            time.sleep(0.05)
        # When the scheduler is told to stop while it runs
        scheduler.stop.set()
        thread.join(timeout=30)
    finally:
        scheduler.stop.set()
        thread.join(timeout=30)
        engine.dispose()
    # Then it waited for the job, which ended well, and started nothing more
    assert not thread.is_alive()
    assert "Arrêt : attente de 1 tâche(s) en cours." in said
    assert sum("démarrage" in line for line in said) == 1
    with app.app_context():
        row = db.session.get(ScheduledJob, "slow")
        assert row is not None and row.succeeded_at is not None and row.exit_code == 0
