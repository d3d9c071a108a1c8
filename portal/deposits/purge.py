"""The end of deposits: destruction of their content (expired, withdrawn, abandoned), the
purge job and its clean-ups (destructions left unfinished, stale uploads, orphan objects).

No request and no flash here: callers pass the session, the store and the audit context.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
import storage
from audit import AuditAction
from portal.accounts.models import Habilitation
from portal.db import is_well_formed_id, utcnow
from portal.deposits.models import (
    Category,
    Deposit,
    DepositFile,
    DepositStatus,
    ResumableUpload,
)
from portal.fiches.models import Fiche, FicheAttachment
from portal.flows.models import FlowDeposit
from portal.text import fold
from storage.sql import storage_data_key

log = logging.getLogger(__name__)

# What a destruction leaves in place of what people typed: the row stays for the trail, the
# receipts and the follow-up, with nothing personal in it (titles often name the beneficiary).
DESTROYED_TITLE = "Dépôt détruit"
DESTROYED_FILENAME = "Fichier détruit"
ERASED_REASON = "Motif effacé à la destruction du flux."

# Longest an upload may take: a multipart upload older than this is taken for dead (its server
# was restarted or killed mid-way) and the purge aborts it, whoever owns it. The default upload
# limit (2 GiB) in two hours is 2.4 Mbit/s.
UPLOAD_TIMEOUT = timedelta(hours=2)


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

    Fail closed: the deposit is marked destroyed, its titles, file names and flow
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
            sa.or_(
                # A draft its sender sent, held for the antivirus, is not abandoned: it lives
                # until its expiry, waiting for clamd.
                sa.and_(Deposit.created_at <= draft_deadline, Deposit.held_for_scan_at.is_(None)),
                Deposit.expires_at <= now,
            ),
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

    # Resumable uploads go on across hours and restarts: their own expiry ends them.
    keep = frozenset(session.execute(sa.select(ResumableUpload.store_upload_id)).scalars())
    session.commit()
    return int(abort(timeout, in_progress=in_progress, keep=keep, dry_run=dry_run))


def cleanup_orphans(
    session: Session,
    store: storage.EncryptedStore,
    *,
    older_than: timedelta = timedelta(hours=1),
    dry_run: bool = False,
    ctx: audit.Context = audit.NO_CONTEXT,
) -> int:
    """Destroy stored objects that no deposit file, habilitation form nor fiche references
    (abandoned or failed uploads, replacements that lost a race, a draft's previous values)."""
    known = set(session.execute(sa.select(DepositFile.object_key)).scalars())
    forms = sa.select(Habilitation.form_object_key).where(Habilitation.form_object_key.is_not(None))
    known.update(key for key in session.execute(forms).scalars() if key is not None)
    fiches = sa.select(Fiche.values_key).where(Fiche.values_key.is_not(None))
    known.update(key for key in session.execute(fiches).scalars() if key is not None)
    pieces = sa.select(FicheAttachment.object_key).where(FicheAttachment.object_key.is_not(None))
    known.update(key for key in session.execute(pieces).scalars() if key is not None)
    session.commit()
    destroyed = 0
    horizon = utcnow() - older_than
    keys = itertools.chain(
        store.inner.list("deposits/"),
        store.inner.list("habilitations/"),
        store.inner.list("fiches/"),
    )
    for key in keys:
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
