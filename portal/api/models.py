"""Personal API access tokens: only a digest of the secret is stored."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, utcnow

MAX_TOKEN_LIFETIME = timedelta(days=365)


class ApiScope(StrEnum):
    """What a token may do: read (list, get, download) or deposit (create, upload, publish,
    withdraw)."""

    READ = "read"
    DEPOSIT = "deposit"


SCOPE_LABELS = {
    ApiScope.READ: "Lecture : lister, consulter et télécharger les dépôts",
    ApiScope.DEPOSIT: "Dépôt : créer, compléter, envoyer et retirer des dépôts",
}


class ApiToken(Base):
    """A personal access token of one user, scoped and expiring (one year at most)."""

    __tablename__ = "api_token"
    __table_args__ = (sa.CheckConstraint("expires_at > created_at", name="expires_after_creation"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # The first characters of the secret, so that its owner recognises it in the list.
    token_prefix: Mapped[str] = mapped_column(String(8), nullable=False)
    # SHA-256 of the whole token: 256 random bits need no slow hash (as for sessions).
    token_digest: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    scope_rows: Mapped[list[ApiTokenScope]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="token"
    )

    @property
    def scopes(self) -> frozenset[ApiScope]:
        """The scopes this token holds."""
        return frozenset(ApiScope(r.scope) for r in self.scope_rows)

    def is_usable(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and (now or utcnow()) < self.expires_at

    @property
    def state_label(self) -> str:
        """French label of the token's state."""
        if self.revoked_at is not None:
            return "Révoqué"
        return "Actif" if self.is_usable() else "Expiré"


class ApiTokenScope(Base):
    """One scope held by one token (a table, as roles are, so that scopes can be added)."""

    __tablename__ = "api_token_scope"
    __table_args__ = (sa.CheckConstraint("scope IN ('read', 'deposit')", name="scope_known"),)

    token_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("api_token.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)

    token: Mapped[ApiToken] = relationship(back_populates="scope_rows")
