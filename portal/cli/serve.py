"""`filr serve`: the portal under gunicorn, once the database is migrated and reachable."""

from __future__ import annotations

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
    """Run the portal with gunicorn (migrations are applied first)."""
    from gunicorn.app.base import BaseApplication

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

        def load(self) -> Flask:
            from portal.backup.guard import refuse_connections_while_unfinished
            from portal.db import db

            app = create_app(settings)
            refuse_connections_while_unfinished(db.bound(app).engine)
            return app

    click.echo(f"Fil'R écoute sur http://{host}:{port}/ (Ctrl+C pour arrêter)")
    _Gunicorn().run()


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
