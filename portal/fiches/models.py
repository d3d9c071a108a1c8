"""A fiche: the columns the inbox sorts on, and where its encrypted values are.

The values themselves (every field of the form) are an object of the encrypted store, under
the département's key, like a deposited file (`values_key`). The only personal data kept in
this table is what the inbox shows, sealed (`person_sealed`: the person's name and birth date,
AES-GCM under a key derived from the application secret, bound to the fiche's id), with a keyed
digest of the folded surname for the search (`person_index`); both are wiped by the purge.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, new_id, utcnow

MAX_LIFETIME = timedelta(days=90)
DECISION_DELAY = timedelta(days=21)


class FicheState(StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    DESTROYED = "destroyed"


STATE_LABELS = {
    FicheState.DRAFT: "Brouillon",
    FicheState.SENT: "Envoyée",
    FicheState.RECEIVED: "Reçue",
    FicheState.ACCEPTED: "Acceptée",
    FicheState.REFUSED: "Refusée",
    FicheState.WITHDRAWN: "Retirée",
    FicheState.DESTROYED: "Détruite",
}
OVERDUE_LABEL = "Sans réponse"
# States in which a bilatérale fiche still waits for its decision.
WAITING = (FicheState.SENT, FicheState.RECEIVED)


class Fiche(Base):
    """One fiche of one form version, in one département space."""

    __tablename__ = "fiche"
    __table_args__ = (
        sa.CheckConstraint(
            "state IN ('draft', 'sent', 'received', 'accepted', 'refused', 'withdrawn', "
            "'destroyed')",
            name="state_known",
        ),
        sa.CheckConstraint("decision IS NULL OR decision IN ('oui', 'non')", name="decision_known"),
        sa.Index("ix_fiche_space_sent", "departement_code", "sent_at", "id"),
        sa.Index("ix_fiche_recipient_sent", "recipient_org_id", "sent_at", "id"),
        sa.Index("ix_fiche_sender_org_created", "sender_org_id", "created_at", "id"),
        sa.Index("ix_fiche_due", "state", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    form_id: Mapped[str] = mapped_column(String(48), nullable=False)
    form_version: Mapped[int] = mapped_column(Integer, nullable=False)
    departement_code: Mapped[str] = mapped_column(
        String(3), ForeignKey("departement.code"), nullable=False
    )
    sender_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id"), nullable=False, index=True
    )
    sender_org_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisation.id"), nullable=False
    )
    recipient_org_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisation.id"), nullable=False
    )
    forwarded_org_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("organisation.id"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=FicheState.DRAFT)
    # The encrypted values (object key in the store); NULL once destroyed.
    values_key: Mapped[str | None] = mapped_column(String(200))
    person_sealed: Mapped[str | None] = mapped_column(String(400))
    person_index: Mapped[str | None] = mapped_column(String(64), index=True)
    replaces_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("fiche.id"))
    replaced_by_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("fiche.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision: Mapped[str | None] = mapped_column(String(3))
    decided_on: Mapped[date | None] = mapped_column(sa.Date)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("user_account.id"))
    forwarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    forwarded_by_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("user_account.id"))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_7_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_2_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def form_key(self) -> str:
        return f"{self.form_id}@{self.form_version}"

    def is_overdue(self, now: datetime | None = None) -> bool:
        """A bilatérale fiche past its 21 days without a decision ("sans réponse")."""
        return (
            self.due_at is not None and self.state in WAITING and (now or utcnow()) >= self.due_at
        )

    @property
    def state_label(self) -> str:
        if self.is_overdue():
            return OVERDUE_LABEL
        return STATE_LABELS[FicheState(self.state)]


class FicheAttachment(Base):
    """A PDF attached to an `attachment` field of a fiche (the signed acknowledgement, the
    bilan du parcours, the PPAE): an encrypted object under the département's key."""

    __tablename__ = "fiche_attachment"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    fiche_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("fiche.id"), nullable=False, index=True
    )
    field_id: Mapped[str] = mapped_column(String(48), nullable=False)
    object_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    scan: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
