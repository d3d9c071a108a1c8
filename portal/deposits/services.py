"""The verbs of deposits: create, upload, publish, link, download, withdraw, purge.

No request and no flash here: callers pass the session, the services and the audit context.
"""

from __future__ import annotations

import contextlib
import logging
import re
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
from portal.container import Services
from portal.db import new_id, utcnow
from portal.deposits.integrity import report_integrity_failure
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
    visible_deposits,
)
from portal.filecheck import TypeSniffer, safe_filename
from portal.flows.models import FlowDeposit
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


class FileCorrupted(DepositError):
    """The stored file failed its integrity check: it cannot be sent (audited and alerted)."""

    code = "file_corrupted"


def _target(deposit: Deposit, kind: str = "deposit", target_id: str | None = None) -> audit.Target:
    return audit.Target(kind, target_id or deposit.id, deposit.departement_code)


# --- reading -------------------------------------------------------------------------------


_ID_RE = re.compile(r"[0-9a-f]{32}")


def is_well_formed_id(value: str) -> bool:
    """True for what `portal.db.new_id` could have made (32 lowercase hex digits)."""
    return _ID_RE.fullmatch(value) is not None


def find_deposit(
    session: Session, user: User, deposit_id: str, ctx: audit.Context
) -> Deposit | None:
    """The deposit if *user* may see it; None (the caller answers 404) otherwise, audited.

    A deposit of another space and an id that does not exist cost the same statements, so that
    the time of the 404 does not tell which ids exist: the deposit (and its files and recipients)
    is read only when the isolation rule's SQL twin lets it through; otherwise the same
    one-column lookup of its département runs for the trail, whether the id exists or not.
    """
    if not is_well_formed_id(deposit_id):
        refuse_unseen(session, user, ctx, audit.Target("deposit"))
        return None
    deposit = session.execute(
        sa.select(Deposit).where(Deposit.id == deposit_id, visible_deposits(user))
    ).scalar_one_or_none()
    # The predicate keeps the last word: should the twin ever disagree, the deposit is refused.
    if deposit is not None and can_see_deposit(user, deposit):
        return deposit
    departement = session.execute(
        sa.select(Deposit.departement_code).where(Deposit.id == deposit_id)
    ).scalar_one_or_none()
    refuse_unseen(session, user, ctx, audit.Target("deposit", deposit_id, departement))
    return None


def refuse_unseen(session: Session, user: User, ctx: audit.Context, target: audit.Target) -> None:
    """Audit a refused look at *target* and commit: the caller answers 404.

    A target with a département exists in a space *user* may not see ("not_visible", the
    foreign-access alert); one without is an id that exists nowhere, or not even the shape of
    one (then no id is kept: it is whatever was typed), "unknown": the probing alert.
    """
    audit.record(
        session,
        AuditAction.ACCESS_DENIED,
        actor=user.audit_actor,
        context=ctx,
        outcome=Outcome.DENIED,
        target=target,
        details={"reason": "not_visible" if target.departement else "unknown"},
    )
    session.commit()


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
            AuditAction.DEPOSIT_FILE_REFUSED,
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
            AuditAction.DEPOSIT_FILE_UPLOADED,
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


