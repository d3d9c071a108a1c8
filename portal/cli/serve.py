"""`filr serve`: the portal under gunicorn, once the database is migrated and reachable."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask

from portal.cli.db import database_errors, engine_or_exit, migration_url_name
from portal.cli.runtime import settings_or_exit
from portal.db import SuperuserRefused, refuse_superuser
from portal.settings import Settings


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Lance le portail avec gunicorn (les migrations sont appliquées d'abord)."""
    from gunicorn.app.base import BaseApplication

    metrics_dir = prepare_metrics_dir()  # before the metrics are created (portal.app)
    from prometheus_client import multiprocess

    from portal.app import create_app
    from portal.migrate import upgrade

    settings = settings_or_exit()
    name = migration_url_name(settings)
    engine_or_exit(name, settings.migration_database_url).dispose()
    with database_errors(name):
        upgrade(settings.migration_database_url)  # the owner migrates; the app role serves
    check_serving_database(settings)
    check_no_unfinished_restore(settings)

    class _Gunicorn(BaseApplication):  # type: ignore[misc] # gunicorn has no type hints
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            # gthread, whose own error pages (malformed requests) carry the security headers.
            self.cfg.set("worker_class", "portal.serving.PortalWorker")
            self.cfg.set("accesslog", None)  # tokens sit in some paths: no access log here
            self.cfg.set("timeout", 120)
            # gunicorn's control socket sits in one per-user path shared by every instance on
            # the machine; the portal does not use it.
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("child_exit", _worker_exited)

        def load(self) -> Flask:
            from portal.backup.guard import refuse_connections_while_unfinished
            from portal.db import db

            app = create_app(settings)
            refuse_connections_while_unfinished(db.bound(app).engine)
            return app

    def _worker_exited(_server: object, worker: Any) -> None:
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call] # untyped

    click.echo(f"Fil'R écoute sur http://{host}:{port}/ (Ctrl+C pour arrêter)")
    try:
        _Gunicorn().run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def prepare_metrics_dir() -> Path | None:
    """Give the workers one `PROMETHEUS_MULTIPROC_DIR`, emptied: a scrape sums their files.

    A directory given by the operator is emptied (the values of a previous run would count
    again); otherwise a private one is made, and removed when the server stops (returned).
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    path = Path(tempfile.mkdtemp(prefix="filr-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def check_serving_database(settings: Settings) -> None:
    """Connect once as the servers will: reachable, and not a superuser unless allowed."""
    engine = engine_or_exit("FILR_DATABASE_URL", settings.database_url)
    with database_errors("FILR_DATABASE_URL"):
        refuse_superuser(engine, allowed=settings.allow_superuser)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except SuperuserRefused as e:
            raise click.ClickException(str(e)) from None
        finally:
            engine.dispose()


def check_no_unfinished_restore(settings: Settings) -> None:
    """Refuse to serve a restored database whose purge has not succeeded (exit 1, one line)."""
    from portal.backup.guard import RestoreUnfinished, refuse_unfinished_restore

    engine = engine_or_exit("FILR_DATABASE_URL", settings.migration_database_url)
    try:
        with database_errors("FILR_DATABASE_URL"):
            refuse_unfinished_restore(engine)
    except RestoreUnfinished as e:
        raise click.ClickException(str(e)) from None
    finally:
        engine.dispose()
