"""Deposits, their files, recipients, download receipts and per-recipient counters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, UTCDateTime, new_id, utcnow

MAX_LIFETIME = timedelta(days=90)


class Category(StrEnum):
    """What a deposit carries."""

    FICHE_LIAISON = "fiche_liaison"
    FLUX_XML = "flux_xml"
    DOCUMENT = "document"
    # The weekly files of the experimentation conventions: "un délai d'expiration court".
    HEBDO_EXPERIMENTATION = "hebdo_experimentation"


CATEGORY_LABELS = {
    Category.FICHE_LIAISON: "Fiche de liaison",
    Category.FLUX_XML: "Flux XML",
    Category.DOCUMENT: "Document",
    Category.HEBDO_EXPERIMENTATION: "Fichier hebdomadaire d'expérimentation",
}

# Categories whose title the portal writes (the label and the date of the deposit): their
# sender types none, so no personal data can slip into the lists (flows get theirs from
# portal.flows). Only a document keeps a title typed by its sender.
DATED_TITLE_CATEGORIES = frozenset({Category.FICHE_LIAISON, Category.HEBDO_EXPERIMENTATION})


class Reason(StrEnum):
    """Why a deposit is sent: a short closed list instead of a free-text message (the
    conventions: "aucune rubrique permettant du texte libre", "sans ajout de commentaires")."""

    TRANSMISSION_REGULIERE = "transmission_reguliere"
    COMPLEMENT_DEMANDE = "complement_demande"
    CORRECTION = "correction"
    SUITE_A_DONNER = "suite_a_donner"
    POUR_INFORMATION = "pour_information"


# The one place where the reasons and their French labels are listed (web form, API, OpenAPI,
# deposit page); migration 0017 copies the codes into the check constraint.
REASON_LABELS = {
    Reason.TRANSMISSION_REGULIERE: "Transmission régulière (hebdomadaire, mensuelle)",
    Reason.COMPLEMENT_DEMANDE: "Complément demandé",
    Reason.CORRECTION: "Correction d'un envoi précédent",
    Reason.SUITE_A_DONNER: "Pour suite à donner",
    Reason.POUR_INFORMATION: "Pour information",
}


def _in_list(column: str, values: Iterable[StrEnum]) -> str:
    """SQL `column IN ('a', 'b')` for the members of an enumeration (codes without quotes)."""
    codes = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({codes})"


class ScanStatus(StrEnum):
    """What the antivirus said of a file: clean, not yet (clamd unavailable), or let through."""

    CLEAN = "clean"
    PENDING = "pending"
    # Let through unscanned by FILR_ANTIVIRUS_BYPASS while clamd was unavailable (audited).
    BYPASSED = "bypassed"
    # Deposited before the portal had an antivirus (migration 0012).
    UNSCANNED = "unscanned"


class DepositStatus(StrEnum):
    """Life cycle: draft while files upload, then available until withdrawn or expired."""

    DRAFT = "draft"
    AVAILABLE = "available"
    WITHDRAWN = "withdrawn"
    DESTROYED = "destroyed"


STATUS_LABELS = {
    DepositStatus.DRAFT: "Brouillon",
    DepositStatus.AVAILABLE: "Disponible",
    DepositStatus.WITHDRAWN: "Retiré",
    DepositStatus.DESTROYED: "Détruit",
}


class Deposit(Base):
    """One deposit in one département space."""

    __tablename__ = "deposit"
    __table_args__ = (
        sa.CheckConstraint("expires_at > created_at", name="expires_after_creation"),
        sa.CheckConstraint(
            "status IN ('draft', 'available', 'withdrawn', 'destroyed')", name="status_known"
        ),
        sa.CheckConstraint(_in_list("category", Category), name="category_known"),
        sa.CheckConstraint(f"reason IS NULL OR {_in_list('reason', Reason)}", name="reason_known"),
        sa.CheckConstraint(
            "max_downloads IS NULL OR max_downloads > 0", name="max_downloads_positive"
        ),
        sa.Index("ix_deposit_space_created", "departement_code", "created_at", "id"),
        # The inbox sorted by title: keyset pages read in index order instead of sorting the space.
        sa.Index("ix_deposit_space_title", "departement_code", "title_sort", "id"),
        # The same two orders across spaces: a user of several départements (a France Travail
        # territory, a national structure) reads a page in index order, skipping the rows of
        # other spaces, instead of sorting all of its spaces (benchmarks/http_throughput.py).
        sa.Index("ix_deposit_created", "created_at", "id"),
        sa.Index("ix_deposit_title", "title_sort", "id"),
        *(
            # Substring search (PostgreSQL, pg_trgm): one trigram index per category, so that a
            # search reads only the matches of the categories its user may see (an agent
            # searching "cgpem" does not read every flow). Created by migration 0008 where the
            # extension can be; without them (SQLite, no pg_trgm) the search stays correct.
            sa.Index(
                f"ix_deposit_title_trgm_{category}",
                "title_sort",
                postgresql_using="gin",
                postgresql_ops={"title_sort": "gin_trgm_ops"},
                postgresql_where=sa.text(f"category = '{category}'"),
                info={"requires_extension": "pg_trgm"},
            ).ddl_if(dialect="postgresql")
            for category in Category
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    departement_code: Mapped[str] = mapped_column(
        String(3), ForeignKey("departement.code"), nullable=False
    )
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    # Lower case without accents: French sorting and accent-blind search on every database.
    title_sort: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # One of `Reason` (no free-text message: migration 0017 erased the old ones).
    reason: Mapped[str | None] = mapped_column(String(32))
    sender_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id"), nullable=False, index=True
    )
    sender_org_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("organisation.id"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=DepositStatus.DRAFT)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    max_downloads: Mapped[int | None] = mapped_column(Integer)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    taken_by_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("user_account.id"))
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_7_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_1_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Its sender sent it while a file's scan was still pending: it stays a draft, invisible to
    # its recipients, until `filr jobs antivirus` has scanned every file, then is published.
    held_for_scan_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    files: Mapped[list[DepositFile]] = relationship(
        back_populates="deposit", lazy="selectin", order_by="DepositFile.created_at"
    )
    recipients: Mapped[list[DepositRecipient]] = relationship(
        back_populates="deposit", lazy="selectin", cascade="all, delete-orphan"
    )

    def is_expired(self, now: datetime | None = None) -> bool:
        """True once the expiry date has passed, even before the purge has run."""
        return (now or utcnow()) >= self.expires_at

    def is_downloadable(self, now: datetime | None = None) -> bool:
        """Available and not expired."""
        return self.status == DepositStatus.AVAILABLE and not self.is_expired(now)

    @property
    def deposited_at(self) -> datetime:
        """When the deposit reached its recipients (its creation while still a draft): the one
        instant the inbox and the deposit page both show."""
        return self.published_at or self.created_at

    @property
    def category_label(self) -> str:
        """French label of the category."""
        return CATEGORY_LABELS[Category(self.category)]

    @property
    def reason_label(self) -> str | None:
        """French label of the reason, if the sender gave one."""
        return REASON_LABELS[Reason(self.reason)] if self.reason else None

    @property
    def is_held_for_scan(self) -> bool:
        """True while a sent deposit waits for the antivirus ("analyse en attente")."""
        return self.status == DepositStatus.DRAFT and self.held_for_scan_at is not None

    @property
    def status_label(self) -> str:
        """French label of the status (expired deposits read "Expiré")."""
        if self.status == DepositStatus.AVAILABLE and self.is_expired():
            return "Expiré"
        if self.is_held_for_scan:
            return "Analyse antivirus en attente"
        return STATUS_LABELS[DepositStatus(self.status)]

    @property
    def is_removal_pending(self) -> bool:
        """True while a destroyed file's ciphertext is not yet known to be out of the store."""
        return any(f.destroyed_at is not None and f.removed_at is None for f in self.files)