def create_draft(session: Session, user: User, wanted: NewDeposit, ctx: audit.Context) -> Deposit:
    """`create_deposit` and commit; a refusal (DepositError) rolls back and propagates."""
    try:
        deposit = create_deposit(session, user, wanted, ctx)
    except DepositError:
        session.rollback()
        raise
    session.commit()
    return deposit


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
        AuditAction.DEPOSIT_LINK_ISSUED,
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
        AuditAction.DEPOSIT_LINK_REFUSED,
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
    """A file ready to stream, every check done; the receipt follows its last byte."""

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
    svc: Services,
    user: User,
    token: str,
    ctx: audit.Context,
) -> Download:
    """Check a link again at use (signature, age, user, rights, expiry, counter); open the file.

    Raises LinkRefused, or FileCorrupted when the stored file fails its integrity check before
    its first byte. The receipt and the `deposit:downloaded` row are written only once the
    stream has handed over its last byte (see `_delivered`).
    """
    serializer = _serializer(svc.settings.secret_key)
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
    sending = _Sending(
        session, svc, user_id=user.id, actor=user.audit_actor, ctx=ctx, target=target,
        deposit_id=deposit.id, file_id=file.id, object_key=file.object_key, size=file.size,
    )  # fmt: skip
    # No transaction is held while the store is asked (see `destroy_content`).
    session.commit()
    try:
        chunks = svc.store.open(object_key)
    except storage.IntegrityError as e:
        sending.report_corruption(e, sent=0)
        raise FileCorrupted(
            "Ce fichier est endommagé dans l'espace de stockage : il ne peut pas être "
            "téléchargé. L'équipe sécurité a été alertée ; demandez à l'expéditeur de le "
            "déposer à nouveau."
        ) from e
    except storage.StorageError as e:
        raise _refuse_link(session, user, "unavailable", ctx, target) from e
    limited = deposit.max_downloads is not None and not is_sender_side(user, deposit)
    if limited and not _take_download_slot(session, deposit, user):
        _close(chunks)
        raise _refuse_link(session, user, "max_downloads", ctx, target)
    try:
        # Fail closed: the trail holds the download, with the counted slot, before any byte of
        # the file leaves; the receipt and `deposit:downloaded` follow its last byte.
        audit.record(
            session,
            AuditAction.DEPOSIT_DOWNLOAD_STARTED,
            actor=user.audit_actor,
            context=ctx,
            target=target,
            details={"deposit_id": deposit.id, "size": file.size},
        )
        session.commit()  # nothing is held while the file streams
    except BaseException:
        _close(chunks)
        raise
    return Download(file, deposit, _delivered(chunks, sending))


@dataclass(frozen=True)
class _Sending:
    """What the trail needs about a download while, and after, its file streams.

    Plain values only: the request's session is closed at teardown, before the body is sent,
    so the stream reuses the session object on its own and never touches the request's rows.
    """

    session: Session
    svc: Services
    user_id: str
    actor: audit.Actor
    ctx: audit.Context
    target: audit.Target
    deposit_id: str
    file_id: str
    object_key: str
    size: int

    def record_receipt(self) -> None:
        """The acknowledgement of receipt and the `deposit:downloaded` row, once all was sent."""
        self.session.add(
            DownloadReceipt(
                deposit_id=self.deposit_id,
                file_id=self.file_id,
                user_id=self.user_id,
                downloaded_at=utcnow(),
            )
        )
        audit.record(
            self.session,
            AuditAction.DEPOSIT_DOWNLOADED,
            actor=self.actor,
            context=self.ctx,
            target=self.target,
            details={"deposit_id": self.deposit_id, "size": self.size},
        )
        self.session.commit()

    def record_failure(self, reason: str, sent: int) -> None:
        """A download that stopped before its end: no receipt, a failed `deposit:downloaded`."""
        audit.record(
            self.session,
            AuditAction.DEPOSIT_DOWNLOADED,
            actor=self.actor,
            context=self.ctx,
            outcome=Outcome.FAILURE,
            target=self.target,
            details={"deposit_id": self.deposit_id, "reason": reason, "bytes_sent": sent},
        )
        self.session.commit()

    def report_corruption(self, error: storage.IntegrityError, sent: int) -> None:
        """Audit a failed integrity check and open (and e-mail) its security alert at once."""
        report_integrity_failure(
            self.session,
            self.svc,
            actor=self.actor,
            ctx=self.ctx,
            target=self.target,
            deposit_id=self.deposit_id,
            file_id=self.file_id,
            object_key=self.object_key,
            error=error,
            sent=sent,
        )


def _delivered(chunks: Iterator[bytes], sending: _Sending) -> Iterator[bytes]:
    """Yield the file's plaintext; write the receipt only once the last byte was handed over.

    The server asks for the next chunk only after writing the previous one, so the code after
    the loop runs once every byte was sent. An integrity failure is audited and alerted, then
    raised again: the server then drops the connection, and the client, which was promised
    `Content-Length` bytes, sees an incomplete transfer rather than a clean short file.
    """
    sent = 0  # bytes handed to the server (the last one may be in flight when it gives up)
    try:
        try:
            for chunk in chunks:
                sent += len(chunk)
                yield chunk
        except storage.IntegrityError as e:
            sending.report_corruption(e, sent)
            raise
        except storage.StorageError:
            sending.record_failure("storage_unavailable", sent)
            raise
        except GeneratorExit:
            # The client went away (or the server gave up on it): part of the file left. The
            # server is closing the response: a failing database must not fail that too.
            try:
                sending.record_failure("interrupted", sent)
            except Exception:
                log.exception("interrupted download not audited (deposit %s)", sending.deposit_id)
            raise
        sending.record_receipt()
    finally:
        _close(chunks)
        sending.session.close()


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
    return bool(result.rowcount == 1)  # type: ignore[attr-defined] # DML returns a CursorResult


