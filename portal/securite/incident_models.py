"""The incident register of the security officers: incidents, their scope, links, notices."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, utcnow

# RGPD article 33: a personal-data breach is notified to the CNIL within 72 hours.
CNIL_NOTICE = timedelta(hours=72)


class IncidentKind(StrEnum):
    """What an incident is."""

    BREACH = "violation"
    OUTAGE = "indisponibilite"
    SUSPICIOUS = "activite_suspecte"


INCIDENT_KIND_LABELS = {
    IncidentKind.BREACH: "Violation de données personnelles",
    IncidentKind.OUTAGE: "Indisponibilité du service",
    IncidentKind.SUSPICIOUS: "Activité suspecte",
}


class NoticeKind(StrEnum):
    """Whom a notice went to."""

    PARTNER = "partenaires"
    CNIL = "cnil"


NOTICE_KIND_LABELS = {
    NoticeKind.PARTNER: "Partenaires de la convention",
    NoticeKind.CNIL: "CNIL",
}


class Incident(Base):
    """One security incident: kind, detection time, scope, description (no personal data)."""

    __tablename__ = "incident"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('violation', 'indisponibilite', 'activite_suspecte')", name="kind_known"
        ),
        sa.CheckConstraint("partner_notice_hours BETWEEN 1 AND 168", name="hours_sane"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    number: Mapped[int] = mapped_column(Integer, nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    title: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # The convention's delay for the notice to the partners (36 h, 48 h in another one).
    partner_notice_hours: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="SET NULL")
    )
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Reminders before each deadline, claimed by a conditional UPDATE (one each).
    partner_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cnil_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    scopes: Mapped[list[IncidentScope]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    links: Mapped[list[IncidentLink]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    notices: Mapped[list[IncidentNotice]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="IncidentNotice.sent_at"
    )

    @property
    def kind_label(self) -> str:
        """French label of the kind."""
        return INCIDENT_KIND_LABELS[IncidentKind(self.kind)]

    @property
    def partner_deadline(self) -> datetime:
        """When the partners must have been told: elapsed hours, weekends and nights included."""
        return self.detected_at + timedelta(hours=self.partner_notice_hours)

    @property
    def cnil_deadline(self) -> datetime | None:
        """When the CNIL must have been told (personal-data breaches only)."""
        return self.detected_at + CNIL_NOTICE if self.kind == IncidentKind.BREACH else None

    def notified(self, kind: NoticeKind) -> IncidentNotice | None:
        """The first notice of *kind*, if one was recorded."""
        return next((n for n in self.notices if n.kind == kind), None)

    @property
    def departements(self) -> frozenset[str]:
        """Départements concerned."""
        return frozenset(s.departement_code for s in self.scopes if s.departement_code)

    @property
    def organisation_ids(self) -> frozenset[str]:
        """Organisations concerned."""
        return frozenset(s.organisation_id for s in self.scopes if s.organisation_id)


class IncidentScope(Base):
    """A département or an organisation concerned by an incident."""

    __tablename__ = "incident_scope"
    __table_args__ = (
        sa.CheckConstraint(
            "(departement_code IS NULL) != (organisation_id IS NULL)", name="one_of_both"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("incident.id", ondelete="CASCADE"), nullable=False, index=True
    )
    departement_code: Mapped[str | None] = mapped_column(String(3), ForeignKey("departement.code"))
    organisation_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("organisation.id", ondelete="CASCADE")
    )


class IncidentLink(Base):
    """An audit row (by its sequence number) or an alert linked to an incident."""

    __tablename__ = "incident_link"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('event', 'alert')", name="kind_known"),
        sa.UniqueConstraint("incident_id", "kind", "ref", name="uq_incident_link_once"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("incident.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    ref: Mapped[str] = mapped_column(String(32), nullable=False)


class IncidentNotice(Base):
    """A notice that went out: to whom (partners, CNIL), when, recorded by whom."""

    __tablename__ = "incident_notice"
    __table_args__ = (sa.CheckConstraint("kind IN ('partenaires', 'cnil')", name="kind_known"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("incident.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(12), nullable=False)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    recipients: Mapped[str] = mapped_column(String(500), nullable=False)
    recorded_by_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="SET NULL")
    )
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    @property
    def kind_label(self) -> str:
        """French label of the recipient kind."""
        return NOTICE_KIND_LABELS[NoticeKind(self.kind)]
