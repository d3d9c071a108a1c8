"""The verbs of deposits: create, upload, publish, link, download, withdraw, purge.

No request and no flash here: callers pass the session, the services and the audit context.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

import audit
import storage
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, User
from portal.db import new_id, utcnow
from portal.deposits.models import (
    MAX_LIFETIME,
    Category,
    Deposit,
    DepositFile,
    DepositRecipient,
    DepositStatus,
    DownloadCounter,
    DownloadReceipt,
)
from portal.deposits.permissions import (
    CATEGORY_ROLE,
    can_download,
    can_see_deposit,
    can_withdraw,
    categories_of,
    is_sender_side,
)
from portal.deposits.sniff import TypeSniffer, safe_filename
from portal.orgs.models import Organisation
from portal.orgs.permissions import may_exchange, spaces_of
from portal.text import fold
from storage.sql import storage_data_key

LINK_MAX_AGE = 300  # seconds: download links live five minutes
LINK_SALT = "filr.download-link.v1"

log = logging.getLogger(__name__)


class DepositError(ValueError):
    """A request on a deposit cannot be carried out (French message for people)."""

    code = "invalid"


class FileRefused(DepositError):
    """An uploaded file is refused (type, size, empty)."""

    code = "file_refused"


class FileTooLarge(FileRefused):
    """The upload exceeds the size limit."""

    code = "file_too_large"


class LinkRefused(DepositError):
    """A download link is invalid, expired, for someone else, or no longer allowed."""

    code = "link_refused"


def _target(deposit: Deposit, kind: str = "deposit", target_id: str | None = None) -> audit.Target:
    return audit.Target(kind, target_id or deposit.id, deposit.departement_code)


# --- reading -------------------------------------------------------------------------------


def find_deposit(
    session: Session, user: User, deposit_id: str, ctx: audit.Context
) -> Deposit | None:
    """The deposit if *user* may see it; None (the caller answers 404) otherwise, audited."""
    deposit = session.get(Deposit, deposit_id) if len(deposit_id) == 32 else None
    if deposit is not None and can_see_deposit(user, deposit):
        return deposit
    audit.record(
        session,
        AuditAction.ACCESS_DENIED,
        actor=user.audit_actor,
        context=ctx,
        outcome=Outcome.DENIED,
        target=audit.Target(
            "deposit", deposit_id[:64], deposit.departement_code if deposit else None
        ),
        details={"reason": "not_visible" if deposit else "unknown"},
    )
    session.commit()
    return None


def recipient_choices(session: Session, sender: User, departement: str) -> list[Organisation]:
    """Organisations *sender* may address in the space of *departement*."""
    if departement not in spaces_of(sender):
        return []
    orgs = session.execute(sa.select(Organisation).order_by(Organisation.name)).scalars()
    return [o for o in orgs if may_exchange(sender.organisation, o, departement)]


# --- creating ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewDeposit:
    """What a sender asks for; validated by `create_deposit`."""

    departement: str
    category: Category
    title: str
    message: str | None = None
    recipient_org_ids: Sequence[str] = ()
    recipient_user_ids: Sequence[str] = ()
    lifetime_days: int = 90
    max_downloads: int | None = None


_FLOWS_ONLY = (
    "Les flux XML se déposent depuis la page « Flux XML » (ou POST /api/v1/flows) : "
    "ils y sont vérifiés avant d'être transmis."
)


def _only_through_flows(deposit: Deposit, validated_flow: bool) -> None:
    """Refuse to change a `flux_xml` draft other than through `deposit_flow`.

    The flow's draft is its sender's while it is uploaded and validated: the generic routes
    must neither add a file to it (delivered unvalidated with the flow) nor publish it early.
    """
    if deposit.category == Category.FLUX_XML and not validated_flow:
        raise DepositError(_FLOWS_ONLY)


def create_deposit(
    session: Session,
    sender: User,
    request: NewDeposit,
    ctx: audit.Context,
    *,
    validated_flow: bool = False,
) -> Deposit:
    """Create a draft deposit (invisible to recipients until `publish`).

    A `flux_xml` deposit is only created by `portal.flows.services.deposit_flow`
    (*validated_flow*), which publishes it only once the file passed validation.
    """
    if request.departement not in spaces_of(sender):
        raise DepositError("Vous n'avez pas accès à cet espace départemental.")
    if request.category not in categories_of(sender):
        raise DepositError("Votre rôle ne permet pas de déposer ce type de contenu.")
    if request.category is Category.FLUX_XML and not validated_flow:
        raise DepositError(_FLOWS_ONLY)
    title = " ".join(request.title.split())
    if not 1 <= len(title) <= 200:
        raise DepositError("Le titre est obligatoire (200 caractères au plus).")
    message = (request.message or "").strip() or None
    if message and len(message) > 1000:
        raise DepositError("Le message ne doit pas dépasser 1 000 caractères.")
    if not 1 <= request.lifetime_days <= MAX_LIFETIME.days:
        raise DepositError("La durée de conservation doit être comprise entre 1 et 90 jours.")
    if request.max_downloads is not None and not 1 <= request.max_downloads <= 100:
        raise DepositError("Le nombre maximal de téléchargements doit être compris entre 1 et 100.")
    if not request.recipient_org_ids and not request.recipient_user_ids:
        raise DepositError("Choisissez au moins un destinataire.")
    allowed = {o.id: o for o in recipient_choices(session, sender, request.departement)}
    recipients: list[DepositRecipient] = []
    for org_id in dict.fromkeys(request.recipient_org_ids):
        if org_id not in allowed:
            raise DepositError("Destinataire non autorisé pour cet espace.")
        recipients.append(DepositRecipient(organisation_id=org_id))
    role = CATEGORY_ROLE[request.category]
    for user_id in dict.fromkeys(request.recipient_user_ids):
        target = session.get(User, user_id) if len(user_id) == 32 else None
        if (
            target is None
            or target.organisation_id not in allowed
            or target.status != AccountStatus.ACTIVE
            or not target.has_role(role)
        ):
            raise DepositError("Destinataire non autorisé pour cet espace.")
        recipients.append(DepositRecipient(user_id=user_id))
    now = utcnow()
    deposit = Deposit(
        id=new_id(),
        departement_code=request.departement,
        category=request.category,
        title=title,
        title_sort=fold(title),
        message=message,
        sender_id=sender.id,
        sender_org_id=sender.organisation_id,
        status=DepositStatus.DRAFT,
        created_at=now,
        expires_at=now + timedelta(days=request.lifetime_days),
        max_downloads=request.max_downloads,
    )
    deposit.recipients = recipients
    session.add(deposit)
    session.flush()
    audit.record(
        session,
        AuditAction.DEPOSIT_CREATED,
        actor=sender.audit_actor,
        context=ctx,
        target=_target(deposit),
        details={
            "category": str(request.category),
            "recipients": len(recipients),
            "lifetime_days": request.lifetime_days,
        },
    )
    return deposit


@dataclass
class _Guard:
    """Counts bytes and feeds the type sniffer while the upload streams into the store."""

    sniffer: TypeSniffer
    limit: int
    size: int = 0
    refused: FileRefused | None = field(default=None)

    def wrap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        checked_head = False
        for chunk in chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self.limit:
                self.refused = FileTooLarge(
                    f"Fichier trop volumineux : la taille maximale est de {_human(self.limit)}."
                )
                raise self.refused
            self.sniffer.feed(chunk)
            if not checked_head:
                verdict = self.sniffer.early_verdict()
                if verdict is not None:
                    checked_head = True
                    if not verdict.ok:
                        self.refused = FileRefused(verdict.message_fr)
                        raise self.refused
            yield chunk


def _human(size: int) -> str:
    if size >= 1024**3:
        return f"{size / 1024**3:.0f} Gio"
    return f"{size / 1024**2:.0f} Mio"


def add_file(
    session: Session,
    store: storage.EncryptedStore,
    uploader: User,
    deposit: Deposit,
    filename: str,
    chunks: Iterable[bytes],
    *,
    size_limit: int,
    ctx: audit.Context,
    validated_flow: bool = False,
) -> DepositFile:
    """Stream one file into the encrypted store and attach it to a draft deposit.

    The request's transaction is committed before the upload so that no database lock is held
    while bytes arrive; on any failure the object is destroyed and nothing is attached.
    """
    if deposit.status != DepositStatus.DRAFT or uploader.id != deposit.sender_id:
        raise DepositError("Ce dépôt n'accepte plus de fichiers.")
    _only_through_flows(deposit, validated_flow)
    display_name = safe_filename(filename)
    deposit_id, departement = deposit.id, deposit.departement_code
    file_id = new_id()
    object_key = f"deposits/{deposit_id}/{file_id}"
    session.commit()
    guard = _Guard(TypeSniffer(display_name), size_limit)
    try:
        store.keyring.ensure(departement)  # the space's first file creates its key
        stored = store.put(object_key, guard.wrap(chunks), departement=departement)
    except FileRefused:
        _destroy_quietly(store, object_key)
        raise
    except storage.StorageError:
        _destroy_quietly(store, object_key)
        if guard.refused is not None:
            raise guard.refused from None
        raise
    except BaseException:
        _destroy_quietly(store, object_key)
        raise
    verdict = guard.sniffer.finish()
    if not verdict.ok or stored.size == 0:
        _destroy_quietly(store, object_key)
        message = verdict.message_fr if not verdict.ok else "Le fichier est vide."
        audit.record(
            session,
            AuditAction.FILE_REFUSED,
            actor=uploader.audit_actor,
            context=ctx,
            outcome=Outcome.FAILURE,
            target=audit.Target("deposit", deposit_id, departement),
            details={"reason": verdict.reason if not verdict.ok else "empty", "size": stored.size},
        )
        session.commit()
        raise FileRefused(message)
    try:
        # Re-read under the new transaction: the deposit may have been withdrawn meanwhile.
        current = session.get(Deposit, deposit_id, populate_existing=True)
        if current is None or current.status != DepositStatus.DRAFT:
            raise DepositError("Ce dépôt n'accepte plus de fichiers.")
        record = DepositFile(
            id=file_id,
            deposit_id=deposit_id,
            object_key=object_key,
            filename=display_name,
            content_type=verdict.content_type or "application/octet-stream",
            size=stored.size,
            sha256=stored.sha256,
            created_at=utcnow(),
        )
        session.add(record)
        audit.record(
            session,
            AuditAction.FILE_UPLOADED,
            actor=uploader.audit_actor,
            context=ctx,
            target=audit.Target("file", file_id, departement),
            details={"deposit_id": deposit_id, "size": stored.size, "kind": str(verdict.kind)},
        )
        session.commit()
    except BaseException:
        session.rollback()
        _destroy_quietly(store, object_key)
        raise
    return record


def _destroy_quietly(store: storage.EncryptedStore, object_key: str) -> None:
    # What cannot be removed now is found by the orphan cleanup job.
    with contextlib.suppress(storage.StorageError):
        store.delete(object_key)


def publish(
    session: Session,
    sender: User,
    deposit: Deposit,
    ctx: audit.Context,
    *,
    validated_flow: bool = False,
) -> None:
    """Make a draft visible to its recipients (notifications are sent by the caller)."""
    if deposit.status != DepositStatus.DRAFT or sender.id != deposit.sender_id:
        raise DepositError("Ce dépôt a déjà été envoyé.")
    _only_through_flows(deposit, validated_flow)
    if not deposit.files:
        raise DepositError("Ajoutez au moins un fichier avant d'envoyer le dépôt.")
    if deposit.is_expired():
        raise DepositError("Ce brouillon a expiré : créez un nouveau dépôt.")
    deposit.status = DepositStatus.AVAILABLE
    deposit.published_at = utcnow()
    audit.record(
        session,
        AuditAction.DEPOSIT_PUBLISHED,
        actor=sender.audit_actor,
        context=ctx,
        target=_target(deposit),
        details={"files": len(deposit.files)},
    )


def recipient_users(session: Session, deposit: Deposit) -> list[User]:
    """Active users who receive *deposit* (named ones and the recipient organisations' members)."""
    role = CATEGORY_ROLE[Category(deposit.category)]
    org_ids = [r.organisation_id for r in deposit.recipients if r.organisation_id]
    user_ids = [r.user_id for r in deposit.recipients if r.user_id]
    users = session.execute(
        sa.select(User).where(
            User.status == AccountStatus.ACTIVE,
            sa.or_(User.organisation_id.in_(org_ids), User.id.in_(user_ids)),
        )
    ).scalars()
    return [u for u in users if u.has_role(role) and can_see_deposit(u, deposit)]


def receipts_of(session: Session, deposit: Deposit) -> list[tuple[DownloadReceipt, User]]:
    """The acknowledgement of receipt: who downloaded which file of *deposit*, oldest first."""
    rows = session.execute(
        sa.select(DownloadReceipt, User)
        .join(User, User.id == DownloadReceipt.user_id)
        .where(DownloadReceipt.deposit_id == deposit.id)
        .order_by(DownloadReceipt.downloaded_at)
    ).all()
    return [(receipt, who) for receipt, who in rows]


# --- links and downloads -------------------------------------------------------------------


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=LINK_SALT)


