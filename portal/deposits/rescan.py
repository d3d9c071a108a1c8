"""`filr jobs antivirus`: scan what clamd could not scan at upload, publish what waited for it.

Each file whose scan is pending is read back through the encrypted store (decrypted as it
streams, never written to disk) and sent to clamd. Clean: the file is marked so. A signature:
the whole deposit is refused (destroyed as a withdrawal is, audited, alerted). A deposit its
sender sent meanwhile ("analyse en attente") is published once none of its files is pending,
and its recipients are told then. While clamd is still unavailable the job changes nothing
and exits 1, so that monitoring sees it. `filr jobs antivirus-signatures` checks the age of
clamd's signatures (`check_signatures`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
import storage
from audit import AuditAction, Outcome
from portal.container import Services
from portal.db import utcnow
from portal.deposits import notifications
from portal.deposits.antivirus import Antivirus, report_infected
from portal.deposits.models import Deposit, DepositFile, DepositStatus, ScanStatus
from portal.deposits.purge import destroy_content
from portal.filecheck.clamd import ClamdUnavailable, signature_date
from portal.securite.alerts import alert_at_once
from portal.securite.detectors import Hit
from portal.securite.models import AlertKind

log = logging.getLogger(__name__)


@dataclass
class RescanReport:
    """What one run did (or would do, with --dry-run)."""

    pending: int = 0
    clean: int = 0
    infected: int = 0
    published: int = 0
    still_held: int = 0
    unscannable: int = 0
    alerted: int = 0  # files whose failed attempts reached the setting's count in this run
    unavailable: str | None = None


def rescan_pending(
    session: Session, svc: Services, ctx: audit.Context, *, dry_run: bool = False
) -> RescanReport:
    """One run of the job: the pending files, then the deposits they held."""
    report = RescanReport()
    antivirus = Antivirus.of(svc)
    if not svc.clamd.ping():
        report.unavailable = "clamd does not answer PING"
    pending = session.execute(
        sa.select(DepositFile.id, DepositFile.deposit_id, DepositFile.object_key, DepositFile.size)
        .join(Deposit, Deposit.id == DepositFile.deposit_id)
        .where(
            DepositFile.scan_status == ScanStatus.PENDING,
            DepositFile.destroyed_at.is_(None),
            # Published ones too: none should be (`publish` holds a deposit with a pending
            # file), but one left by an older version must still be scanned (never served).
            Deposit.status.in_((DepositStatus.DRAFT, DepositStatus.AVAILABLE)),
        )
        .order_by(DepositFile.created_at)
    ).all()
    session.commit()
    report.pending = len(pending)
    if dry_run or report.unavailable is not None:
        report.still_held = _held_count(session)
        return report
    refused: set[str] = set()
    for file_id, deposit_id, object_key, size in pending:
        if deposit_id in refused:
            continue
        try:
            verdict = svc.clamd.scan(svc.store.open(object_key))
        except ClamdUnavailable as e:
            if not svc.clamd.ping():
                report.unavailable = str(e)
                break
            # clamd is up but gave no verdict on this one file (over its StreamMaxLength, an
            # ERROR reply, a timeout on a big file): the others are scanned all the same; this
            # one stays pending, tried again at the next run, and the run exits 1. Its failed
            # attempts are counted: at the setting's count, one alert.
            report.unscannable += 1
            log.warning("antivirus: clamd gave no verdict on file %s (%s)", file_id, e)
            report.alerted += _count_failed_attempt(session, svc, ctx, file_id, deposit_id)
            continue
        except storage.StorageError as e:
            # Unreadable now (store down, or damaged): it stays pending, tried at the next run.
            log.warning("antivirus: file %s cannot be read back (%s)", file_id, type(e).__name__)
            continue
        if verdict.signature is None:
            session.execute(
                sa.update(DepositFile)
                .where(DepositFile.id == file_id, DepositFile.scan_status == ScanStatus.PENDING)
                .values(scan_status=ScanStatus.CLEAN)
            )
            session.commit()
            report.clean += 1
            continue
        report.infected += 1
        refused.add(deposit_id)
        _refuse(session, svc, antivirus, ctx, deposit_id, file_id, verdict.signature, size)
    report.published = _publish_cleared(session, svc, ctx)
    report.still_held = _held_count(session)
    return report


def _count_failed_attempt(
    session: Session, svc: Services, ctx: audit.Context, file_id: str, deposit_id: str
) -> int:
    """Count one failed scan of a pending file; 1 if this attempt raised the alert, else 0.

    The count goes up in one UPDATE that returns it: of two runs at the same time, exactly
    one sees the count reach the setting, so the alert is raised once.
    """
    attempts = session.execute(
        sa.update(DepositFile)
        .where(DepositFile.id == file_id, DepositFile.scan_status == ScanStatus.PENDING)
        .values(scan_attempts=DepositFile.scan_attempts + 1)
        .returning(DepositFile.scan_attempts)
    ).scalar_one_or_none()
    session.commit()
    if attempts != svc.settings.antivirus_max_scan_attempts:
        return 0
    deposit = session.get(Deposit, deposit_id)
    if deposit is None:
        return 0
    departement, org_id = deposit.departement_code, deposit.sender_org_id
    event = audit.record(
        session,
        AuditAction.DEPOSIT_SCAN_FAILING,
        context=ctx,
        outcome=Outcome.FAILURE,
        target=audit.Target("file", file_id, departement),
        details={"deposit_id": deposit_id, "attempts": attempts},
    )
    log.warning("antivirus: %d failed scans of file %s: alert raised", attempts, file_id)
    alert_at_once(
        session,
        svc.mailer,
        svc.settings.base_url,
        Hit(
            kind=AlertKind.ANTIVIRUS_SCAN_FAILING,
            subject_type="file",
            subject_id=file_id,
            first_at=event.occurred_at,
            last_at=event.occurred_at,
            first_seq=event.seq,
            last_seq=event.seq,
            departement=departement,
            organisation_id=org_id,
            details={"deposit_id": deposit_id, "attempts": attempts},
        ),
        ctx,
    )
    return 1


def _refuse(
    session: Session,
    svc: Services,
    antivirus: Antivirus,
    ctx: audit.Context,
    deposit_id: str,
    file_id: str,
    signature: str,
    size: int,
) -> None:
    deposit = session.get(Deposit, deposit_id)
    if deposit is None:
        return
    departement, sender, status = (
        deposit.departement_code,
        audit.Actor(deposit.sender_id, deposit.sender_org_id),
        DepositStatus(deposit.status),
    )
    if status not in (DepositStatus.DRAFT, DepositStatus.AVAILABLE):
        return
    destroyed = destroy_content(
        session, svc.store, deposit_id, reason="infected", actor=audit.SYSTEM, ctx=ctx,
        expected_status=status,
    )  # fmt: skip
    if destroyed is None:
        return  # withdrawn or destroyed meanwhile: nothing of it reaches anyone
    report_infected(
        session, antivirus, actor=sender, ctx=ctx, deposit_id=deposit_id,
        departement=departement, file_id=file_id, signature=signature, size=size, rescan=True,
    )  # fmt: skip


def _publish_cleared(session: Session, svc: Services, ctx: audit.Context) -> int:
    held = (
        session.execute(
            sa.select(Deposit.id).where(
                Deposit.status == DepositStatus.DRAFT,
                Deposit.held_for_scan_at.is_not(None),
                ~sa.exists().where(
                    DepositFile.deposit_id == Deposit.id,
                    DepositFile.scan_status == ScanStatus.PENDING,
                ),
            )
        )
        .scalars()
        .all()
    )
    session.commit()
    published = 0
    for deposit_id in held:
        now = utcnow()
        # One conditional UPDATE decides, against a withdrawal or another run at the same time.
        won = session.execute(
            sa.update(Deposit)
            .where(
                Deposit.id == deposit_id,
                Deposit.status == DepositStatus.DRAFT,
                Deposit.held_for_scan_at.is_not(None),
                Deposit.expires_at > now,
            )
            .values(status=DepositStatus.AVAILABLE, published_at=now)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
            session.rollback()
            continue
        deposit = session.get(Deposit, deposit_id, populate_existing=True)
        assert deposit is not None  # noqa: S101 - just updated
        audit.record(
            session,
            AuditAction.DEPOSIT_PUBLISHED,
            actor=audit.Actor(deposit.sender_id, deposit.sender_org_id),
            context=ctx,
            target=audit.Target("deposit", deposit.id, deposit.departement_code),
            details={"files": len(deposit.files), "after_scan": True},
        )
        session.commit()
        notifications.notify_recipients(session, svc, deposit, ctx, notice=_flow_notice(deposit))
        published += 1
    return published


def _flow_notice(deposit: Deposit) -> str | None:
    """A flow's sanity notice, as its deposit would have carried it without the wait."""
    from portal.flows.services import flow_of_deposit, sanity_notice

    session = Session.object_session(deposit)
    flow = flow_of_deposit(session, deposit.id) if session is not None else None
    return sanity_notice(flow.sanity) if flow is not None else None


