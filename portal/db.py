"""Database engine and per-request session, without Flask-SQLAlchemy."""

from __future__ import annotations

import uuid
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


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random, non-sequential identifier (UUID4 as 32 hex characters)."""
    return uuid.uuid4().hex


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets foreign keys and a busy timeout for concurrent writers."""
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
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
