"""User accounts, their roles, recovery codes and single-use e-mail tokens."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

import audit
from portal.db import Base, UTCDateTime, new_id, utcnow
from portal.orgs.models import Organisation


class Role(StrEnum):
    """Roles of ARCHITECTURE.md; a user may hold several."""

    AGENT = "agent"
    TECHNICIEN = "technicien"
    GESTIONNAIRE = "gestionnaire"
    SECURITE = "securite"
    ADMIN = "admin"


ROLE_LABELS = {
    Role.AGENT: "Agent",
    Role.TECHNICIEN: "Technicien (flux XML)",
    Role.GESTIONNAIRE: "Gestionnaire de comptes",
    Role.SECURITE: "Responsable sécurité",
    Role.ADMIN: "Administrateur de la plateforme",
}

PRIVILEGED_ROLES = frozenset({Role.GESTIONNAIRE, Role.SECURITE, Role.ADMIN})


class AccountStatus(StrEnum):
    """Life cycle of an account."""

    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


STATUS_LABELS = {
    AccountStatus.PENDING: "En attente d'activation",
    AccountStatus.ACTIVE: "Actif",
    AccountStatus.SUSPENDED: "Suspendu",
    AccountStatus.REVOKED: "Révoqué",
}


class TokenPurpose(StrEnum):
    """What a single-use e-mail token allows."""

    ACTIVATION = "activation"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a token purpose, not a secret
    MFA_ENROLMENT = "mfa_enrolment"


class User(Base):
    """An account: exactly one organisation, one or more roles, password and TOTP."""

    __tablename__ = "user_account"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'suspended', 'revoked')", name="status_known"
        ),
        sa.CheckConstraint("status != 'active' OR password_hash IS NOT NULL", name="active_has_pw"),
        sa.CheckConstraint(
            "status != 'active' OR totp_secret IS NOT NULL OR mfa_reset_at IS NOT NULL",
            name="active_has_mfa",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisation.id"), nullable=False, index=True
    )
    email: Mapped[str] = mapped_column(String(254), nullable=False, unique=True)
    full_name: Mapped[str] = mapped_column(String(120), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=AccountStatus.PENDING)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    mfa_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    daily_digest: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    last_digest_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why the account is suspended (SuspensionReason); None when it is not suspended.
    suspension_reason: Mapped[str | None] = mapped_column(String(20))
    # The last reactivation by a manager: an unused account's days count from it too.
    reactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The notice sent before suspension for non-use; stale once the person logs in again.
    inactivity_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organisation: Mapped[Organisation] = relationship(lazy="joined")
    role_rows: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="user"
    )
    habilitation: Mapped[Habilitation | None] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        back_populates="user",
        foreign_keys="Habilitation.user_id",
    )

    @property
    def roles(self) -> frozenset[Role]:
        """The roles this account holds."""
        return frozenset(Role(r.role) for r in self.role_rows)

    def has_role(self, role: Role) -> bool:
        """True when the account holds *role*."""
        return role in self.roles

    @property
    def is_active(self) -> bool:
        """Flask-Login: only active accounts may hold a session."""
        return self.status == AccountStatus.ACTIVE

    @property
    def is_authenticated(self) -> bool:
        """Flask-Login: a loaded user is authenticated (MFA is checked by the loader)."""
        return True

    @property
    def is_anonymous(self) -> bool:
        """Flask-Login."""
        return False

    def get_id(self) -> str:
        """Flask-Login."""
        return self.id

    @property
    def audit_actor(self) -> audit.Actor:
        """This account as the actor of an audit row."""
        return audit.Actor(self.id, self.organisation_id)

    @property
    def status_label(self) -> str:
        """French label of the status."""
        return STATUS_LABELS[AccountStatus(self.status)]


class SuspensionReason(StrEnum):
    """Why an account is suspended."""

    MANAGER = "manager"
    INACTIVITY = "inactivity"
    HABILITATION_END = "habilitation_end"
    REVIEW = "review"


SUSPENSION_LABELS = {
    SuspensionReason.MANAGER: "par le gestionnaire de comptes",
    SuspensionReason.INACTIVITY: "faute d'utilisation",
    SuspensionReason.HABILITATION_END: "à la fin de son habilitation",
    SuspensionReason.REVIEW: "lors de la revue des habilitations",
}


class Habilitation(Base):
    """The habilitation of an account: function, granted when and by whom, until when.

    The conventions ask for a nominative habilitation with the person's function and an end
    date; the account is suspended on that day (`portal.accounts.habilitations`).
    """

    __tablename__ = "habilitation"
    __table_args__ = (
        sa.CheckConstraint("ends_on IS NULL OR ends_on > granted_on", name="ends_after_grant"),
        sa.CheckConstraint(
            "(function = 'autre') = (function_label IS NOT NULL)", name="label_iff_autre"
        ),
    )

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    function: Mapped[str] = mapped_column(String(40), nullable=False)
    function_label: Mapped[str | None] = mapped_column(String(80))
    granted_on: Mapped[date] = mapped_column(sa.Date, nullable=False)
    ends_on: Mapped[date | None] = mapped_column(sa.Date, index=True)
    granted_by_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="SET NULL")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # Notices before the end date, claimed by a conditional UPDATE (one per end date).
    notice_14_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notice_1_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The signed habilitation form (PDF), encrypted in the object store like deposits.
    form_object_key: Mapped[str | None] = mapped_column(String(64))
    form_size: Mapped[int | None] = mapped_column(BigInteger)
    form_uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="habilitation", foreign_keys=[user_id])
    granted_by: Mapped[User | None] = relationship(foreign_keys=[granted_by_id])


class UserRole(Base):
    """One role held by one account."""

    __tablename__ = "user_role"
    __table_args__ = (
        sa.CheckConstraint(
            "role IN ('agent', 'technicien', 'gestionnaire', 'securite', 'admin')",
            name="role_known",
        ),
    )

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)

    user: Mapped[User] = relationship(back_populates="role_rows")


class RecoveryCode(Base):
    """A single-use MFA recovery code, stored as a SHA-256 digest (80 random bits)."""

    __tablename__ = "recovery_code"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False, index=True
    )
    code_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserToken(Base):
    """A single-use token sent by e-mail (activation, password reset, MFA enrolment)."""

    __tablename__ = "user_token"
    __table_args__ = (sa.CheckConstraint("expires_at > created_at", name="expires_after_creation"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False, index=True
    )
    purpose: Mapped[str] = mapped_column(String(20), nullable=False)
    token_digest: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReviewStatus(StrEnum):
    """Life of a review campaign."""

    OPEN = "open"
    CLOSED = "closed"


class ReviewDecisionKind(StrEnum):
    """What the account manager decided for one account in a campaign."""

    CONFIRMED = "confirmed"
    SUSPENDED = "suspended"


class ReviewCampaign(Base):
    """The review of one organisation's accounts (revue des habilitations).

    Opened each year (1 March to 30 April by default) by `filr jobs review`, or by hand for one
    organisation; one campaign per organisation and opening day, so that two servers opening
    the year's campaigns at once create one each.
    """

    __tablename__ = "review_campaign"
    __table_args__ = (
        sa.UniqueConstraint(
            "organisation_id", "opens_on", name="uq_review_campaign_one_per_opening"
        ),
        sa.CheckConstraint("closes_on >= opens_on", name="closes_after_opening"),
        sa.CheckConstraint("status IN ('open', 'closed')", name="status_known"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisation.id"), nullable=False, index=True
    )
    opens_on: Mapped[date] = mapped_column(sa.Date, nullable=False)
    closes_on: Mapped[date] = mapped_column(sa.Date, nullable=False)
    status: Mapped[str] = mapped_column(String(8), nullable=False, default=ReviewStatus.OPEN)
    is_manual: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # The last day a reminder went (claimed by a conditional UPDATE: one per day at most).
    last_reminder_on: Mapped[date | None] = mapped_column(sa.Date)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    organisation: Mapped[Organisation] = relationship(lazy="joined")


class ReviewDecision(Base):
    """One account confirmed or suspended in a campaign (one decision per account)."""

    __tablename__ = "review_decision"
    __table_args__ = (
        sa.CheckConstraint("decision IN ('confirmed', 'suspended')", name="decision_known"),
    )

    campaign_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("review_campaign.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    decision: Mapped[str] = mapped_column(String(12), nullable=False)
    decided_by_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="SET NULL")
    )
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
