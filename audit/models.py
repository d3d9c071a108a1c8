"""Tables of the audit trail (own metadata: the portal's migrations include it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import BigInteger, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class _UTC(TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AuditBase(DeclarativeBase):
    """Declarative base of the audit tables."""

    metadata = metadata


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(AuditBase):
    """One audited event; inserted once, never updated or deleted by the application."""

    __tablename__ = "audit_event"
    # Every search criterion gets an index ending with seq: an equality on the criterion then
    # reads the newest rows first and stops at the page size (keyset pagination on seq), which
    # keeps a filtered search fast on tens of millions of rows (benchmarks/audit.py).
    __table_args__ = (
        sa.Index("ix_audit_event_action_seq", "action", "seq"),
        sa.Index("ix_audit_event_actor_id_seq", "actor_id", "seq"),
        sa.Index("ix_audit_event_actor_org_id_seq", "actor_org_id", "seq"),
        sa.Index("ix_audit_event_target_departement_seq", "target_departement", "seq"),
        sa.Index("ix_audit_event_target_id_seq", "target_id", "seq"),
        sa.Index("ix_audit_event_source_ip_seq", "source_ip", "seq"),
        # Failures and refusals are a few percent of the rows, and what officers look for.
        sa.Index(
            "ix_audit_event_outcome_seq",
            "outcome",
            "seq",
            postgresql_where=sa.text("outcome <> 'success'"),
            sqlite_where=sa.text("outcome <> 'success'"),
        ),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(_UTC, nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String(32))
    actor_org_id: Mapped[str | None] = mapped_column(String(32))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    target_departement: Mapped[str | None] = mapped_column(String(3))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditCheckpoint(AuditBase):
    """Where the retention purge cut the chain: the seq and hash of the last deleted row.

    Verification starts from the latest checkpoint, so the chain stays verifiable once its
    oldest rows are gone; inserted by the retention job only (the database owner's role).
    """

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, unique=True)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    rows_deleted: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(_UTC, nullable=False)


# Every column of a row but the surrogate id, in chain order: what is inserted and exported.
EVENT_COLUMNS: tuple[str, ...] = (
    "seq",
    "occurred_at",
    "action",
    "outcome",
    "actor_id",
    "actor_org_id",
    "target_type",
    "target_id",
    "target_departement",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
    "prev_hash",
    "hash",
)


class AuditChainHead(AuditBase):
    """The single row that serialises writers: its lock orders the chain across servers."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
