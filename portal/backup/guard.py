"""The restore guard's verbs: set after a dump is restored, cleared by the purge that follows,
and read before serving (`filr serve`, `portal.wsgi`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from portal.backup.models import RestoreGuard
from portal.db import utcnow

UNFINISHED = (
    "Restauration inachevée (sauvegarde {backup_id}) : la purge qui doit la suivre n'a pas "
    "abouti, la base contient peut-être des dépôts échus encore lisibles. Le portail ne démarre "
    "pas : lancez `filr backup finish-restore` (docs/operations.md)."
)


class RestoreUnfinished(RuntimeError):
    """The database was restored and not purged yet: the portal must not serve it."""


def set_guard(session: Session, backup_id: str) -> None:
    """Mark the database as restored from *backup_id* and not yet purged."""
    session.execute(sa.delete(RestoreGuard))
    session.add(RestoreGuard(id=1, backup_id=backup_id, restored_at=utcnow()))


def clear_guard(session: Session) -> None:
    """The purge after the restore succeeded: the portal may serve."""
    session.execute(sa.delete(RestoreGuard))


def unfinished_restore(engine: Engine) -> str | None:
    """The backup id of a restore not yet purged, or None (also before the table exists)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(RestoreGuard.__tablename__):
            return None
        value = conn.execute(sa.select(RestoreGuard.backup_id)).scalar_one_or_none()
        conn.rollback()
    return value


def refuse_unfinished_restore(engine: Engine) -> None:
    """Raise RestoreUnfinished (French message) while a restore is not purged."""
    backup_id = unfinished_restore(engine)
    if backup_id is not None:
        raise RestoreUnfinished(UNFINISHED.format(backup_id=backup_id))


def refuse_connections_while_unfinished(engine: Engine) -> None:
    """Check every new connection of a serving *engine*: refused while a restore is unpurged.

    Checked per connection, as `refuse_superuser` does, rather than once at start: a worker that
    boots while the database is down must not skip the check, nor fail to boot.
    """

    @event.listens_for(engine, "connect")
    def _check_guard(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            try:
                cur.execute("SELECT backup_id FROM restore_guard")
                row = cur.fetchone()
            except Exception:  # the table is not there yet (a schema before migration 0010)
                row = None
        finally:
            cur.close()
            dbapi_conn.rollback()
        if row is not None:
            dbapi_conn.close()
            raise RestoreUnfinished(UNFINISHED.format(backup_id=row[0]))
