"""`filr jobs scheduler`: every job of the schedule on time, once across servers.

Each run is a child process (`python -m portal.cli …`, the very command cron would run), so a
job that leaks memory or crashes takes nothing else down. Around it the scheduler:

- claims the run's slot with one conditional UPDATE of `scheduled_job` (two servers wake at
  03:15: one runs the job, the other sees the slot taken), and holds the advisory lock
  `filr.scheduler.<job>` while the child runs (the child takes its own `filr.jobs.<job>`);
- never starts a job while its previous run is still going (the next slot is skipped, and
  said so);
- tries a failed run again after 1, 5 and 15 minutes while the next slot is further away,
  and reports every failure: a line on standard error, a `job:run` row with the outcome
  `failure` in the audit trail, and `filr_job_consecutive_failures` in `/metrics`;
- stops on SIGTERM or SIGINT: launches nothing more, lets the running jobs finish for a grace
  period, then stops them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import audit
from audit import AuditAction, Outcome
from portal.db import job_lock
from portal.ops.models import ScheduledJob
from portal.ops.schedule import PARIS, Entry

# The longest the loop sleeps: how soon a finished child is noticed and a stop obeyed.
TICK_SECONDS = 1.0
STOP_GRACE_SECONDS = 60.0


def utcnow() -> datetime:
    """Current time, aware UTC (a function, so that tests may move the clock)."""
    return datetime.now(UTC)


@dataclass
class _Slot:
    """What the scheduler tracks for one job."""

    entry: Entry
    next_at: datetime
    retry_at: datetime | None = None
    attempt: int = 0  # attempts of the current slot
    process: subprocess.Popen[bytes] | None = None
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


def claim_slot(engine: Engine, name: str, slot: datetime, now: datetime) -> bool:
    """Claim the run of *name* scheduled at *slot*; False when another server already did."""
    with Session(engine) as session:
        if session.get(ScheduledJob, name) is None:
            session.add(ScheduledJob(name=name, failures=0))
            try:
                session.commit()
            except sa.exc.IntegrityError:
                session.rollback()  # another server created it first
    with engine.begin() as conn:
        claimed = conn.execute(
            sa.update(ScheduledJob)
            .where(
                ScheduledJob.name == name,
                sa.or_(ScheduledJob.slot_at.is_(None), ScheduledJob.slot_at < slot),
            )
            .values(slot_at=slot, started_at=now)
        )
        return claimed.rowcount == 1


def record_outcome(engine: Engine, name: str, exit_code: int, now: datetime) -> int:
    """Write how a run of *name* ended; return its consecutive failures (0 on success)."""
    with Session(engine) as session:
        row = session.get(ScheduledJob, name)
        if row is None:
            row = ScheduledJob(name=name, failures=0)
            session.add(row)
        row.finished_at, row.exit_code = now, exit_code
        if exit_code == 0:
            row.succeeded_at, row.failures = now, 0
        else:
            row.failed_at, row.failures = now, (row.failures or 0) + 1
        failures = row.failures
        session.commit()
    return failures


def report_failure(
    engine: Engine, entry: Entry, exit_code: int, attempt: int, retry_at: datetime | None
) -> None:
    """One `job:run` row with the outcome `failure`: the trail says which job failed, when."""
    with Session(engine) as session:
        audit.record(
            session,
            AuditAction.JOB_RUN,
            target=audit.Target("job", entry.name),
            context=audit.Context(user_agent="filr-scheduler"),
            outcome=Outcome.FAILURE,
            details={
                "job": entry.name,
                "exit_code": exit_code,
                "attempt": attempt,
                "retry_at": retry_at.isoformat() if retry_at else None,
            },
        )
        session.commit()


def job_argv(entry: Entry) -> list[str]:
    """The child process of one run: the `filr` command of the entry, same interpreter."""
    return [sys.executable, "-m", "portal.cli", *entry.command]


@dataclass
class Scheduler:
    """The loop of `filr jobs scheduler` (`run` returns once stopped)."""

    table: tuple[Entry, ...]
    engine: Engine
    stop: threading.Event = field(default_factory=threading.Event)
    say: Callable[[str], None] = field(default=lambda text: print(text, flush=True))
    argv: Callable[[Entry], list[str]] = job_argv
    grace_seconds: float = STOP_GRACE_SECONDS
    # Run every job once at start, then on its schedule (`--now`: after a release, a test).
    run_at_start: bool = False

    def run(self) -> None:
        """Run the jobs on their schedule until `stop` is set."""
        now = utcnow().replace(microsecond=0)
        slots = [
            _Slot(entry, now if self.run_at_start else entry.when.next_after(now))
            for entry in self.table
        ]
        for slot in slots:
            upcoming = slot.next_at.astimezone(PARIS)
            self.say(
                f"{slot.entry.name} : {slot.entry.when.text}, prochaine exécution "
                f"{upcoming:%Y-%m-%d %H:%M:%S} (Europe/Paris)"
            )
        try:
            while not self.stop.is_set():
                now = utcnow()
                for slot in slots:
                    self._tend(slot, now)
                wake = min([s.next_at for s in slots] + [s.retry_at for s in slots if s.retry_at])
                pause = (wake - utcnow()).total_seconds()
                self.stop.wait(max(0.05, min(TICK_SECONDS, pause)))
        finally:
            self._shut_down(slots)

    def _tend(self, slot: _Slot, now: datetime) -> None:
        if slot.process is not None:
            code = slot.process.poll()
            if code is None:
                if now >= slot.next_at:
                    self.say(
                        f"{slot.entry.name} : l'exécution précédente n'est pas finie, "
                        "créneau sauté."
                    )
                    slot.next_at = slot.entry.when.next_after(now)
                return
            self._finished(slot, code, now)
        if now >= slot.next_at:
            scheduled = slot.next_at
            slot.next_at = slot.entry.when.next_after(now)
            slot.retry_at, slot.attempt = None, 0
            if not claim_slot(self.engine, slot.entry.name, scheduled, now):
                return  # another server runs this slot
            self._launch(slot)
        elif slot.retry_at is not None and now >= slot.retry_at:
            slot.retry_at = None
            self._launch(slot)

    def _launch(self, slot: _Slot) -> None:
        name = slot.entry.name
        acquired = slot.held.enter_context(job_lock(self.engine, f"filr.scheduler.{name}"))
        if not acquired:
            slot.held.close()
            self.say(f"{name} : en cours sur un autre serveur, rien à faire.")
            return
        slot.attempt += 1
        again = f", tentative {slot.attempt}" if slot.attempt > 1 else ""
        self.say(f"{name} : démarrage ({slot.entry.command_line}{again}).")
        try:
            slot.process = subprocess.Popen(  # noqa: S603 - our own interpreter and command
                self.argv(slot.entry),
                stdin=subprocess.DEVNULL,
                env=os.environ.copy(),
                # Its own session: a Ctrl+C or a signal to the scheduler's group does not cut
                # a job short; the scheduler lets it finish (see `_shut_down`).
                start_new_session=True,
            )
        except OSError as e:
            slot.held.close()
            self.say(f"{name} : impossible de démarrer ({e.strerror}).")
            self._failed(slot, 127, utcnow())

    def _finished(self, slot: _Slot, code: int, now: datetime) -> None:
        slot.process = None
        slot.held.close()
        if code == 0:
            record_outcome(self.engine, slot.entry.name, 0, now)
            slot.attempt = 0
            return
        self._failed(slot, code, now)

    def _failed(self, slot: _Slot, code: int, now: datetime) -> None:
        failures = record_outcome(self.engine, slot.entry.name, code, now)
        delays = slot.entry.retry_delays
        retry_at = None
        if slot.attempt <= len(delays):
            candidate = now + timedelta(seconds=delays[slot.attempt - 1]) if delays else None
            if candidate is not None and candidate < slot.next_at and not self.stop.is_set():
                retry_at = candidate
        slot.retry_at = retry_at
        report_failure(self.engine, slot.entry, code, slot.attempt, retry_at)
        after = (
            f"nouvel essai à {retry_at.astimezone(PARIS):%H:%M:%S}"
            if retry_at
            else f"prochaine exécution {slot.next_at.astimezone(PARIS):%Y-%m-%d %H:%M}"
        )
        print(
            f"{slot.entry.name} : ÉCHEC (code {code}, {failures} échec(s) consécutif(s)) ; "
            f"{after}.",
            file=sys.stderr,
            flush=True,
        )

    def _shut_down(self, slots: list[_Slot]) -> None:
        running = [s for s in slots if s.process is not None]
        if running:
            self.say(f"Arrêt : attente de {len(running)} tâche(s) en cours.")
        deadline = utcnow() + timedelta(seconds=self.grace_seconds)
        for slot in running:
            assert slot.process is not None  # noqa: S101 - filtered above
            remaining = max(0.0, (deadline - utcnow()).total_seconds())
            try:
                code = slot.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                slot.process.terminate()
                try:
                    code = slot.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    slot.process.kill()
                    code = slot.process.wait()
            self._finished(slot, code, utcnow())
        self.say("Planificateur arrêté.")