# --- taking in charge, withdrawing, purging ---------------------------------------------------


def set_daily_digest(session: Session, user: User, daily: bool, now: datetime) -> None:
    """Switch *user* between one e-mail per deposit and the daily digest; commits."""
    if daily and not user.daily_digest:
        # Deposits received so far were announced one by one: the first digest starts now.
        user.last_digest_at = now
    user.daily_digest = daily
    session.commit()


def take_in_charge(session: Session, user: User, deposit: Deposit, ctx: audit.Context) -> None:
    """Mark a deposit of the organisation's shared inbox as handled by *user*; commits (a
    refusal rolls back)."""
    if deposit.status != DepositStatus.AVAILABLE or not any(
        r.organisation_id == user.organisation_id for r in deposit.recipients
    ):
        session.rollback()
        raise DepositError("Ce dépôt ne peut pas être pris en charge.")
    deposit.taken_by_id = user.id
    deposit.taken_at = utcnow()
    audit.record(
        session,
        AuditAction.DEPOSIT_TAKEN_IN_CHARGE,
        actor=user.audit_actor,
        context=ctx,
        target=_target(deposit),
    )
    session.commit()


# What a destruction leaves in place of what people typed: the row stays for the trail, the
# receipts and the follow-up, with nothing personal in it (titles often name the beneficiary).
DESTROYED_TITLE = "Dépôt détruit"
DESTROYED_FILENAME = "Fichier détruit"
ERASED_REASON = "Motif effacé à la destruction du flux."

# Longest an upload may take: a multipart upload older than this is taken for dead (its server
# was restarted or killed mid-way) and the purge aborts it, whoever owns it. The default upload
# limit (2 GiB) in two hours is 2.4 Mbit/s.
UPLOAD_TIMEOUT = timedelta(hours=2)


class AlreadyWithdrawn(DepositError):
    """The deposit was withdrawn already (by someone else, or a moment ago)."""

    code = "already_withdrawn"


class AlreadyDestroyed(DepositError):
    """The deposit's content was destroyed already (expired, refused or abandoned)."""

    code = "already_destroyed"


def _ended(deposit: Deposit) -> DepositError:
    """The error telling a withdrawal that came too late what state the deposit is in now."""
    if deposit.withdrawn_at is not None:
        if deposit.status == DepositStatus.DESTROYED:
            return AlreadyWithdrawn("Ce dépôt a déjà été retiré : son contenu a été détruit.")
        return AlreadyWithdrawn(
            "Ce dépôt a déjà été retiré : la destruction de son contenu est en cours."
        )
    return AlreadyDestroyed("Ce dépôt a déjà été détruit : il ne peut plus être retiré.")


@dataclass(frozen=True)
class Destruction:
    """What `destroy_content` did: files destroyed, and ciphertexts left for the purge."""

    files: int
    removal_pending: int = 0


@dataclass
class _Removal:
    shredded: int = 0
    removed: int = 0
    pending: int = 0


def _shred_and_remove(
    session: Session,
    store: storage.EncryptedStore,
    files: Sequence[tuple[str, str]],
    *,
    try_store: bool = True,
) -> _Removal:
    """Shred the data key and remove the ciphertext of each (file id, object key); mark removed.

    Each key is shredded (in the database: the content is unreadable from then on) before its
    ciphertext is removed. After the object store's first failure only keys are shredded: a
    store that is down would make each file wait for its own time-outs. What is not removed
    stays pending for `finish_destructions`.
    """
    outcome = _Removal()
    removed: list[str] = []
    for file_id, object_key in files:
        outcome.shredded += store.shred(object_key)
        if not try_store:
            continue
        try:
            store.inner.delete(object_key)
        except storage.StorageError:
            try_store = False
        else:
            removed.append(file_id)
    outcome.pending = len(files) - len(removed)
    if outcome.pending:
        log.warning(
            "object store unavailable: %d ciphertext(s) of destroyed deposits left for the purge",
            outcome.pending,
        )
    if removed:
        marked = session.execute(
            sa.update(DepositFile)
            .where(DepositFile.id.in_(removed), DepositFile.removed_at.is_(None))
            .values(removed_at=utcnow())
        )
        outcome.removed = int(marked.rowcount)  # type: ignore[attr-defined] # DML returns a CursorResult
        session.commit()
    return outcome


