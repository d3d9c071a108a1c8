"""What the scheduler knows of each job across servers: the slot claimed and the last outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime


class ScheduledJob(Base):
    """One row per job of the schedule, written by `filr jobs scheduler` on every server.

    `slot_at` is the scheduled instant last claimed: a server claims a slot with one
    conditional UPDATE, so that two schedulers never both run the 03:15 run of a job.
    """

    __tablename__ = "scheduled_job"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    # Consecutive failed attempts (0 after a success): what the retries and the alert read.
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
