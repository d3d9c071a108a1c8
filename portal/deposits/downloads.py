"""Links and downloads of deposit files: signed links, their redemption, the streaming of
the file and the receipt that follows its last byte.

No request and no flash here: callers pass the session, the services and the audit context.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

import audit
import storage
from audit import AuditAction, Outcome
from portal.accounts.models import User
from portal.container import Services
from portal.db import utcnow
from portal.deposits.integrity import report_integrity_failure
from portal.deposits.models import (
    Deposit,
    DepositFile,
    DownloadCounter,
    DownloadReceipt,
    ScanStatus,
)
from portal.deposits.permissions import can_download, can_see_deposit, is_sender_side
from portal.deposits.services import FileCorrupted, LinkRefused

LINK_MAX_AGE = 300  # seconds: download links live five minutes
LINK_SALT = "filr.download-link.v1"

log = logging.getLogger(__name__)


def receipts_of(session: Session, deposit: Deposit) -> list[tuple[DownloadReceipt, User]]:
    """The acknowledgement of receipt: who downloaded which file of *deposit*, oldest first."""
    rows = session.execute(
        sa.select(DownloadReceipt, User)
        .join(User, User.id == DownloadReceipt.user_id)
        .where(DownloadReceipt.deposit_id == deposit.id)
        .order_by(DownloadReceipt.downloaded_at)
    ).all()
    return [(receipt, who) for receipt, who in rows]


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
    *,
    reuse_buffers: bool = False,
) -> Download:
    """Check a link again at use (signature, age, user, rights, expiry, counter); open the file.

    Raises LinkRefused, or FileCorrupted when the stored file fails its integrity check before
    its first byte. The receipt and the `deposit:downloaded` row are written only once the
    stream has handed over its last byte (see `_delivered`). `reuse_buffers` only when the
    server sends each chunk before asking for the next (`portal.serving.sends_buffers`): the
    chunks are then views of a few reused buffers (see `EncryptedStore.open`).
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
    if file.scan_status == ScanStatus.PENDING:  # never served before clamd has read it
        raise _refuse_link(session, user, "scan_pending", ctx, target)
    object_key = file.object_key
    sending = _Sending(
        session, svc, user_id=user.id, actor=user.audit_actor, ctx=ctx, target=target,
        deposit_id=deposit.id, file_id=file.id, object_key=file.object_key, size=file.size,
    )  # fmt: skip
    # No transaction is held while the store is asked (see `destroy_content`).
    session.commit()
    try:
        chunks = svc.store.open(object_key, reuse_buffers=reuse_buffers)
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
