"""The one door into the audit trail, and its verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audit.actions import AuditAction, Outcome
from audit.models import EVENT_COLUMNS, AuditChainHead, AuditCheckpoint, AuditEvent

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


_json_str = json.encoder.encode_basestring_ascii


def _fast_digest(prev_hash: str, row: Sequence[Any]) -> str:
    """`_row_digest` of a row of `_VERIFY_COLUMNS` (occurred_at as ISO text), without a dict.

    Spells out what ``json.dumps(sort_keys=True, ensure_ascii=True, separators=(",", ":"))``
    writes for these keys, strings through the same C escaper; tests/audit prove they agree.
    """
    enc = _json_str
    payload = (
        f'{{"action":{enc(row[2])},'
        f'"actor_id":{"null" if row[4] is None else enc(row[4])},'
        f'"actor_org_id":{"null" if row[5] is None else enc(row[5])},'
        f'"details":{enc(row[12])},"occurred_at":{enc(row[1])},"outcome":{enc(row[3])},'
        f'"request_id":{"null" if row[11] is None else enc(row[11])},"seq":{int(row[0])},'
        f'"source_ip":{"null" if row[9] is None else enc(row[9])},'
        f'"target_departement":{"null" if row[8] is None else enc(row[8])},'
        f'"target_id":{"null" if row[7] is None else enc(row[7])},'
        f'"target_type":{"null" if row[6] is None else enc(row[6])},'
        f'"user_agent":{"null" if row[10] is None else enc(row[10])}}}'
    )
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
    if result.rowcount == 0:  # type: ignore[attr-defined] # DML returns a CursorResult
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
    event = AuditEvent(
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
    )
    if session.get_bind().dialect.name == "postgresql":
        _append_postgresql(session, event, at)
    else:
        _append_orm(session, event, at)
    return event


def _chain(event: AuditEvent, head_seq: int, head_hash: str) -> None:
    event.seq = head_seq + 1
    event.prev_hash = head_hash
    event.hash = _row_digest(head_hash, _hashed_fields(event))


def _append_orm(session: Session, event: AuditEvent, at: datetime | None = None) -> None:
    head = _lock_head(session)
    if at is None:
        event.occurred_at = datetime.now(UTC)  # once the head is locked, as above
    _chain(event, head.seq, head.hash)
    head.seq = event.seq
    head.hash = event.hash
    session.add(event)
    session.flush()


_INSERTED = EVENT_COLUMNS
_LOCK_HEAD = sa.text("SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE")
_APPEND = sa.text(
    "WITH inserted AS ("  # noqa: S608 - constant column names; every value is bound
    f"INSERT INTO audit_event ({', '.join(_INSERTED)}) "
    f"VALUES ({', '.join(':' + c for c in _INSERTED)}) RETURNING id, seq, hash) "
    "UPDATE audit_chain_head SET seq = inserted.seq, hash = inserted.hash "
    "FROM inserted WHERE audit_chain_head.id = 1 RETURNING inserted.id"
)


def _append_postgresql(session: Session, event: AuditEvent, at: datetime | None) -> None:
    # Two round trips instead of four, and constant statements (benchmarks/audit.py: the
    # row's cost in a request): the head row is locked and read at once, then one statement
    # inserts the row and moves the head. The lock orders the writers of every server; it is
    # held until the action commits.
    head = session.execute(_LOCK_HEAD).one_or_none()
    if head is None:  # a database whose head row was never seeded
        _append_orm(session, event, at)
        return
    if at is None:
        # Read the clock once the head is locked: seq then follows occurred_at (period
        # searches rely on it, see audit.query.SEQ_TIME_MARGIN).
        event.occurred_at = datetime.now(UTC)
    _chain(event, int(head[0]), str(head[1]))
    values = {column: getattr(event, column) for column in _INSERTED}
    event.id = session.execute(_APPEND, values).scalar_one()


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of a chain verification."""

    checked: int
    first_broken_seq: int | None
    reason: str | None
    head_hash: str
    # The retention checkpoint verification started from (None: from the genesis row).
    checkpoint_seq: int | None = None

    @property
    def is_valid(self) -> bool:
        """True when every row chains to the previous one."""
        return self.first_broken_seq is None


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    """The most recent retention checkpoint, if the purge ever ran."""
    return session.execute(
        sa.select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)
    ).scalar_one_or_none()


