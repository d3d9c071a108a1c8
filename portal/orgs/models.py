"""Départements, organisations and France Travail territories."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, utcnow


class OrgKind(StrEnum):
    """The four kinds of organisation of ARCHITECTURE.md."""

    DEPARTEMENT = "departement"
    FRANCE_TRAVAIL = "france_travail"
    PRESTATAIRE = "prestataire"
    PLATEFORME = "plateforme"


ORG_KIND_LABELS = {
    OrgKind.DEPARTEMENT: "Département",
    OrgKind.FRANCE_TRAVAIL: "France Travail",
    OrgKind.PRESTATAIRE: "Prestataire mandaté",
    OrgKind.PLATEFORME: "Plateforme",
}


class Departement(Base):
    """A département: one space of exchanges."""

    __tablename__ = "departement"

    code: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), nullable=False)


class Organisation(Base):
    """A département, a France Travail structure, a mandated provider or the platform."""

    __tablename__ = "organisation"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('departement', 'france_travail', 'prestataire', 'plateforme')",
            name="kind_known",
        ),
        # A département and a provider belong to exactly one département; the others to none
        # (France Travail structures list theirs in ft_territory).
        sa.CheckConstraint(
            "(kind IN ('departement', 'prestataire')) = (departement_code IS NOT NULL)",
            name="departement_iff_local",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    departement_code: Mapped[str | None] = mapped_column(
        String(3), ForeignKey("departement.code"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # The France Travail structure whose security officers see the whole audit trail (the
    # national DSI); see portal/securite/permissions.py. Set with `filr orgs national`.
    is_national: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    # Its members may log in through ProConnect (`filr orgs proconnect`, portal.auth.proconnect).
    proconnect_enabled: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )

    territory: Mapped[list[FtTerritory]] = relationship(
        back_populates="organisation", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def kind_label(self) -> str:
        """French label of the kind."""
        return ORG_KIND_LABELS[OrgKind(self.kind)]


class FtTerritory(Base):
    """A département a France Travail structure is habilitated for."""

    __tablename__ = "ft_territory"

    organisation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisation.id", ondelete="CASCADE"), primary_key=True
    )
    departement_code: Mapped[str] = mapped_column(
        String(3), ForeignKey("departement.code"), primary_key=True
    )

    organisation: Mapped[Organisation] = relationship(back_populates="territory")
