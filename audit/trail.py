"""The one door into the audit trail, and its verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit.actions import AuditAction, Outcome
from audit.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64
MAX_TEXT = 512
MAX_DETAIL_VALUE = 1024


@dataclass(frozen=True)
class Actor:
    """Who acted: a user id and its organisation id (None for the system or anonymous)."""

    user_id: str | None = None
    org_id: str | None = None


@dataclass(frozen=True)
class Target:
    """What the event is about: a type, an id and, when it has one, its département."""

    type: str
    id: str | None = None
    departement: str | None = None


@dataclass(frozen=True)
class Context:
    """Where the event came from: source IP, user agent and request id."""

    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


SYSTEM = Actor()
NO_CONTEXT = Context()


def _clip(value: str | None, limit: int = MAX_TEXT) -> str | None:
    # Control characters and CR/LF are kept as data (JSON-escaped when exported); only the
    # length is bounded so that one hostile header cannot bloat the trail.
    if value is None:
        return None
    # NUL is the one character PostgreSQL text refuses: keep it visible as the escape "\x00".
    value = value.replace("\x00", "\\x00")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _clean_details(details: Mapping[str, Any] | None) -> str:
    clean: dict[str, Any] = {}
    for key, value in (details or {}).items():
        if isinstance(value, str):
            value = _clip(value, MAX_DETAIL_VALUE)
        elif not isinstance(value, int | float | bool | type(None) | list):
            value = _clip(str(value), MAX_DETAIL_VALUE)
        clean[str(key)[:64]] = value
    return json.dumps(clean, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def _row_digest(prev_hash: str, fields: Mapping[str, Any]) -> str:
    payload = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256((prev_hash + "\n" + payload).encode("ascii")).hexdigest()


def _hashed_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "action": event.action,
        "outcome": event.outcome,
        "actor_id": event.actor_id,
        "actor_org_id": event.actor_org_id,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_departement": event.target_departement,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
    }


def _lock_head(session: Session) -> AuditChainHead:
    # UPDATE first: on PostgreSQL it takes the row lock, on SQLite the write lock, so two
    # writers (threads, processes, servers) cannot both extend the same head.
    result = session.execute(
        sa.update(AuditChainHead).where(AuditChainHead.id == 1).values(seq=AuditChainHead.seq)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.add(AuditChainHead(id=1, seq=0, hash=GENESIS_HASH))
        session.flush()
    head = session.execute(
        sa.select(AuditChainHead)
        .where(AuditChainHead.id == 1)
        .execution_options(populate_existing=True)
    ).scalar_one()
    return head


def record(
    session: Session,
    action: AuditAction,
    *,
    actor: Actor = SYSTEM,
    target: Target | None = None,
    context: Context = NO_CONTEXT,
    outcome: Outcome = Outcome.SUCCESS,
    details: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the trail in *session*'s transaction (it commits with the action)."""
    head = _lock_head(session)
    event = AuditEvent(
        seq=head.seq + 1,
        occurred_at=(at or datetime.now(UTC)).astimezone(UTC),
        action=str(AuditAction(action)),
        outcome=str(Outcome(outcome)),
        actor_id=actor.user_id,
        actor_org_id=actor.org_id,
        target_type=target.type if target else None,
        target_id=_clip(target.id, 64) if target else None,
        target_departement=target.departement if target else None,
        source_ip=_clip(context.source_ip, 64),
        user_agent=_clip(context.user_agent),
        request_id=_clip(context.request_id, 64),
        details=_clean_details(details),
        prev_hash=head.hash,
        hash="",
    )
    event.hash = _row_digest(head.hash, _hashed_fields(event))
    head.seq = event.seq
    head.hash = event.hash
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of a chain verification."""

    checked: int
    first_broken_seq: int | None
    reason: str | None
    head_hash: str

    @property
    def is_valid(self) -> bool:
        """True when every row chains to the previous one."""
        return self.first_broken_seq is None


def iter_events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    """All events in chain order, fetched in keyset batches."""
    last = 0
    while True:
        rows = (
            session.execute(
                sa.select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify_chain(session: Session) -> VerificationResult:
    """Recompute every hash; name the first row whose content or link is broken."""
    prev = GENESIS_HASH
    expected_seq = None
    checked = 0
    for event in iter_events(session):
        if expected_seq is not None and event.seq != expected_seq:
            return VerificationResult(checked, expected_seq, "missing row", prev)
        if event.prev_hash != prev:
            return VerificationResult(checked, event.seq, "broken link", prev)
        if _row_digest(prev, _hashed_fields(event)) != event.hash:
            return VerificationResult(checked, event.seq, "content altered", prev)
        prev = event.hash
        expected_seq = event.seq + 1
        checked += 1
    head = session.get(AuditChainHead, 1)
    if head is not None and head.hash != prev:
        return VerificationResult(checked, head.seq, "head does not match last row", prev)
    return VerificationResult(checked, None, None, prev)