def issue_link(
    session: Session,
    secret_key: str,
    user: User,
    deposit: Deposit,
    file: DepositFile,
    ctx: audit.Context,
) -> str:
    """A signed token bound to user, file, département and purpose, valid five minutes."""
    if not can_download(user, deposit) or file.deposit_id != deposit.id or file.destroyed_at:
        raise LinkRefused("Ce fichier n'est plus disponible.")
    token = _serializer(secret_key).dumps(
        {"u": user.id, "f": file.id, "d": deposit.departement_code, "p": "download"}
    )
    audit.record(
        session,
        AuditAction.LINK_ISSUED,
        actor=user.audit_actor,
        context=ctx,
        target=audit.Target("file", file.id, deposit.departement_code),
        details={"deposit_id": deposit.id},
    )
    session.commit()
    return token


def _refuse_link(
    session: Session,
    user: User,
    reason: str,
    ctx: audit.Context,
    target: audit.Target | None = None,
) -> LinkRefused:
    audit.record(
        session,
        AuditAction.LINK_REFUSED,
        actor=user.audit_actor,
        context=ctx,
        outcome=Outcome.DENIED,
        target=target,
        details={"reason": reason},
    )
    session.commit()
    return LinkRefused("Ce lien de téléchargement n'est pas valable ou a expiré.")


