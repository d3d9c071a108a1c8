"""The verbs of deposits: create, upload, publish, take in charge, withdraw.

Links and downloads are in `downloads`, expiry and destruction in `purge`.

No request and no flash here: callers pass the session, the services and the audit context.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
import storage
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, User
from portal.db import is_well_formed_id, new_id, utcnow
from portal.deposits.antivirus import (
    Antivirus,
    UploadScan,
    infected_message,
    record_unscanned,
    report_infected,
)
from portal.deposits.models import (
    CATEGORY_LABELS,
    DATED_TITLE_CATEGORIES,
    MAX_LIFETIME,
    Category,
    Deposit,
    DepositFile,
    DepositRecipient,
    DepositStatus,
    Reason,
    ScanStatus,
)
from portal.deposits.permissions import (
    CATEGORY_ROLE,
    can_see_deposit,
    can_withdraw,
    categories_of,
    visible_deposits,
)
from portal.deposits.purge import destroy_content
from portal.filecheck import FileKind, TypeSniffer, safe_filename
from portal.filecheck.names import extension_of
from portal.filecheck.pdf_content import PDF_CHECK_MAX_BYTES, check_pdf
from portal.filecheck.pdf_content import TOO_LARGE as PDF_TOO_LARGE
from portal.formats import datetime_fr, size_fr
from portal.orgs.models import Organisation
from portal.orgs.permissions import may_exchange, spaces_of
from portal.text import fold

log = logging.getLogger(__name__)


class DepositError(ValueError):
    """A request on a deposit cannot be carried out (French message for people).

    *field* names the field of the request at fault, when one is: the web form shows the
    message next to it, the API points at it.
    """

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class FileRefused(DepositError):
    """An uploaded file is refused (type, size, empty)."""

    code = "file_refused"


class FileInfected(FileRefused):
    """The antivirus found a signature in the file (refused, destroyed, audited and alerted)."""

    code = "file_infected"


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
    """What a sender asks for; validated by `create_deposit`.

    No free-text message: a *reason* from the closed list, if any. *title* is typed for a
    document only (the portal dates the others); *lifetime_days* None is the category's
    default (`lifetime_limit`).
    """

    departement: str
    category: Category
    title: str = ""
    reason: Reason | None = None
    recipient_org_ids: Sequence[str] = ()
    recipient_user_ids: Sequence[str] = ()
    lifetime_days: int | None = None
    max_downloads: int | None = None


def lifetime_limit(category: Category, weekly_file_days: int) -> int:
    """The longest life of a deposit of *category* in days, also its default: 90 days, and
    `FILR_WEEKLY_FILE_LIFETIME_DAYS` (7) for the weekly experimentation files."""
    if category is Category.HEBDO_EXPERIMENTATION:
        return min(weekly_file_days, MAX_LIFETIME.days)
    return MAX_LIFETIME.days


def dated_title(category: Category, at: datetime) -> str:
    """The title the portal gives a deposit of a `DATED_TITLE_CATEGORIES` category."""
    return f"{CATEGORY_LABELS[category]} du {datetime_fr(at)}"


def _title_of(request: NewDeposit, now: datetime) -> str:
    typed = " ".join(request.title.split())
    if request.category in DATED_TITLE_CATEGORIES:
        if typed:
            label = CATEGORY_LABELS[request.category]
            raise DepositError(
                f"Pas de titre libre pour la catégorie « {label} » : le portail lui donne un "
                f"titre daté (« {label} du jj/mm/aaaa à hh:mm »). Laissez le titre vide.",
                field="title",
            )
        return dated_title(request.category, now)
    if not 1 <= len(typed) <= 200:
        raise DepositError("Le titre est obligatoire (200 caractères au plus).", field="title")
    return typed


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
    weekly_file_days: int = 7,
) -> Deposit:
    """Create a draft deposit (invisible to recipients until `publish`).

    *weekly_file_days* is `FILR_WEEKLY_FILE_LIFETIME_DAYS` (`lifetime_limit`).

    A `flux_xml` deposit is only created by `portal.flows.services.deposit_flow`
    (*validated_flow*), which publishes it only once the file passed validation.
    """
    if request.departement not in spaces_of(sender):
        raise DepositError("Vous n'avez pas accès à cet espace départemental.")
    if request.category not in categories_of(sender):
        raise DepositError("Votre rôle ne permet pas de déposer ce type de contenu.")
    if request.category is Category.FLUX_XML and not validated_flow:
        raise DepositError(_FLOWS_ONLY)
    now = utcnow()
    title = _title_of(request, now)
    if request.reason is not None and str(request.reason) not in {str(r) for r in Reason}:
        raise DepositError("Motif inconnu.", field="reason")
    limit = lifetime_limit(request.category, weekly_file_days)
    lifetime_days = limit if request.lifetime_days is None else request.lifetime_days
    if not 1 <= lifetime_days <= limit:
        if request.category is Category.HEBDO_EXPERIMENTATION:
            raise DepositError(
                "Un fichier hebdomadaire d'expérimentation reste disponible "
                f"{limit} jours au plus : choisissez une durée entre 1 et {limit} jours.",
                field="lifetime_days",
            )
        raise DepositError(
            f"La durée de conservation doit être comprise entre 1 et {limit} jours.",
            field="lifetime_days",
        )
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
    deposit = Deposit(
        id=new_id(),
        departement_code=request.departement,
        category=request.category,
        title=title,
        title_sort=fold(title),
        reason=None if request.reason is None else str(request.reason),
        sender_id=sender.id,
        sender_org_id=sender.organisation_id,
        status=DepositStatus.DRAFT,
        created_at=now,
        expires_at=now + timedelta(days=lifetime_days),
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
            "lifetime_days": lifetime_days,
        },
    )
    return deposit


@dataclass
class _Guard:
    """Counts bytes, feeds the type sniffer and the antivirus while the upload streams; keeps
    a PDF in memory (at most `PDF_CHECK_MAX_BYTES`) for its active-content check."""

    sniffer: TypeSniffer
    limit: int
    scan: UploadScan
    keeps_pdf: bool = False
    pdf: list[bytes] = field(default_factory=list)
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
                    f"Fichier trop volumineux : la taille maximale est de {size_fr(self.limit)}."
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
            if self.keeps_pdf:
                if self.size > PDF_CHECK_MAX_BYTES:
                    self.refused = FileRefused(PDF_TOO_LARGE.message_fr)
                    raise self.refused
                self.pdf.append(bytes(chunk))
            self.scan.feed(chunk)
            yield chunk


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
    antivirus: Antivirus,
    declared_size: int | None = None,
    validated_flow: bool = False,
    stored: storage.StoredObject | None = None,
    file_id: str | None = None,
) -> DepositFile:
    """Stream one file into the encrypted store and the antivirus; attach it to a draft deposit.

    With *stored* (and its *file_id*), the file is already in the store (a resumable upload,
    `portal.deposits.resumable`): *chunks* is its decrypted content, read back once through the
    same checks (type, PDF content, antivirus), and the object is destroyed if they refuse it.

    The request's transaction is committed before the upload so that no database lock is held
    while bytes arrive; on any failure the object is destroyed and nothing is attached. A file
    clamd finds a signature in is refused (`FileInfected`); one clamd could not scan, or one
    declaring (*declared_size*) more than the inline limit, is kept with its scan pending
    (`portal.deposits.antivirus`).
    """
    if (
        deposit.status != DepositStatus.DRAFT
        or deposit.held_for_scan_at is not None
        or uploader.id != deposit.sender_id
    ):
        raise DepositError("Ce dépôt n'accepte plus de fichiers.")
    _only_through_flows(deposit, validated_flow)
    display_name = safe_filename(filename)
    deposit_id, departement = deposit.id, deposit.departement_code
    file_id = file_id or new_id()
    object_key = stored.object_key if stored is not None else f"deposits/{deposit_id}/{file_id}"
    session.commit()
    guard = _Guard(
        TypeSniffer(display_name),
        size_limit,
        antivirus.scan_upload(declared_size),
        keeps_pdf=extension_of(display_name) == "pdf",
    )
    try:
        if stored is None:
            store.keyring.ensure(departement)  # the space's first file creates its key
            stored = store.put(object_key, guard.wrap(chunks), departement=departement)
        else:
            for _ in guard.wrap(chunks):
                pass
    except FileRefused:
        guard.scan.close()
        _destroy_quietly(store, object_key)
        raise
    except storage.StorageError:
        guard.scan.close()
        _destroy_quietly(store, object_key)
        if guard.refused is not None:
            raise guard.refused from None
        raise
    except BaseException:
        guard.scan.close()
        _destroy_quietly(store, object_key)
        raise
    verdict = guard.sniffer.finish()
    if not verdict.ok or stored.size == 0:
        guard.scan.close()
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
    if verdict.kind is FileKind.PDF:
        finding = check_pdf(b"".join(guard.pdf))
        guard.pdf.clear()
        if finding is not None:
            guard.scan.close()
            _destroy_quietly(store, object_key)
            audit.record(
                session,
                AuditAction.DEPOSIT_FILE_REFUSED,
                actor=uploader.audit_actor,
                context=ctx,
                outcome=Outcome.FAILURE,
                target=audit.Target("deposit", deposit_id, departement),
                details={"reason": finding.code, "size": stored.size},
            )
            session.commit()
            raise FileRefused(finding.message_fr)
    scanned = guard.scan.finish()
    if scanned is not None and scanned.signature is not None:
        _destroy_quietly(store, object_key)
        report_infected(
            session, antivirus, actor=uploader.audit_actor, ctx=ctx, deposit_id=deposit_id,
            departement=departement, file_id=file_id, signature=scanned.signature,
            size=stored.size, rescan=False,
        )  # fmt: skip
        raise FileInfected(infected_message(scanned.signature))
    if scanned is not None:
        scan_status = ScanStatus.CLEAN
    elif antivirus.lets_through(guard.scan):
        scan_status = ScanStatus.BYPASSED
    else:
        scan_status = ScanStatus.PENDING
    try:
        # Re-read under the new transaction, locked until the commit: the deposit may have been
        # withdrawn or sent meanwhile, and `publish` (which takes the same lock) must see this
        # file, pending or not, before it decides.
        if _lock_open_draft(session, deposit_id) is None:
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
            scan_status=scan_status,
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
        if scanned is None:
            record_unscanned(
                session, antivirus, actor=uploader.audit_actor, ctx=ctx, deposit_id=deposit_id,
                departement=departement, file_id=file_id, scan=guard.scan,
            )  # fmt: skip
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


def create_draft(
    session: Session,
    user: User,
    wanted: NewDeposit,
    ctx: audit.Context,
    *,
    weekly_file_days: int = 7,
) -> Deposit:
    """`create_deposit` and commit; a refusal (DepositError) rolls back and propagates."""
    try:
        deposit = create_deposit(session, user, wanted, ctx, weekly_file_days=weekly_file_days)
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
) -> bool:
    """Make a draft visible to its recipients (notifications are sent by the caller).

    Returns False when a file's scan is pending: the deposit is then held ("analyse en
    attente"), still invisible to its recipients, and `filr jobs antivirus` publishes it once
    every file is scanned clean.
    """
    if deposit.status != DepositStatus.DRAFT or sender.id != deposit.sender_id:
        raise DepositError("Ce dépôt a déjà été envoyé.")
    if deposit.held_for_scan_at is not None:
        raise DepositError(
            "Ce dépôt a déjà été envoyé : il attend l'analyse antivirus de ses fichiers."
        )
    _only_through_flows(deposit, validated_flow)
    if not deposit.files:
        raise DepositError("Ajoutez au moins un fichier avant d'envoyer le dépôt.")
    if deposit.is_expired():
        raise DepositError("Ce brouillon a expiré : créez un nouveau dépôt.")
    # The files loaded with *deposit* may be stale: another request may have attached one whose
    # scan is pending since. Under the deposit's lock (taken by `add_file` too) one conditional
    # UPDATE decides, against the files committed by now.
    if _lock_open_draft(session, deposit.id) is None:
        raise DepositError("Ce dépôt a déjà été envoyé.")
    now = utcnow()
    pending_file = sa.exists().where(
        DepositFile.deposit_id == Deposit.id,
        DepositFile.scan_status == ScanStatus.PENDING,
        DepositFile.destroyed_at.is_(None),
    )
    won = session.execute(
        sa.update(Deposit)
        .where(
            Deposit.id == deposit.id,
            Deposit.status == DepositStatus.DRAFT,
            Deposit.held_for_scan_at.is_(None),
            ~pending_file,
        )
        .values(status=DepositStatus.AVAILABLE, published_at=now)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount == 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.refresh(deposit)
        session.expire(deposit, ["files"])
        _record_published(session, deposit, sender.audit_actor, ctx)
        return True
    session.execute(
        sa.update(Deposit)
        .where(Deposit.id == deposit.id)
        .values(held_for_scan_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(deposit)
    session.expire(deposit, ["files"])
    pending = sum(1 for f in deposit.files if f.scan_status == ScanStatus.PENDING)
    audit.record(
        session,
        AuditAction.DEPOSIT_HELD_FOR_SCAN,
        actor=sender.audit_actor,
        context=ctx,
        target=_target(deposit),
        details={"files": len(deposit.files), "pending": pending},
    )
    return False


def _lock_open_draft(session: Session, deposit_id: str) -> Deposit | None:
    """The draft *deposit_id*, locked until the transaction ends, if it still takes files and
    has not been sent (neither published nor held for its scan); None otherwise."""
    return session.execute(
        sa.select(Deposit)
        .where(
            Deposit.id == deposit_id,
            Deposit.status == DepositStatus.DRAFT,
            Deposit.held_for_scan_at.is_(None),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _record_published(
    session: Session, deposit: Deposit, actor: audit.Actor, ctx: audit.Context, **details: object
) -> None:
    audit.record(
        session,
        AuditAction.DEPOSIT_PUBLISHED,
        actor=actor,
        context=ctx,
        target=_target(deposit),
        details={"files": len(deposit.files), **details},
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


# --- taking in charge, withdrawing ---------------------------------------------------------


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