def _held_count(session: Session) -> int:
    count = session.execute(
        sa.select(sa.func.count())
        .select_from(Deposit)
        .where(Deposit.status == DepositStatus.DRAFT, Deposit.held_for_scan_at.is_not(None))
    ).scalar_one()
    session.commit()
    return int(count)


def signatures_job(
    session: Session, svc: Services, ctx: audit.Context, *, now: datetime, dry_run: bool = False
) -> tuple[str | None, bool]:
    """clamd's VERSION (None when unavailable) and whether its signatures raised an alert."""
    try:
        version = svc.clamd.version()
    except ClamdUnavailable:
        return None, False
    return version, check_signatures(session, svc, ctx, version, now=now, dry_run=dry_run)


def check_signatures(
    session: Session,
    svc: Services,
    ctx: audit.Context,
    version: str,
    *,
    now: datetime,
    dry_run: bool = False,
) -> bool:
    """Alert when clamd's signatures are older than the setting, or carry no date; True then.

    A daemon on local databases only (the demo, the tests) has no dated signatures: that is
    an alert too, since nothing proves they are current.
    """
    dated = signature_date(version)
    limit = timedelta(hours=svc.settings.antivirus_max_signature_age_hours)
    if dated is not None and now - dated <= limit:
        return False
    if dry_run:
        return True
    age_hours = None if dated is None else int((now - dated).total_seconds() // 3600)
    event = audit.record(
        session,
        AuditAction.ANTIVIRUS_SIGNATURES_STALE,
        context=ctx,
        outcome=Outcome.FAILURE,
        target=audit.Target("antivirus", "clamd"),
        details={"version": version[:120], "age_hours": age_hours},
    )
    alert_at_once(
        session,
        svc.mailer,
        svc.settings.base_url,
        Hit(
            kind=AlertKind.ANTIVIRUS_STALE,
            subject_type="antivirus",
            subject_id="clamd",
            first_at=event.occurred_at,
            last_at=event.occurred_at,
            first_seq=event.seq,
            last_seq=event.seq,
            details={"version": version[:120], "age_hours": age_hours},
        ),
        ctx,
    )
    return True