def destroy_content(
    session: Session,
    store: storage.EncryptedStore,
    deposit_id: str,
    *,
    reason: str,
    actor: audit.Actor,
    ctx: audit.Context,
    expected_status: DepositStatus | None = None,
    try_store: bool = True,
) -> Destruction | None:
    """Destroy a deposit: erase its personal data, shred and remove its files; one trail entry.

    Fail closed: the deposit is marked destroyed, its titles, message, file names and flow
    report erased, and the destruction recorded (with the expiry, for reason "expired") in one
    committed transaction *before* any key is shredded, so a destruction whose row cannot be
    written does not happen. The winner is the one conditional UPDATE that finds the deposit
    still in *expected_status* (any status but destroyed by default): of two servers, exactly
    one records it. The store is called after the commit (the key store writes through its own
    connection); ciphertexts it cannot remove now are counted in `removal_pending` and removed
    by `finish_destructions` at the purge's next run. Returns None if another run (or server)
    destroyed the deposit first, or its status changed meanwhile.
    """
    now = utcnow()
    still = (
        Deposit.status == expected_status
        if expected_status is not None
        else Deposit.status != DepositStatus.DESTROYED
    )
    # Titles of flows are written by the portal (type, space, period), never typed by a
    # person: they stay, for the follow-up and the sender's list.
    typed_by_a_person = Deposit.category != Category.FLUX_XML
    won = session.execute(
        sa.update(Deposit)
        .where(Deposit.id == deposit_id, still)
        .values(
            status=DepositStatus.DESTROYED,
            destroyed_at=now,
            title=sa.case((typed_by_a_person, DESTROYED_TITLE), else_=Deposit.title),
            title_sort=sa.case(
                (typed_by_a_person, fold(DESTROYED_TITLE)), else_=Deposit.title_sort
            ),
            message=None,
        )
    )
    if won.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.rollback()
        return None
    files = [
        (file_id, object_key)
        for file_id, object_key in session.execute(
            sa.select(DepositFile.id, DepositFile.object_key)
            .where(DepositFile.deposit_id == deposit_id, DepositFile.removed_at.is_(None))
            .order_by(DepositFile.id)
        )
    ]
    session.execute(
        sa.update(DepositFile)
        .where(DepositFile.deposit_id == deposit_id)
        .values(
            destroyed_at=sa.func.coalesce(DepositFile.destroyed_at, now),
            filename=DESTROYED_FILENAME,
        )
    )
    # A delivered flow's report may quote values of the file, and the receiving side's reason
    # for flagging it is free text: both go with the content. (A refused flow's report is
    # written after its destruction, for its sender, and ages out in `forget_old_reports`.)
    session.execute(
        sa.update(FlowDeposit)
        .where(FlowDeposit.deposit_id == deposit_id)
        .values(
            report_sealed=None,
            unusable_reason=sa.case(
                (FlowDeposit.unusable_reason.is_(None), None), else_=ERASED_REASON
            ),
        )
    )
    departement = session.execute(
        sa.select(Deposit.departement_code).where(Deposit.id == deposit_id)
    ).scalar_one()
    target = audit.Target("deposit", deposit_id, departement)
    if reason == "expired":
        # Recorded by the run that wins the destruction, in its transaction: two purges at
        # once never both record the expiry.
        audit.record(session, AuditAction.DEPOSIT_EXPIRED, context=ctx, target=target)
    audit.record(
        session,
        AuditAction.DEPOSIT_DESTROYED,
        actor=actor,
        context=ctx,
        target=target,
        details={"reason": reason, "files": len(files)},
    )
    session.commit()
    removal = _shred_and_remove(session, store, files, try_store=try_store)
    return Destruction(files=len(files), removal_pending=removal.pending)


