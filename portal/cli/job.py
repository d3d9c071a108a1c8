"""`@job(name)`: what every scheduled job does around its own work.

The portal from the environment, the job's database-wide lock (a second server's run, or a
cron run that overlaps the previous one, does nothing and says so), one audit context for the
rows of the run, the `job:run` row with what was done (never for a dry run), the summary
printed (marked `[essai]` for a dry run) and the exit code that monitoring reads.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate

import click
from flask import Flask

import audit
from audit import AuditAction, Outcome
from portal.cli.runtime import app_context, audit_context
from portal.db import db, job_lock
from portal.settings import Settings

DRY_RUN_MARK = "[essai] "


@dataclass(frozen=True)
class Job:
    """One run of a job, as its body sees it."""

    name: str
    dry_run: bool
    context: audit.Context
    app: Flask

    @property
    def settings(self) -> Settings:
        """The settings of the portal the job runs on."""
        settings: Settings = self.app.config["FILR_SETTINGS"]
        return settings


@dataclass(frozen=True)
class JobRun:
    """What a run did: the text printed, the details of its `job:run` row, its exit code."""

    summary: str
    # None: no row from the wrapper (the service writes its own, or there is nothing to say).
    details: Mapping[str, object] | None = None
    exit_code: int = 0
    # False: the text is the same in a dry run (it says that there was nothing to do).
    is_marked_in_dry_run: bool = True


def job(
    name: str, *, busy: str
) -> Callable[[Callable[Concatenate[Job, ...], JobRun]], Callable[..., None]]:
    """Run the decorated body as the job *name* (lock `filr.jobs.<name>`), or print *busy* and
    do nothing while another run holds the lock; the command declares its own `--dry-run`."""

    def decorate(body: Callable[Concatenate[Job, ...], JobRun]) -> Callable[..., None]:
        @functools.wraps(body)
        def command(*, dry_run: bool = False, **options: Any) -> None:
            with app_context() as app, job_lock(db.engine, f"filr.jobs.{name}") as acquired:
                if not acquired:
                    click.echo(busy)
                    return
                run = Job(name, dry_run, audit_context(), app)
                result = body(run, **options)
                if result.details is not None and not dry_run:
                    audit.record(
                        db.session,
                        AuditAction.JOB_RUN,
                        # The job as target: its last run is one indexed look-up (/metrics).
                        target=audit.Target("job", name),
                        context=run.context,
                        # A run that exits non-zero (clamd down…) failed: it is no success for
                        # the monitoring, the security page or the backup's age.
                        outcome=Outcome.FAILURE if result.exit_code else Outcome.SUCCESS,
                        details={"job": name, **result.details},
                    )
                    db.session.commit()
                marked = dry_run and result.is_marked_in_dry_run
                click.echo((DRY_RUN_MARK if marked else "") + result.summary)
                if result.exit_code:
                    sys.exit(result.exit_code)

        return command

    return decorate