class DepositFile(Base):
    """One encrypted file of a deposit; the object key is ours, the name only shown."""

    __tablename__ = "deposit_file"
    __table_args__ = (
        # The purge's "ciphertexts still to remove" (removed_at IS NULL, destroyed_at IS NOT
        # NULL) is a range of this index, not a scan of every file ever deposited.
        sa.Index("ix_deposit_file_removal", "removed_at", "destroyed_at"),
        sa.CheckConstraint(
            "scan_status IN ('clean', 'pending', 'bypassed', 'unscanned')",
            name="scan_status_known",
        ),
        # The antivirus job's work list: files whose scan is pending.
        sa.Index("ix_deposit_file_scan_status", "scan_status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deposit_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("deposit.id"), nullable=False, index=True
    )
    object_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    filename: Mapped[str] = mapped_column(String(200), nullable=False)
    content_type: Mapped[str] = mapped_column(String(120), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the object store confirmed the ciphertext gone; NULL on a destroyed file while the
    # store could not be reached (the purge's `finish_destructions` retries it).
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scan_status: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default=ScanStatus.UNSCANNED
    )
    # Failed clamd attempts on this pending file (no verdict); an alert at the setting's count.
    scan_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")

    deposit: Mapped[Deposit] = relationship(back_populates="files")


class ResumableUpload(Base):
    """A file being uploaded in pieces (tus): where it stands, to go on after a cut or a restart.

    The data key is kept wrapped by the département key, as in the key store; the digest state
    is the SHA-256 midstate of what was received (storage.resumable). The row disappears when
    the file joins its deposit, when its sender ends it, or when the purge finds it expired.
    """

    __tablename__ = "resumable_upload"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deposit_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("deposit.id"), nullable=False, index=True
    )
    user_id: Mapped[str] = mapped_column(String(32), nullable=False)
    departement_code: Mapped[str] = mapped_column(String(3), nullable=False)
    file_id: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    object_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    filename: Mapped[str] = mapped_column(String(200), nullable=False)
    length: Mapped[int] = mapped_column(BigInteger, nullable=False)
    offset: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    kek_version: Mapped[int] = mapped_column(Integer, nullable=False)
    wrapped_key: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    header: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    store_upload_id: Mapped[str] = mapped_column(String(1024), nullable=False)
    digest_state: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)
    # [[part number, ETag], ...] as JSON text.
    parts: Mapped[str] = mapped_column(sa.Text, nullable=False, default="[]")
    # Set while one PATCH works on the upload (a conditional UPDATE claims it): a second
    # PATCH at the same time gets 409 instead of writing the same part with the same nonces.
    busy_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)


class DepositRecipient(Base):
    """A recipient: an organisation of the space (shared inbox) or a named user."""

    __tablename__ = "deposit_recipient"
    __table_args__ = (
        sa.CheckConstraint(
            "(organisation_id IS NULL) != (user_id IS NULL)", name="organisation_xor_user"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deposit_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("deposit.id"), nullable=False, index=True
    )
    organisation_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("organisation.id"), index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("user_account.id"), index=True
    )

    deposit: Mapped[Deposit] = relationship(back_populates="recipients")


class DownloadReceipt(Base):
    """Acknowledgement of receipt: who downloaded which file, when."""

    __tablename__ = "download_receipt"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    deposit_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("deposit.id"), nullable=False, index=True
    )
    file_id: Mapped[str] = mapped_column(String(32), ForeignKey("deposit_file.id"), nullable=False)
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("user_account.id"), nullable=False)
    downloaded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class DownloadCounter(Base):
    """Downloads of one deposit by one user, for the optional per-recipient maximum."""

    __tablename__ = "download_counter"

    deposit_id: Mapped[str] = mapped_column(String(32), ForeignKey("deposit.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("user_account.id"), primary_key=True
    )
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