@dataclass
class FinishReport:
    """What `finish_destructions` did (or would do, with --dry-run)."""

    shredded: int = 0
    removed: int = 0
    pending: int = 0
    dry_run: bool = False


def finish_destructions(
    session: Session,
    store: storage.EncryptedStore,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
) -> FinishReport:
    """Finish destructions the store could not: shred live keys, remove left ciphertexts.

    They are left by a destruction whose store call failed after it was recorded (see
    `destroy_content`, e.g. a withdrawal during an object store outage); the application
    never serves them (their deposit is destroyed). Only files not yet known removed are read,
    in batches; removing twice is not an error, so two runs at once are harmless. `pending`
    counts what the store still refused at the end.
    """
    report = FinishReport(dry_run=dry_run)
    left = sa.and_(DepositFile.removed_at.is_(None), DepositFile.destroyed_at.is_not(None))
    if dry_run:
        report.removed = session.execute(
            sa.select(sa.func.count()).select_from(DepositFile).where(left)
        ).scalar_one()
        report.shredded = session.execute(
            sa.select(sa.func.count())
            .select_from(DepositFile)
            .join(storage_data_key, storage_data_key.c.object_key == DepositFile.object_key)
            .where(left, storage_data_key.c.shredded_at.is_(None))
        ).scalar_one()
        session.commit()
        return report
    after = ""
    while True:
        files = [
            (file_id, object_key)
            for file_id, object_key in session.execute(
                sa.select(DepositFile.id, DepositFile.object_key)
                .where(left, DepositFile.id > after)
                .order_by(DepositFile.id)
                .limit(batch_size)
            )
        ]
        session.commit()  # no transaction held while the store is asked
        if not files:
            break
        after = files[-1][0]
        removal = _shred_and_remove(session, store, files)
        report.shredded += removal.shredded
        report.removed += removal.removed
        if removal.pending:
            report.pending = session.execute(
                sa.select(sa.func.count()).select_from(DepositFile).where(left)
            ).scalar_one()
            session.commit()
            break
    if report.shredded or report.removed:
        log.warning(
            "destructions finished late: %d key(s) shredded, %d ciphertext(s) removed",
            report.shredded,
            report.removed,
        )
    return report


def withdraw(
    session: Session,
    store: storage.EncryptedStore,
    user: User,
    deposit: Deposit,
    ctx: audit.Context,
) -> bool:
    """Withdraw a deposit before its expiry: its content is destroyed at once.

    One conditional UPDATE decides: of two withdrawals at once (two servers, a double click),
    exactly one is recorded and destroys; the other gets AlreadyWithdrawn with the state it
    finds. The withdrawal is committed first, so that if destruction fails half-way the
    deposit is already out of reach and the purge job finishes the destruction. Returns True
    when the object store could not remove the content yet (its keys are shredded: nobody can
    read it; the purge removes it once the store answers).
    """
    if deposit.status in (DepositStatus.WITHDRAWN, DepositStatus.DESTROYED):
        session.rollback()
        raise _ended(deposit)
    if not can_withdraw(user, deposit):
        session.rollback()
        raise DepositError("Vous ne pouvez pas retirer ce dépôt.")
    won = session.execute(
        sa.update(Deposit)
        .where(
            Deposit.id == deposit.id,
            Deposit.status.in_([DepositStatus.AVAILABLE, DepositStatus.DRAFT]),
        )
        .values(status=DepositStatus.WITHDRAWN, withdrawn_at=utcnow())
    )
    if won.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.rollback()
        session.refresh(deposit)
        raise _ended(deposit)
    audit.record(
        session,
        AuditAction.DEPOSIT_WITHDRAWN,
        actor=user.audit_actor,
        context=ctx,
        target=_target(deposit),
    )
    session.commit()
    destroy_content(
        session,
        store,
        deposit.id,
        reason="withdrawn",
        actor=user.audit_actor,
        ctx=ctx,
        expected_status=DepositStatus.WITHDRAWN,
    )
    # Read back rather than trusted from this call: a purge may have won the destruction.
    pending = session.execute(
        sa.select(sa.func.count())
        .select_from(DepositFile)
        .where(DepositFile.deposit_id == deposit.id, DepositFile.removed_at.is_(None))
    ).scalar_one()
    session.commit()
    return bool(pending)


