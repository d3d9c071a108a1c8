"""Flow deposits (validated or refused) and the calendar reminders already sent."""

from __future__ import annotations

import json
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, utcnow
from portal.deposits.models import Deposit


class FlowStatus(StrEnum):
    """Outcome of the validation on deposit."""

    VALID = "valid"
    REJECTED = "rejected"


class ReminderKind(StrEnum):
    """The two calendar reminders: before the CGPEM deadline, and once a deadline passed."""

    BEFORE_DEADLINE = "before_deadline"
    DEADLINE_PASSED = "deadline_passed"


class FlowDeposit(Base):
    """One file deposited as a flow: its validation outcome, period and counts (never content).

    A valid file is a published deposit for the other side; a refused one is a draft whose
    content was destroyed at once and that no recipient ever saw. The validation report is kept
    sealed (it may quote values of the file), the counts in clear (they are not personal data).
    """

    __tablename__ = "flow_deposit"
    __table_args__ = (
        sa.CheckConstraint("status IN ('valid', 'rejected')", name="status_known"),
        sa.CheckConstraint(
            "flow_type IS NULL OR flow_type IN ('CGPEM', 'PECGM', 'PECDH')", name="flow_type_known"
        ),
        sa.CheckConstraint("status = 'rejected' OR flow_type IS NOT NULL", name="valid_has_type"),
        sa.CheckConstraint("record_count >= 0 AND error_count >= 0", name="counts_positive"),
        sa.CheckConstraint(
            "(unusable_at IS NULL) = (unusable_reason IS NULL)", name="unusable_with_reason"
        ),
        sa.Index("ix_flow_deposit_follow_up", "departement_code", "period_start", "flow_type"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deposit_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("deposit.id"), nullable=False, unique=True
    )
    departement_code: Mapped[str] = mapped_column(
        String(3), ForeignKey("departement.code"), nullable=False
    )
    sender_org_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisation.id"), nullable=False
    )
    flow_type: Mapped[str | None] = mapped_column(String(8))
    # First day of the month (monthly flows) or Monday of the ISO week (PECDH).
    period_start: Mapped[date] = mapped_column(Date, nullable=False)
    version: Mapped[str | None] = mapped_column(String(8))
    periodicite: Mapped[str | None] = mapped_column(String(1))
    date_reference: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    record_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    nature_counts_json: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    error_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    report_sealed: Mapped[str | None] = mapped_column(Text)
    sanity_json: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    unusable_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unusable_by_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("user_account.id"))
    unusable_reason: Mapped[str | None] = mapped_column(String(500))

    deposit: Mapped[Deposit] = relationship(lazy="joined")

    @property
    def is_valid(self) -> bool:
        """True when the file passed validation and was delivered."""
        return self.status == FlowStatus.VALID

    @property
    def nature_counts(self) -> dict[str, int]:
        """Records per orientation nature (CGPEM)."""
        value: dict[str, int] = json.loads(self.nature_counts_json)
        return value

    @property
    def sanity(self) -> list[dict[str, Any]]:
        """Findings of the comparison with the previous period (counts only)."""
        value: list[dict[str, Any]] = json.loads(self.sanity_json)
        return value


class FlowReminder(Base):
    """A calendar reminder sent once per département, flow, period and kind (idempotence)."""

    __tablename__ = "flow_reminder"
    __table_args__ = (
        sa.UniqueConstraint(
            "departement_code",
            "flow_type",
            "period_start",
            "kind",
            name="uq_flow_reminder_once_per_period",
        ),
        sa.CheckConstraint("kind IN ('before_deadline', 'deadline_passed')", name="kind_known"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    departement_code: Mapped[str] = mapped_column(
        String(3), ForeignKey("departement.code"), nullable=False
    )
    flow_type: Mapped[str] = mapped_column(String(8), nullable=False)
    period_start: Mapped[date] = mapped_column(Date, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    recipients: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
