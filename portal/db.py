"""Database engine and per-request session, without Flask-SQLAlchemy."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the portal's own tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


log = logging.getLogger("portal")

CONNECT_TIMEOUT_SECONDS = 10
# Set on `g` once a request met the database out of reach: nothing else tries it (the session
# is not saved) before the 503 goes out.
DATABASE_UNAVAILABLE_FLAG = "filr_database_unavailable"
# What a client is told to wait before trying again while the database is down (RFC 9110
# §10.2.3): long enough for a restart or a fail-over, short enough for a script's retry loop.
DATABASE_RETRY_AFTER_SECONDS = 30

# Errors that say the database cannot be reached or cannot answer now (refused or lost
# connection, a server shutting down, a full pool, a lock or statement timeout), as opposed to
# a query the database refused: the former is a 503 worth retrying, the latter a bug.
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


def is_database_unavailable(error: BaseException | None) -> bool:
    """True when *error*, or an error it was raised from, says the database is out of reach.

    The chain is followed as a traceback shows it, so that a storage error raised from a lost
    database connection (the keyring lives in the database) is told from a storage outage.
    """
    return any(
        isinstance(e, _UNAVAILABLE)
        or (isinstance(e, sa.exc.DBAPIError) and e.connection_invalidated)
        for e in _chain(error, honour_suppression=True)
    )


def _chain(error: BaseException | None, *, honour_suppression: bool) -> Iterator[BaseException]:
    """*error* and those it was raised from or during, as a traceback shows them, each once."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        context = None if honour_suppression and error.__suppress_context__ else error.__context__
        error = error.__cause__ or context


def database_error_summary(error: BaseException) -> str:
    """One line naming the database error, without SQL or parameters (they may hold data)."""
    for current in _chain(error, honour_suppression=False):
        if isinstance(current, sa.exc.DBAPIError):
            orig = current.orig
            text = str(orig).strip().splitlines()
            return f"{type(orig).__name__}: {text[0][:300] if text else ''}".rstrip(": ")
        if isinstance(current, sa.exc.SQLAlchemyError):
            return type(current).__name__
    return type(error).__name__


class SuperuserRefused(RuntimeError):
    """The portal was given a PostgreSQL superuser connection without FILR_ALLOW_SUPERUSER."""


SUPERUSER_REFUSED = (
    "FILR_DATABASE_URL se connecte avec un superutilisateur PostgreSQL ({role}), qui peut "
    "réécrire le journal d'audit : utilisez le rôle de l'application (filr db upgrade "
    "--app-role), ou FILR_ALLOW_SUPERUSER=1 pour passer outre."
)

# A member of a superuser role is one `SET ROLE` away from being it: refused as well.
_SUPERUSER_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolsuper AND ("
    "r.rolname IN (current_user, session_user) "
    "OR pg_has_role(current_user, r.oid, 'MEMBER') "
    "OR pg_has_role(session_user, r.oid, 'MEMBER'))), current_user"
)


def refuse_superuser(engine: Engine, *, allowed: bool) -> None:
    """Check every new PostgreSQL connection of *engine*: a superuser is refused unless *allowed*.

    Checked on each new connection of the pool (one query, pooled connections are reused)
    rather than once at start: a worker that boots while the database is down must not skip
    the check, nor stop booting.
    """
    if engine.dialect.name != "postgresql":
        return  # the embedded SQLite default has no roles
    warned: list[bool] = []

    @event.listens_for(engine, "connect")
    def _check_role(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            # The session user too: a superuser that SET ROLE to a plain role can RESET it.
            cur.execute(_SUPERUSER_SQL)
            is_superuser, role = cur.fetchone()
        finally:
            cur.close()
            dbapi_conn.rollback()
        if not is_superuser:
            return
        if not allowed:
            dbapi_conn.close()
            raise SuperuserRefused(SUPERUSER_REFUSED.format(role=role))
        if not warned:
            warned.append(True)
            log.warning(
                "connected to PostgreSQL as the superuser %s (FILR_ALLOW_SUPERUSER is set): "
                "it can rewrite the audit trail",
                role,
            )


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random, non-sequential identifier (UUID4 as 32 hex characters)."""
    return uuid.uuid4().hex


_ID_RE = re.compile(r"[0-9a-f]{32}")


def is_well_formed_id(value: str) -> bool:
    """True for what `new_id` could have made (32 lowercase hex digits)."""
    return _ID_RE.fullmatch(value) is not None


@contextmanager
def job_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Hold a database-wide lock named *name* (PostgreSQL advisory lock); False if taken."""
    if engine.dialect.name != "postgresql":
        # SQLite is the single-server embedded default; its write lock serialises the work.
        yield True
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        acquired = bool(
            conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        )
        try:
            yield acquired
        finally:
            if acquired:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets foreign keys and a busy timeout for concurrent writers."""
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
        if "connect_timeout" not in sa.engine.make_url(url).query:
            # libpq waits for ever on a host that drops packets: a request would hold its
            # worker until gunicorn kills it, instead of answering 503 at once.
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let the Python driver leave transactions alone so BEGIN IMMEDIATE works below.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock at the start so read-then-write sequences (audit chain,
            # counters) cannot interleave between processes (SQLite has no SELECT FOR UPDATE).
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@dataclass(frozen=True)
class BoundDatabase:
    """The engine and session factory of one application."""

    engine: Engine
    session_factory: sessionmaker[Session]


class Database:
    """Hands out one session per application context, from the current app's engine.

    The engine lives in ``app.extensions`` (not on this object), so that two apps in one
    process (tests, "two servers") never share a connection pool by accident.
    """

    def init_app(self, app: Flask, url: str) -> None:
        """Bind *app* to *url* and close the request's session at teardown."""
        engine = make_engine(url)
        app.extensions["filr_db"] = BoundDatabase(
            engine, sessionmaker(engine, expire_on_commit=False)
        )

        @app.teardown_appcontext
        def _close_session(_exc: BaseException | None) -> None:
            session: Session | None = g.pop("_filr_db_session", None)
            if session is not None:
                session.close()

    @staticmethod
    def bound(app: Flask | None = None) -> BoundDatabase:
        """The engine and session factory of *app* (default: the current app)."""
        value = (app or current_app).extensions["filr_db"]
        assert isinstance(value, BoundDatabase)  # noqa: S101 - set by init_app
        return value

    @property
    def engine(self) -> Engine:
        """The current app's engine."""
        return self.bound().engine

    @property
    def session(self) -> Session:
        """The session of the current application context."""
        session: Session | None = g.get("_filr_db_session")
        if session is None:
            session = self.bound().session_factory()
            g._filr_db_session = session
        return session


db = Database()
