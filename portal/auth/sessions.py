"""Server-side sessions: the cookie carries a random token, the database everything else."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask, Request, Response, g
from flask.sessions import SessionInterface, SessionMixin
from sqlalchemy.orm import Session
from werkzeug.datastructures import CallbackDict

from portal.auth.models import ServerSession, ThrottleEvent
from portal.auth.throttle import MEMORY_SECONDS
from portal.db import DATABASE_UNAVAILABLE_FLAG, db, is_database_unavailable, utcnow
from portal.text import header_text

# Set on `g` when the session could not be read because the database is out of reach.
SESSION_DATABASE_ERROR = "filr_session_database_error"
# How often an unchanged session refreshes last_seen_at (the idle clock) in the database.
_TOUCH_EVERY = timedelta(seconds=30)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PortalSession(CallbackDict[str, Any], SessionMixin):
    """The session dictionary plus the server-side facts Flask-Login does not know about."""

    def __init__(
        self,
        initial: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        row_id: str | None = None,
        user_id: str | None = None,
        mfa_verified_at: datetime | None = None,
    ) -> None:
        def on_update(_self: CallbackDict[str, Any]) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.token = token
        self.row_id = row_id
        self.user_id = user_id
        self.mfa_verified_at = mfa_verified_at
        self.modified = False
        self.expired_user_id: str | None = None
        self.regenerate_requested = False
        self.destroy_requested = False

    def authenticate(self, user_id: str) -> None:
        """Bind the session to *user_id* after password and TOTP, with a fresh id."""
        self.clear()
        self.user_id = user_id
        self.mfa_verified_at = utcnow()
        self.regenerate_requested = True
        self.modified = True

    def destroy(self) -> None:
        """Forget everything; the row is deleted and the cookie cleared."""
        self.clear()
        self.user_id = None
        self.mfa_verified_at = None
        self.destroy_requested = True
        self.modified = True


class ServerSessionInterface(SessionInterface):
    """Stores sessions in the `server_session` table with idle and absolute timeouts."""

    def __init__(self, idle: timedelta, absolute: timedelta) -> None:
        self.idle = idle
        self.absolute = absolute

    def open_session(self, app: Flask, request: Request) -> PortalSession:
        try:
            return self._load(app, request)
        except sa.exc.SQLAlchemyError as e:
            if not is_database_unavailable(e):
                raise
            # The session is loaded before the error handlers can answer: the first request
            # hook (portal.gate) raises this again, and the database's 503 handler answers.
            g.setdefault(SESSION_DATABASE_ERROR, e)
            return PortalSession()

    def _load(self, app: Flask, request: Request) -> PortalSession:
        token = request.cookies.get(self.get_cookie_name(app))
        if not token or len(token) > 128:
            return PortalSession()
        row = db.session.get(ServerSession, _digest(token))
        if row is None:
            return PortalSession()
        now = utcnow()
        if now - row.last_seen_at > self.idle or now - row.created_at > self.absolute:
            expired_user = row.user_id
            db.session.delete(row)
            db.session.commit()
            session = PortalSession()
            session.expired_user_id = expired_user
            session.destroy_requested = True  # clears the stale cookie
            return session
        try:
            data = json.loads(row.data)
        except ValueError:
            data = {}
        g._filr_session_last_seen = row.last_seen_at
        return PortalSession(
            data,
            token=token,
            row_id=row.id,
            user_id=row.user_id,
            mfa_verified_at=row.mfa_verified_at,
        )

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, PortalSession)  # noqa: S101 - installed by create_app only
        if g.get(DATABASE_UNAVAILABLE_FLAG):
            return  # the 503 of a database outage: nothing can be stored, no cookie is set
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        dbs = db.session
        if session.destroy_requested or (session.regenerate_requested and session.row_id):
            if session.row_id:
                dbs.execute(sa.delete(ServerSession).where(ServerSession.id == session.row_id))
            session.row_id = None
            session.token = None
            if session.destroy_requested and not session.user_id and not dict(session):
                dbs.commit()
                response.delete_cookie(
                    name,
                    domain=domain,
                    path=path,
                    secure=self.get_cookie_secure(app),
                    httponly=True,
                    samesite=self.get_cookie_samesite(app),
                )
                return
        now = utcnow()
        if session.row_id is None:
            if not dict(session) and not session.user_id:
                dbs.commit()
                return  # nothing worth a row: no cookie for a visitor who stored nothing
            token = secrets.token_urlsafe(32)
            from flask import request

            row = ServerSession(
                id=_digest(token),
                user_id=session.user_id,
                mfa_verified_at=session.mfa_verified_at,
                created_at=now,
                last_seen_at=now,
                source_ip=request.remote_addr,
                user_agent=(header_text(request.user_agent.string) or "")[:512],
                data=json.dumps(dict(session)),
            )
            dbs.add(row)
            dbs.commit()
            session.token, session.row_id = token, row.id
            response.set_cookie(
                name,
                token,
                httponly=True,
                secure=self.get_cookie_secure(app),
                samesite=self.get_cookie_samesite(app),
                path=path,
                domain=domain,
            )
            response.vary.add("Cookie")
            return
        last_seen: datetime | None = g.get("_filr_session_last_seen")
        values: dict[str, Any] = {}
        if session.modified:
            values.update(
                data=json.dumps(dict(session)),
                user_id=session.user_id,
                mfa_verified_at=session.mfa_verified_at,
            )
        if session.modified or last_seen is None or now - last_seen > _TOUCH_EVERY:
            values["last_seen_at"] = now
        if values:
            dbs.execute(
                sa.update(ServerSession).where(ServerSession.id == session.row_id).values(**values)
            )
        dbs.commit()
        response.vary.add("Cookie")


def revoke_user_sessions(session: Session, user_id: str, *, keep_row_id: str | None = None) -> int:
    """Delete every session of *user_id* (except *keep_row_id*); returns how many."""
    stmt = sa.delete(ServerSession).where(ServerSession.user_id == user_id)
    if keep_row_id:
        stmt = stmt.where(ServerSession.id != keep_row_id)
    result = session.execute(stmt)
    return int(result.rowcount)  # type: ignore[attr-defined] # DML returns a CursorResult


@dataclass(frozen=True)
class SessionCleanup:
    """What `delete_expired_sessions` found (and, unless a dry run, deleted)."""

    sessions: int
    throttle_events: int


def delete_expired_sessions(
    session: Session,
    now: datetime,
    *,
    idle: timedelta,
    absolute: timedelta,
    dry_run: bool = False,
) -> SessionCleanup:
    """Delete sessions idle for *idle* or older than *absolute*, and throttle events the
    throttle no longer counts; commits unless *dry_run*."""
    expired = sa.or_(
        ServerSession.last_seen_at < now - idle, ServerSession.created_at < now - absolute
    )
    stale = ThrottleEvent.at < now - timedelta(seconds=MEMORY_SECONDS)
    sessions = session.execute(
        sa.select(sa.func.count()).select_from(ServerSession).where(expired)
    ).scalar_one()
    events = session.execute(
        sa.select(sa.func.count()).select_from(ThrottleEvent).where(stale)
    ).scalar_one()
    if not dry_run:
        session.execute(sa.delete(ServerSession).where(expired))
        session.execute(sa.delete(ThrottleEvent).where(stale))
        session.commit()
    return SessionCleanup(sessions, events)