@dataclass(frozen=True)
class Download:
    """A file ready to stream, the check and the receipt done."""

    file: DepositFile
    deposit: Deposit
    chunks: Iterator[bytes]


def _expired_link_target(
    session: Session, serializer: URLSafeTimedSerializer, raw: object
) -> audit.Target | None:
    try:
        payload = serializer.load_payload(raw) if isinstance(raw, bytes) else None
    except BadSignature:
        return None
    file_id = str(payload.get("f", ""))[:64] if isinstance(payload, dict) else ""
    file = session.get(DepositFile, file_id) if len(file_id) == 32 else None
    deposit = session.get(Deposit, file.deposit_id) if file else None
    if not file_id:
        return None
    return audit.Target("file", file_id, deposit.departement_code if deposit else None)


def redeem_link(
    session: Session,
    store: storage.EncryptedStore,
    secret_key: str,
    user: User,
    token: str,
    ctx: audit.Context,
) -> Download:
    """Check a link again at use (signature, age, user, rights, expiry, counter); open the file."""
    serializer = _serializer(secret_key)
    try:
        payload = serializer.loads(token, max_age=LINK_MAX_AGE)
    except SignatureExpired as e:
        # The signature checked out, only the age did not: the payload is authentic, so the
        # audit row can name the file and its département (taken from the database).
        expired = _expired_link_target(session, serializer, e.payload)
        raise _refuse_link(session, user, "expired", ctx, expired) from None
    except BadSignature:
        raise _refuse_link(session, user, "invalid", ctx) from None
    if not isinstance(payload, dict) or payload.get("p") != "download":
        raise _refuse_link(session, user, "wrong_purpose", ctx)
    file = session.get(DepositFile, str(payload.get("f", "")))
    deposit = session.get(Deposit, file.deposit_id) if file else None
    target = audit.Target(
        "file", str(payload.get("f"))[:64], deposit.departement_code if deposit else None
    )
    if payload.get("u") != user.id:
        raise _refuse_link(session, user, "other_user", ctx, target)
    if file is None or deposit is None or payload.get("d") != deposit.departement_code:
        raise _refuse_link(session, user, "unknown_file", ctx, target)
    if not can_see_deposit(user, deposit):
        raise _refuse_link(session, user, "forbidden", ctx, target)
    if not deposit.is_downloadable() or file.destroyed_at is not None:
        raise _refuse_link(session, user, "expired_deposit", ctx, target)
    object_key = file.object_key
    # No transaction is held while the store is asked (see `destroy_content`).
    session.commit()
    try:
        chunks = store.open(object_key)
    except storage.StorageError as e:
        raise _refuse_link(session, user, "unavailable", ctx, target) from e
    limited = deposit.max_downloads is not None and not is_sender_side(user, deposit)
    if limited and not _take_download_slot(session, deposit, user):
        _close(chunks)
        raise _refuse_link(session, user, "max_downloads", ctx, target)
    session.add(
        DownloadReceipt(
            deposit_id=deposit.id, file_id=file.id, user_id=user.id, downloaded_at=utcnow()
        )
    )
    audit.record(
        session,
        AuditAction.FILE_DOWNLOADED,
        actor=user.audit_actor,
        context=ctx,
        target=target,
        details={"deposit_id": deposit.id, "size": file.size},
    )
    session.commit()
    return Download(file, deposit, chunks)


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _take_download_slot(session: Session, deposit: Deposit, user: User) -> bool:
    """Atomically count one download; False when the maximum is reached."""
    assert deposit.max_downloads is not None  # noqa: S101 - checked by the caller
    exists = session.get(DownloadCounter, (deposit.id, user.id))
    if exists is None:
        session.add(DownloadCounter(deposit_id=deposit.id, user_id=user.id, count=0))
        try:
            session.flush()
        except sa.exc.IntegrityError:
            session.rollback()  # a concurrent first download created it: fall through
    # One UPDATE with the bound in its WHERE: of two simultaneous last downloads, one wins.
    result = session.execute(
        sa.update(DownloadCounter)
        .where(
            DownloadCounter.deposit_id == deposit.id,
            DownloadCounter.user_id == user.id,
            DownloadCounter.count < deposit.max_downloads,
        )
        .values(count=DownloadCounter.count + 1)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# --- taking in charge, withdrawing, purging ---------------------------------------------------


def take_in_charge(session: Session, user: User, deposit: Deposit, ctx: audit.Context) -> None:
    """Mark a deposit of the organisation's shared inbox as handled by *user*."""
    if deposit.status != DepositStatus.AVAILABLE or not any(
        r.organisation_id == user.organisation_id for r in deposit.recipients
    ):
        raise DepositError("Ce dépôt ne peut pas être pris en charge.")
    deposit.taken_by_id = user.id
    deposit.taken_at = utcnow()
    audit.record(
        session,
        AuditAction.DEPOSIT_TAKEN,
        actor=user.audit_actor,
        context=ctx,
        target=_target(deposit),
    )


def destroy_content(
    session: Session,
    store: storage.EncryptedStore,
    deposit_id: str,
    *,
    reason: str,
    actor: audit.Actor,
    ctx: audit.Context,
) -> int | None:
    """Shred and delete every file of a deposit; exactly one destruction entry in the trail.

    Fail closed: the deposit is marked destroyed and the destruction recorded in one committed
    transaction *before* any key is shredded, so a destruction whose row cannot be written does
    not happen. The store is called after the commit (the key store writes through its own
    connection, which on SQLite would otherwise wait for the lock this session holds); if it
    fails half-way, the deposit is already out of reach and `finish_destructions` shreds what is
    left at the purge's next run. Returns the number of files, or None if another run (or
    server) destroyed the deposit first.
    """
    now = utcnow()
    won = session.execute(
        sa.update(Deposit)
        .where(Deposit.id == deposit_id, Deposit.status != DepositStatus.DESTROYED)
        .values(status=DepositStatus.DESTROYED, destroyed_at=now)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return None
    keys = list(
        session.execute(
            sa.select(DepositFile.object_key).where(
                DepositFile.deposit_id == deposit_id, DepositFile.destroyed_at.is_(None)
            )
        ).scalars()
    )
    session.execute(
        sa.update(DepositFile)
        .where(DepositFile.deposit_id == deposit_id, DepositFile.destroyed_at.is_(None))
        .values(destroyed_at=now)
    )
    departement = session.execute(
        sa.select(Deposit.departement_code).where(Deposit.id == deposit_id)
    ).scalar_one()
    audit.record(
        session,
        AuditAction.DEPOSIT_DESTROYED,
        actor=actor,
        context=ctx,
        target=audit.Target("deposit", deposit_id, departement),
        details={"reason": reason, "files": len(keys)},
    )
    session.commit()
    for key in keys:
        store.delete(key)  # shreds the data key first, then removes the ciphertext
    return len(keys)


def finish_destructions(
    session: Session, store: storage.EncryptedStore, *, dry_run: bool = False
) -> int:
    """Shred the files of destroyed deposits whose data key is still live; return how many.

    They are left by a destruction whose store call failed after it was recorded (see
    `destroy_content`); the application never serves them (their deposit is destroyed).
    Only live data keys are scanned, and each is matched to a destroyed file by its key.
    """
    keys = list(
        session.execute(
            sa.select(DepositFile.object_key)
            .join(
                storage_data_key,
                storage_data_key.c.object_key == DepositFile.object_key,
            )
            .where(
                DepositFile.destroyed_at.is_not(None),
                storage_data_key.c.shredded_at.is_(None),
            )
        ).scalars()
    )
    session.commit()  # no transaction held while the key store is asked
    if keys and not dry_run:
        for key in keys:
            store.delete(key)
        log.warning("%d file(s) of destroyed deposits shredded late", len(keys))
    return len(keys)


def withdraw(
    session: Session,
    store: storage.EncryptedStore,
    user: User,
    deposit: Deposit,
    ctx: audit.Context,
) -> None:
    """Withdraw a deposit before its expiry: its content is destroyed at once.

    The withdrawal is committed first, so that if destruction fails half-way the deposit is
    already out of reach and the purge job finishes the destruction.
    """
    if not can_withdraw(user, deposit):
        raise DepositError("Vous ne pouvez pas retirer ce dépôt.")
    deposit.status = DepositStatus.WITHDRAWN
    deposit.withdrawn_at = utcnow()
    audit.record(
        session,
        AuditAction.DEPOSIT_WITHDRAWN,
        actor=user.audit_actor,
        context=ctx,
        target=_target(deposit),
    )
    session.commit()
    destroy_content(session, store, deposit.id, reason="withdrawn", actor=user.audit_actor, ctx=ctx)


@dataclass
class PurgeReport:
    """What the purge did (or would do, with --dry-run)."""

    expired: int = 0
    withdrawn: int = 0
    abandoned_drafts: int = 0
    files_destroyed: int = 0
    dry_run: bool = False
    deposit_ids: list[str] = field(default_factory=list)


def _due(now: datetime) -> sa.ColumnElement[bool]:
    draft_deadline = now - timedelta(hours=24)
    return sa.or_(
        sa.and_(Deposit.status == DepositStatus.AVAILABLE, Deposit.expires_at <= now),
        Deposit.status == DepositStatus.WITHDRAWN,
        sa.and_(
            Deposit.status == DepositStatus.DRAFT,
            sa.or_(Deposit.created_at <= draft_deadline, Deposit.expires_at <= now),
        ),
    )


def purge_expired_deposits(
    session: Session,
    store: storage.EncryptedStore,
    *,
    batch_size: int = 100,
    dry_run: bool = False,
    ctx: audit.Context = audit.NO_CONTEXT,
    now: datetime | None = None,
) -> PurgeReport:
    """Destroy expired, withdrawn and abandoned deposits in batches.

    Idempotent and safe on two servers at once: the final conditional UPDATE of each deposit
    lets only one run record its destruction (the CLI also takes an advisory lock).
    """
    now = now or utcnow()
    report = PurgeReport(dry_run=dry_run)
    seen: set[str] = set()
    while True:
        rows = session.execute(
            sa.select(Deposit.id, Deposit.status)
            .where(_due(now), Deposit.id.not_in(seen) if seen else sa.true())
            .order_by(Deposit.expires_at)
            .limit(batch_size)
        ).all()
        session.commit()
        if not rows:
            break
        for deposit_id, status in rows:
            seen.add(deposit_id)
            reason = {"withdrawn": "withdrawn", "draft": "abandoned_draft"}.get(status, "expired")
            if dry_run:
                destroyed: int | None = 0
            else:
                if reason == "expired":
                    departement = session.execute(
                        sa.select(Deposit.departement_code).where(Deposit.id == deposit_id)
                    ).scalar_one()
                    audit.record(
                        session,
                        AuditAction.DEPOSIT_EXPIRED,
                        context=ctx,
                        target=audit.Target("deposit", deposit_id, departement),
                    )
                    session.commit()
                destroyed = destroy_content(
                    session, store, deposit_id, reason=reason, actor=audit.SYSTEM, ctx=ctx
                )
            if destroyed is None:
                continue  # another run destroyed it first
            report.deposit_ids.append(deposit_id)
            report.files_destroyed += destroyed
            if reason == "withdrawn":
                report.withdrawn += 1
            elif reason == "abandoned_draft":
                report.abandoned_drafts += 1
            else:
                report.expired += 1
    return report


def cleanup_orphans(
    session: Session,
    store: storage.EncryptedStore,
    *,
    older_than: timedelta = timedelta(hours=1),
    dry_run: bool = False,
    ctx: audit.Context = audit.NO_CONTEXT,
) -> int:
    """Destroy stored objects that no deposit file references (abandoned or failed uploads)."""
    known = set(session.execute(sa.select(DepositFile.object_key)).scalars())
    session.commit()
    destroyed = 0
    horizon = utcnow() - older_than
    for key in store.inner.list("deposits/"):
        if key in known:
            continue
        try:
            created = store.stat(key).created_at
        except storage.ObjectNotFound:
            created = None  # ciphertext without a key: unreadable garbage, remove it
        except storage.StorageError:
            continue
        if created is not None and created > horizon:
            continue  # an upload may still be in progress
        if not dry_run:
            store.delete(key)
            audit.record(
                session,
                AuditAction.ORPHAN_DESTROYED,
                context=ctx,
                target=audit.Target("object", key[-64:]),
            )
            session.commit()
        destroyed += 1
    return destroyed
