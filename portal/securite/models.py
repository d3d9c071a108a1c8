"""Security alerts and the state of the alert job (cursor on the audit trail, chain status)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, UTCDateTime, new_id, utcnow


class AlertKind(StrEnum):
    """What an alert is about."""

    LOGIN_FAILURES_ACCOUNT = "login_failures_account"
    LOGIN_FAILURES_IP = "login_failures_ip"
    MFA_REPLAY = "mfa_replay"
    FOREIGN_ACCESS = "foreign_access"
    UNKNOWN_IDS = "unknown_ids"
    DOWNLOAD_SURGE = "download_surge"
    NEW_NETWORK = "new_network"
    CHAIN_BROKEN = "chain_broken"
    STORAGE_INTEGRITY = "storage_integrity"
    MALWARE_DETECTED = "malware_detected"
    ANTIVIRUS_STALE = "antivirus_stale"
    BACKUP_FAILED = "backup_failed"
    ANTIVIRUS_SCAN_FAILING = "antivirus_scan_failing"


ALERT_KIND_LABELS = {
    AlertKind.LOGIN_FAILURES_ACCOUNT: "Échecs de connexion répétés sur un compte",
    AlertKind.LOGIN_FAILURES_IP: "Échecs de connexion répétés depuis une adresse IP",
    AlertKind.MFA_REPLAY: "Rejeu d'un code de double authentification",
    AlertKind.FOREIGN_ACCESS: "Accès refusé aux dépôts d'un autre département",
    AlertKind.UNKNOWN_IDS: "Demandes répétées de dépôts ou de flux inexistants",
    AlertKind.DOWNLOAD_SURGE: "Téléchargements anormalement nombreux",
    AlertKind.NEW_NETWORK: "Connexion d'un compte à privilèges depuis un nouveau réseau",
    AlertKind.CHAIN_BROKEN: "Chaîne du journal d'audit rompue",
    AlertKind.STORAGE_INTEGRITY: "Fichier stocké altéré ou endommagé (contrôle d'intégrité)",
    AlertKind.MALWARE_DETECTED: "Fichier malveillant refusé par l'antivirus",
    AlertKind.ANTIVIRUS_STALE: "Signatures de l'antivirus périmées ou sans date",
    AlertKind.BACKUP_FAILED: "Échec d'une sauvegarde ou d'un exercice de restauration",
    AlertKind.ANTIVIRUS_SCAN_FAILING: "Fichier que l'antivirus n'arrive pas à analyser",
}


class AlertStatus(StrEnum):
    """Life cycle of an alert."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"


ALERT_STATUS_LABELS = {AlertStatus.NEW: "Nouvelle", AlertStatus.ACKNOWLEDGED: "Acquittée"}


class SecurityAlert(Base):
    """One alert: a kind, a scope, a subject (ids only) and how often it was seen."""

    __tablename__ = "security_alert"
    __table_args__ = (
        sa.CheckConstraint("status IN ('new', 'acknowledged')", name="status_known"),
        sa.CheckConstraint("occurrences >= 1", name="occurrences_positive"),
        sa.CheckConstraint("last_seen_at >= first_seen_at", name="seen_in_order"),
        sa.Index("ix_security_alert_open_subject", "kind", "subject_type", "subject_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=AlertStatus.NEW)
    # Scope: who is told. A row with neither is for the national security officers only.
    departement_code: Mapped[str | None] = mapped_column(String(3), index=True)
    organisation_id: Mapped[str | None] = mapped_column(String(32), index=True)
    # Subject: ids only (a user id, an IP or network, "chain"): never a name or a file name.
    subject_type: Mapped[str] = mapped_column(String(16), nullable=False)
    subject_id: Mapped[str] = mapped_column(String(64), nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    occurrences: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    first_event_seq: Mapped[int | None] = mapped_column(BigInteger)
    last_event_seq: Mapped[int | None] = mapped_column(BigInteger)
    details: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("user_account.id", ondelete="SET NULL")
    )

    @property
    def kind_label(self) -> str:
        """French label of the kind."""
        return ALERT_KIND_LABELS[AlertKind(self.kind)]

    @property
    def status_label(self) -> str:
        """French label of the status."""
        return ALERT_STATUS_LABELS[AlertStatus(self.status)]

    @property
    def is_new(self) -> bool:
        """True until a security officer acknowledges it."""
        return self.status == AlertStatus.NEW


class AlertJobState(Base):
    """The single row of the alert job: its cursor on the audit trail and the chain status."""

    __tablename__ = "alert_job_state"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    chain_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    chain_is_valid: Mapped[bool | None] = mapped_column(sa.Boolean)
    chain_checked_rows: Mapped[int | None] = mapped_column(BigInteger)
    chain_first_broken_seq: Mapped[int | None] = mapped_column(BigInteger)
    chain_reason: Mapped[str | None] = mapped_column(String(64))