@dataclass
class PurgeReport:
    """What the purge did (or would do, with --dry-run)."""

    expired: int = 0
    withdrawn: int = 0
    abandoned_drafts: int = 0
    files_destroyed: int = 0
    removal_pending: int = 0
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


_PURGE_REASONS = {
    DepositStatus.AVAILABLE: "expired",
    DepositStatus.WITHDRAWN: "withdrawn",
    DepositStatus.DRAFT: "abandoned_draft",
}


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

    Idempotent and safe on two servers at once, with or without the CLI's advisory lock: each
    deposit is destroyed by one conditional UPDATE that expects the status it was picked in,
    so only one run records its expiry and its destruction (and a draft published, or a
    deposit withdrawn, since it was picked is left to its new state).
    """
    now = now or utcnow()
    report = PurgeReport(dry_run=dry_run)
    seen: set[str] = set()
    store_answers = True
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
            reason = _PURGE_REASONS[DepositStatus(status)]
            if dry_run:
                destroyed: Destruction | None = Destruction(files=0)
            else:
                destroyed = destroy_content(
                    session, store, deposit_id, reason=reason, actor=audit.SYSTEM, ctx=ctx,
                    expected_status=DepositStatus(status), try_store=store_answers,
                )  # fmt: skip
            if destroyed is None:
                continue  # another run destroyed it first, or its status changed meanwhile
            if destroyed.removal_pending:
                store_answers = False  # the rest only shreds; the next run removes
            report.deposit_ids.append(deposit_id)
            report.files_destroyed += destroyed.files
            report.removal_pending += destroyed.removal_pending
            if reason == "withdrawn":
                report.withdrawn += 1
            elif reason == "abandoned_draft":
                report.abandoned_drafts += 1
            else:
                report.expired += 1
    return report


def _owner_of_upload(object_key: str) -> str | None:
    """The deposit an upload's object key belongs to (`deposits/<deposit>/<file>`), if any."""
    parts = object_key.split("/")
    if len(parts) == 3 and parts[0] == "deposits" and is_well_formed_id(parts[1]):
        return parts[1]
    return None


def abort_stale_uploads(
    session: Session,
    store: storage.EncryptedStore,
    *,
    timeout: timedelta = UPLOAD_TIMEOUT,
    dry_run: bool = False,
) -> int:
    """Abort the store's unfinished multipart uploads that no live upload can still complete.

    An upload is kept only while its draft is a draft and it is younger than *timeout*: one
    whose server was killed mid-way holds its parts (hundreds of MB) until aborted, and one
    whose deposit was sent, withdrawn or purged can never complete. An upload whose key is not
    a deposit file's (not ours) is aborted only once older than *timeout*. Returns how many were
    (or would be) aborted; 0 on a store without multipart uploads.
    """
    abort = getattr(store.inner, "abort_incomplete_uploads", None)
    if abort is None:
        return 0

    def in_progress(keys: Sequence[str]) -> set[str]:
        owners = {key: _owner_of_upload(key) for key in keys}
        wanted = sorted({owner for owner in owners.values() if owner is not None})
        drafts: set[str] = set()
        # Listed before this query: an upload's draft is committed before the upload starts,
        # so a draft missing here is gone, not yet to come.
        for start in range(0, len(wanted), 500):
            drafts.update(
                session.execute(
                    sa.select(Deposit.id).where(
                        Deposit.id.in_(wanted[start : start + 500]),
                        Deposit.status == DepositStatus.DRAFT,
                    )
                ).scalars()
            )
        session.commit()
        # A key that is not one of ours belongs to someone else sharing the bucket or prefix:
        # it may be in progress, so only its age (the timeout) may condemn it.
        return {key for key, owner in owners.items() if owner is None or owner in drafts}

    return int(abort(timeout, in_progress=in_progress, dry_run=dry_run))


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
                AuditAction.STORAGE_ORPHAN_DESTROYED,
                context=ctx,
                target=audit.Target("object", key[-64:]),
            )
            session.commit()
        destroyed += 1
    return destroyed
