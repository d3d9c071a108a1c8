"""Resumable uploads (tus 1.0.0): a file of a draft deposit sent in pieces, across cuts.

Each piece (PATCH) is encrypted and stored at once (`storage.resumable`: a part of the S3
multipart upload of the file, or a part object on a directory), and where the upload stands is
saved in `ResumableUpload`, so that a client cut off, or a restarted server, goes on from the
last piece stored. When the last piece is stored, the file is read back once, decrypted as it
streams, through the checks of every upload (`services.add_file`: type on content, PDF active
content, antivirus inline or "analyse en attente" for the job of `rescan`), and joins its
deposit only if they pass. Unfinished uploads expire (`expire_uploads`, run by the purge).

No request here: the API views (`portal.api.tus`) and the web page's (`portal.deposits.tus_views`)
parse the tus headers and call one function.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
import storage
from portal.accounts.models import User
from portal.db import is_well_formed_id, new_id, utcnow
from portal.deposits import services
from portal.deposits.antivirus import Antivirus
from portal.deposits.models import Deposit, DepositFile, DepositStatus, ResumableUpload
from portal.filecheck import safe_filename
from portal.formats import size_fr
from portal.settings import Settings
from storage.resumable import ResumableState, ResumableUploads

log = logging.getLogger(__name__)

MIN_CHUNK = 5 * 1024 * 1024  # the smallest S3 part but the last
BROWSER_CHUNK = 8 * 1024 * 1024  # a cut costs at most this much to send again
# How long one PATCH may hold its claim on an upload (a crashed worker's claim lapses).
CLAIM = timedelta(minutes=10)


class OffsetMismatch(services.DepositError):
    """The piece does not start where the upload stands (tus: 409 Conflict)."""

    code = "offset_mismatch"


class ChunkRefused(services.DepositError):
    """A piece that is not the last must hold whole segments, at least `MIN_CHUNK` bytes."""

    code = "chunk_size"


@dataclass(frozen=True, slots=True)
class Limits:
    """What a client must know to cut its pieces (announced in headers, see the API)."""

    granularity: int  # every piece but the last: a multiple of this (the segment size)
    min_chunk: int
    max_chunk: int
    max_size: int
    expiry: timedelta

    @property
    def browser_chunk(self) -> int:
        """The piece size the deposit page's client uses: 8 MiB, within the rules."""
        wanted = BROWSER_CHUNK // self.granularity * self.granularity
        return min(self.max_chunk, max(self.min_chunk, wanted))


