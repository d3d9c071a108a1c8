"""The restore guard: present while a restored database has not been purged yet."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime


class RestoreGuard(Base):
    """One row from the moment a dump is restored until the purge after it has succeeded.

    While it is there the portal does not serve (`filr serve` and `portal.wsgi` refuse to
    start): a restored dump holds the data keys of deposits that expired since the backup.
    """

    __tablename__ = "restore_guard"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backup_id: Mapped[str] = mapped_column(String(32), nullable=False)
    restored_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