# Read through the driver's own cursor, occurred_at already formatted as the hash spells it
# (ISO 8601, microseconds, UTC): no ORM object, no Python datetime; the verification's cost is
# hashing (benchmarks/audit.py: one million rows).
_VERIFY_COLUMNS = (
    "action, outcome, actor_id, actor_org_id, target_type, target_id, target_departement, "
    "source_ip, user_agent, request_id, details, prev_hash, hash"
)
_OCCURRED_AT_ISO = {
    "postgresql": "to_char(occurred_at AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')',
    # SQLAlchemy stores naive UTC text with microseconds: "2026-03-01 08:00:00.000123".
    "sqlite": "replace(occurred_at, ' ', 'T') || '+00:00'",
}
_PLACEHOLDER = {"postgresql": "%s", "sqlite": "?"}


def _verify_query(dialect: str) -> str:
    mark = _PLACEHOLDER[dialect]
    return (
        f"SELECT seq, {_OCCURRED_AT_ISO[dialect]}, {_VERIFY_COLUMNS} FROM audit_event "  # noqa: S608 - constants
        f"WHERE seq > {mark} AND seq <= {mark} ORDER BY seq LIMIT {mark}"
    )


@dataclass
class _Walk:
    """Where a walk along the chain stopped: the next seq expected, the hash it must chain to."""

    next_seq: int
    prev: str
    checked: int = 0
    broken_seq: int | None = None
    reason: str | None = None


def _walk(cursor: Any, query: str, walk: _Walk, upto: int, batch: int) -> None:
    """Verify the rows after ``walk.next_seq - 1`` up to *upto*, in keyset batches."""
    last = walk.next_seq - 1
    while True:
        cursor.execute(query, (last, upto, batch))
        rows = cursor.fetchall()
        for row in rows:
            seq = int(row[0])
            if seq != walk.next_seq:
                walk.broken_seq, walk.reason = walk.next_seq, "missing row"
                return
            if row[13] != walk.prev:
                walk.broken_seq, walk.reason = seq, "broken link"
                return
            if _fast_digest(walk.prev, row) != row[14]:
                walk.broken_seq, walk.reason = seq, "content altered"
                return
            walk.prev = row[14]
            walk.next_seq = seq + 1
            walk.checked += 1
        if len(rows) < batch:
            return
        last = int(rows[-1][0])


def verify_chain(
    session: Session, *, upto_seq: int | None = None, batch: int = 10000
) -> VerificationResult:
    """Recompute every hash from the latest checkpoint; name the first broken row.

    Reads plain rows in keyset batches: constant memory, about 10 s per million rows
    (benchmarks/audit.py). With *upto_seq*, stops after that row and does not compare the head.
    """
    head: tuple[int, str] | None = None
    if upto_seq is None:
        # The head is read FIRST and the rows up to it verified: rows other servers append
        # while we read must not look like a mismatch between the head and the last row.
        row = session.execute(
            sa.select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.id == 1)
        ).one_or_none()
        head = (int(row[0]), str(row[1])) if row is not None else None
    checkpoint = latest_checkpoint(session)
    start = checkpoint.seq if checkpoint else None
    walk = _Walk(
        next_seq=checkpoint.seq + 1 if checkpoint else 1,
        prev=checkpoint.hash if checkpoint else GENESIS_HASH,
    )
    upto = upto_seq if upto_seq is not None else (head[0] if head is not None else 2**62)
    query = _verify_query(session.get_bind().dialect.name)
    cursor = session.connection().connection.cursor()
    try:
        while True:
            _walk(cursor, query, walk, upto, batch)
            is_short = walk.reason is None and head is not None and walk.next_seq <= head[0]
            if walk.reason != "missing row" and not is_short:
                break
            # Rows missing: the retention purge may have committed a batch since the checkpoint
            # was read (each batch is its own transaction, and on PostgreSQL every statement
            # sees the latest commits). Its newer checkpoint, when it covers the first missing
            # row, vouches for the rows deleted; the walk goes on from it, and the next row must
            # chain to its hash. A deletion no checkpoint covers is still reported.
            newer = latest_checkpoint(session)
            if newer is None or newer.seq < walk.next_seq:
                break
            start = newer.seq
            walk = _Walk(next_seq=newer.seq + 1, prev=newer.hash, checked=walk.checked)
    finally:
        cursor.close()
    broken, reason = walk.broken_seq, walk.reason
    if reason is None and head is not None:
        if walk.next_seq <= head[0]:  # rows at the end of the chain were deleted
            broken, reason = walk.next_seq, "missing row"
        # (A checkpoint past the head read first vouches for that head: it was purged.)
        elif walk.next_seq == head[0] + 1 and head[1] != walk.prev:
            broken, reason = head[0], "head does not match last row"
    return VerificationResult(walk.checked, broken, reason, walk.prev, start)