def limits_of(store: storage.EncryptedStore, settings: Settings) -> Limits:
    """The piece rules of a deployment (the API and the web page announce the same)."""
    granularity = ResumableUploads(store).segment_size
    # The smallest piece: 5 MiB rounded up to whole segments.
    smallest = -(-MIN_CHUNK // granularity) * granularity
    return Limits(
        granularity=granularity,
        min_chunk=smallest,
        max_chunk=max(smallest, settings.resumable_max_chunk_bytes // granularity * granularity),
        max_size=settings.max_upload_bytes,
        expiry=timedelta(hours=settings.resumable_expiry_hours),
    )


def filename_from_metadata(metadata: str) -> str | None:
    """The `filename` of a tus Upload-Metadata header (base64 of UTF-8), or None."""
    for pair in metadata.split(","):
        key, _, value = pair.strip().partition(" ")
        if key == "filename":
            try:
                return base64.b64decode(value, validate=True).decode("utf-8")[:1000] or None
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def _state(upload: ResumableUpload) -> ResumableState:
    return ResumableState(
        object_key=upload.object_key,
        departement=upload.departement_code,
        kek_version=upload.kek_version,
        wrapped_key=upload.wrapped_key,
        header=upload.header,
        upload_id=upload.store_upload_id,
        received=upload.offset,
        digest_state=upload.digest_state,
        parts=tuple((int(n), str(e)) for n, e in json.loads(upload.parts)),
    )


def begin(
    session: Session,
    store: storage.EncryptedStore,
    user: User,
    deposit: Deposit,
    filename: str,
    length: int,
    limits: Limits,
) -> ResumableUpload:
    """Start the upload of one file of *length* bytes into a draft deposit of *user*'s."""
    if (
        deposit.status != DepositStatus.DRAFT
        or deposit.held_for_scan_at is not None
        or user.id != deposit.sender_id
    ):
        raise services.DepositError("Ce dépôt n'accepte plus de fichiers.")
    services._only_through_flows(deposit, False)
    if length > limits.max_size:
        largest = size_fr(limits.max_size)
        raise services.FileTooLarge(
            f"Fichier trop volumineux : la taille maximale est de {largest}."
        )
    if length <= 0:
        raise services.FileRefused("Le fichier est vide.")
    file_id = new_id()
    deposit_id, departement = deposit.id, deposit.departement_code
    object_key = f"deposits/{deposit_id}/{file_id}"
    session.commit()  # no database lock held while the key store is written (SQLite)
    state = ResumableUploads(store).begin(object_key, departement=departement)
    now = utcnow()
    upload = ResumableUpload(
        id=new_id(),
        deposit_id=deposit_id,
        user_id=user.id,
        departement_code=departement,
        file_id=file_id,
        object_key=object_key,
        filename=safe_filename(filename),
        length=length,
        offset=0,
        kek_version=state.kek_version,
        wrapped_key=state.wrapped_key,
        header=state.header,
        store_upload_id=state.upload_id,
        digest_state=state.digest_state,
        parts="[]",
        created_at=now,
        expires_at=now + limits.expiry,
    )
    session.add(upload)
    session.commit()
    return upload


def find_upload(
    session: Session, user: User, upload_id: str, ctx: audit.Context
) -> ResumableUpload | None:
    """The upload if it is *user*'s and its deposit passes the isolation check; else None."""
    if not is_well_formed_id(upload_id):
        services.refuse_unseen(session, user, ctx, audit.Target("upload"))
        return None
    upload = session.get(ResumableUpload, upload_id)
    deposit_id = upload.deposit_id if upload is not None else upload_id
    # THE isolation check, on every request: the same statements whether the id exists or not.
    deposit = services.find_deposit(session, user, deposit_id, ctx)
    if upload is None or deposit is None or upload.user_id != user.id:
        return None
    if upload.departement_code != deposit.departement_code:
        return None
    if upload.expires_at <= utcnow():  # tus expiration: gone now, whenever the purge runs
        return None
    return upload


def append(
    session: Session,
    store: storage.EncryptedStore,
    user: User,
    upload: ResumableUpload,
    offset: int,
    data: bytes,
    limits: Limits,
    *,
    ctx: audit.Context,
    antivirus: Antivirus,
) -> ResumableUpload | DepositFile:
    """Store one piece; the upload as it now stands, or the file once the last piece is in.

    Claimed with a conditional UPDATE (offset and no live claim): of two PATCHes at the same
    offset, exactly one writes; the other gets `OffsetMismatch`.
    """
    if offset != upload.offset:
        raise OffsetMismatch("Le morceau ne commence pas où en est l'envoi.")
    if offset + len(data) > upload.length:
        raise ChunkRefused("Le morceau dépasse la taille annoncée du fichier.")
    last = offset + len(data) == upload.length
    if not last and (
        len(data) < limits.min_chunk
        or len(data) % limits.granularity
        or len(data) > limits.max_chunk
    ):
        raise ChunkRefused(
            "Chaque morceau sauf le dernier doit compter un multiple de "
            f"{limits.granularity} octets, entre {limits.min_chunk} et {limits.max_chunk}."
        )
    upload_id = upload.id
    now = utcnow()
    claimed = session.execute(
        sa.update(ResumableUpload)
        .where(
            ResumableUpload.id == upload_id,
            ResumableUpload.offset == offset,
            ResumableUpload.expires_at > now,
            sa.or_(ResumableUpload.busy_until.is_(None), ResumableUpload.busy_until < now),
        )
        .values(busy_until=now + CLAIM)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.rollback()
        raise OffsetMismatch("Un autre envoi de ce morceau est en cours.")
    state = _state(upload)
    session.commit()
    uploads = ResumableUploads(store)
    try:
        state = uploads.append(state, data, last=last)
    except BaseException:
        _release(session, upload_id)
        raise
    session.execute(
        sa.update(ResumableUpload)
        .where(ResumableUpload.id == upload_id, ResumableUpload.offset == offset)
        .values(
            offset=state.received,
            digest_state=state.digest_state,
            parts=json.dumps([list(p) for p in state.parts]),
            busy_until=None if not last else now + CLAIM,
        )
    )
    session.commit()
    if not last:
        refreshed = session.get(ResumableUpload, upload_id, populate_existing=True)
        assert refreshed is not None  # noqa: S101 - just updated, and claimed
        return refreshed
    return _finish(session, store, user, upload_id, state, ctx=ctx, antivirus=antivirus)


def _release(session: Session, upload_id: str) -> None:
    session.rollback()
    session.execute(
        sa.update(ResumableUpload).where(ResumableUpload.id == upload_id).values(busy_until=None)
    )
    session.commit()


def _finish(
    session: Session,
    store: storage.EncryptedStore,
    user: User,
    upload_id: str,
    state: ResumableState,
    *,
    ctx: audit.Context,
    antivirus: Antivirus,
) -> DepositFile:
    upload = session.get(ResumableUpload, upload_id, populate_existing=True)
    assert upload is not None  # noqa: S101 - claimed by this request
    deposit_id, file_id, filename = upload.deposit_id, upload.file_id, upload.filename
    session.commit()  # the key store writes next (SQLite: no read lock held meanwhile)
    uploads = ResumableUploads(store)
    try:
        stored = uploads.complete(state)
    except BaseException:
        _release(session, upload_id)
        raise
    # The pieces are one object now: the row goes, whatever the checks say.
    session.execute(sa.delete(ResumableUpload).where(ResumableUpload.id == upload_id))
    session.commit()
    deposit = session.get(Deposit, deposit_id)
    if deposit is None:  # cannot happen (foreign key); destroy rather than keep
        services._destroy_quietly(store, stored.object_key)
        raise services.DepositError("Ce dépôt n'accepte plus de fichiers.")
    try:
        return services.add_file(
            session, store, user, deposit, filename, _read_back(store, stored.object_key),
            size_limit=max(stored.size, 1), ctx=ctx, antivirus=antivirus,
            declared_size=stored.size, stored=stored, file_id=file_id,
        )  # fmt: skip
    except services.DepositError:
        # Refused (by the checks, or a deposit no longer a draft): add_file destroyed the
        # object when the checks refused it; a refusal before them leaves it to destroy here.
        services._destroy_quietly(store, stored.object_key)
        raise


def _read_back(store: storage.EncryptedStore, object_key: str) -> Iterator[bytes]:
    stream = store.open(object_key)
    try:
        yield from stream
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def terminate(session: Session, store: storage.EncryptedStore, upload: ResumableUpload) -> None:
    """End an unfinished upload at its sender's request (tus termination): nothing is left."""
    _drop(session, store, upload.id)


def _drop(session: Session, store: storage.EncryptedStore, upload_id: str) -> bool:
    now = utcnow()
    upload = session.get(ResumableUpload, upload_id, populate_existing=True)
    if upload is None:
        return False
    state = _state(upload)
    session.commit()
    gone = session.execute(
        sa.delete(ResumableUpload).where(
            ResumableUpload.id == upload_id,
            ResumableUpload.offset == upload.offset,
            sa.or_(ResumableUpload.busy_until.is_(None), ResumableUpload.busy_until < now),
        )
    )
    if gone.rowcount != 1:  # type: ignore[attr-defined] # a PATCH is working on it
        session.rollback()
        raise OffsetMismatch("Un envoi de ce fichier est en cours.")
    session.commit()
    # The row is gone first: a part left by a failing store is never joined to anything.
    with contextlib.suppress(storage.StorageError):
        ResumableUploads(store).abort(state)
    return True


def expire_uploads(session: Session, store: storage.EncryptedStore, now: datetime) -> int:
    """Drop the uploads whose time is up (abort the multipart upload, delete the parts)."""
    expired = (
        session.execute(sa.select(ResumableUpload.id).where(ResumableUpload.expires_at <= now))
        .scalars()
        .all()
    )
    session.commit()
    dropped = 0
    for upload_id in expired:
        with contextlib.suppress(OffsetMismatch):
            dropped += _drop(session, store, upload_id)
    if dropped:
        log.info("resumable uploads: %d expired upload(s) dropped", dropped)
    return dropped
