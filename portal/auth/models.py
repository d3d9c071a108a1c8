"""Server-side sessions and throttling counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import UniqueConstraint

from portal.db import Base, UTCDateTime, new_id


class ServerSession(Base):
    """A browser session; the cookie holds a random token, the table only its digest."""

    __tablename__ = "server_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(token)
    user_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    mfa_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    data: Mapped[str] = mapped_column(Text, nullable=False, default="{}")


class ThrottleEvent(Base):
    """One failed attempt under a throttling key (used when Redis is not configured)."""

    __tablename__ = "throttle_event"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


class SecurityKey(Base):
    """A WebAuthn credential (security key or passkey) enrolled as a second factor."""

    __tablename__ = "security_key"
    __table_args__ = (CheckConstraint("sign_count >= 0", name="sign_count"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False, index=True
    )
    # base64url of the credential id the authenticator chose (at most 1023 bytes, WebAuthn L3).
    credential_id: Mapped[str] = mapped_column(String(1400), nullable=False, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # COSE key
    sign_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FederatedIdentity(Base):
    """The link between an account and its identity at a federation (ProConnect).

    Made once the person has also logged in with password and second factor
    (`portal.auth.proconnect`); afterwards the provider's (issuer, sub) alone finds the
    account: a change of e-mail address at the provider does not move the link.
    """

    __tablename__ = "federated_identity"
    __table_args__ = (
        UniqueConstraint("issuer", "subject", name="uq_federated_identity_issuer_subject"),
        UniqueConstraint("user_id", "issuer", name="uq_federated_identity_user_issuer"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False, index=True
    )
    issuer: Mapped[str] = mapped_column(String(255), nullable=False)
    subject: Mapped[str] = mapped_column(String(255), nullable=False)
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
