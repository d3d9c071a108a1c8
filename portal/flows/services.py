"""The verbs of flows: deposit (validate, then deliver or refuse whole), flag as unusable.

No request and no flash here: callers pass the session, the services and the audit context.
A flow is a deposit of category `flux_xml`: the upload, encryption, publication, notification,
download receipts and purge are the deposits' own; this module adds the validation gate in
front of publication and the flow's metadata (type, period, counts) beside it.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session, contains_eager

import audit
import storage
from audit import AuditAction, Outcome
from portal.accounts.models import AccountStatus, Role, User
from portal.container import Services
from portal.db import is_well_formed_id, utcnow
from portal.deposits import notifications, purge
from portal.deposits import services as deposits
from portal.deposits.antivirus import Antivirus
from portal.deposits.integrity import report_integrity_failure
from portal.deposits.models import MAX_LIFETIME, Category, Deposit, DepositStatus
from portal.deposits.permissions import can_see_deposit, is_sender_side, visible_deposits
from portal.flows.core.codes import NATURES_ORIENTATION
from portal.flows.core.report import ValidationIssue, ValidationReport
from portal.flows.core.rules import Rule
from portal.flows.core.sanity import PeriodCounts, SanityFinding, Thresholds, compare_periods
from portal.flows.core.types import FlowType, Severity
from portal.flows.core.validator import paris_today, validate
from portal.flows.models import FlowDeposit, FlowStatus
from portal.flows.permissions import can_deposit_flow, depositable_flows
from portal.mail import deliver
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.permissions import is_national
from portal.text import fold

log = logging.getLogger("portal.flows")

MONTHS_FR = (
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
    "octobre", "novembre", "décembre",
)  # fmt: skip
REPORT_SALT = b"filr flow reports v1"
NATURE_LABELS = NATURES_ORIENTATION


class FlowError(deposits.DepositError):
    """A flow cannot be deposited or flagged (French message for people)."""

    code = "flow_refused"


# --- periods and lifetimes -------------------------------------------------------------------


def is_weekly(flow_type: FlowType) -> bool:
    """PECDH is weekly. CGPEM is monthly whatever its header says: the convention's table
    copies the `H` of PECDH by mistake, and the validator accepts both (see the spec)."""
    return flow_type is FlowType.PECDH


def period_of(flow_type: FlowType, day: date) -> date:
    """The period *day* belongs to: the first of the month, or the Monday of a PECDH week."""
    if flow_type is FlowType.PECDH:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_label(flow_type: FlowType | None, start: date) -> str:
    """`novembre 2026`, or `semaine du 16/11/2026` for a PECDH."""
    if flow_type is FlowType.PECDH:
        return f"semaine du {start.strftime('%d/%m/%Y')}"
    return f"{MONTHS_FR[start.month - 1]} {start.year}"


def lifetime_days(svc: Services, flow_type: FlowType) -> int:
    """Expiry from the settings, never more than the 90-day maximum of every deposit."""
    wanted = (
        svc.settings.weekly_flow_lifetime_days
        if is_weekly(flow_type)
        else svc.settings.monthly_flow_lifetime_days
    )
    return max(1, min(wanted, MAX_LIFETIME.days))


def thresholds(svc: Services) -> Thresholds:
    """The sanity thresholds of the settings."""
    drop = min(svc.settings.flow_sanity_drop_percent, 100)
    return Thresholds(drop=-drop / 100, jump=svc.settings.flow_sanity_jump_percent / 100)


# --- sealed reports --------------------------------------------------------------------------


def _report_aead(secret_key: str) -> AESGCM:
    key = HKDF(algorithm=SHA256(), length=32, salt=None, info=REPORT_SALT).derive(
        secret_key.encode()
    )
    return AESGCM(key)


def seal_report(secret_key: str, flow_id: str, report: ValidationReport) -> str:
    """The report as JSON, encrypted and bound to its flow: its values may quote the file."""
    nonce = os.urandom(12)
    plain = json.dumps(report.to_dict(), ensure_ascii=False).encode()
    sealed = _report_aead(secret_key).encrypt(nonce, plain, flow_id.encode())
    return "v1:" + base64.urlsafe_b64encode(nonce + sealed).decode()


def open_report(secret_key: str, flow: FlowDeposit) -> dict[str, Any] | None:
    """The report stored with *flow* (a dict as `ValidationReport.to_dict`), if any."""
    if not flow.report_sealed or not flow.report_sealed.startswith("v1:"):
        return None
    raw = base64.urlsafe_b64decode(flow.report_sealed[3:])
    try:
        plain = _report_aead(secret_key).decrypt(raw[:12], raw[12:], flow.id.encode())
    except InvalidTag:
        # Sealed under another FILR_SECRET_KEY (rotated since): the report cannot be read any
        # more; the flow's page says so instead of failing.
        log.warning("flow report unreadable, sealed under another secret key (flow %s)", flow.id)
        return None
    value: dict[str, Any] = json.loads(plain)
    return value


def report_csv(report: dict[str, Any]) -> str:
    """The stored report as the validator's CSV (`;`, formulas neutralised)."""
    issues = tuple(
        ValidationIssue(
            Severity(i["severity"]),
            Rule(i["rule"]),
            i["message"],
            i.get("line"),
            i.get("record"),
            i.get("field"),
            i.get("value"),
        )
        for i in report.get("issues", [])
    )
    rebuilt = ValidationReport(
        flow_type=None, version=None, departement=None, date_reference=None,
        date_fabrication=None, periodicite=None, record_count=0, nature_counts={},
        issues=issues, error_count=0, warning_count=0,
        omitted_counts=report.get("omitted_counts", {}), rule_counts={}, size_bytes=0,
    )  # fmt: skip
    return rebuilt.to_csv()


# --- reading the stored object ---------------------------------------------------------------


class _StoredReader(io.RawIOBase):
    """The decrypted chunks of a stored object as a binary file for the validator."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = memoryview(chunk)
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]  # a view: no copy of the rest of the chunk
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


# --- depositing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowOutcome:
    """What happened to a deposited file."""

    flow: FlowDeposit
    report: ValidationReport
    findings: tuple[SanityFinding, ...] = ()
    notified: int = 0
    # Valid, but a file's antivirus scan is pending: delivered by `filr jobs antivirus`.
    held_for_scan: bool = False


def recipient_organisations(session: Session, sender: User, departement: str) -> list[Organisation]:
    """The other side of the flow in the space: France Travail structures of the département for
    a CGPEM (the national structure excepted), the département for PECGM and PECDH."""
    if OrgKind(sender.organisation.kind) is OrgKind.DEPARTEMENT:
        wanted = OrgKind.FRANCE_TRAVAIL
    else:
        wanted = OrgKind.DEPARTEMENT
    return [
        org
        for org in deposits.recipient_choices(session, sender, departement)
        if OrgKind(org.kind) is wanted and not is_national(org)
    ]


def _side_error(report: ValidationReport, allowed: tuple[FlowType, ...]) -> ValidationReport:
    """The report with one more error: this side does not deposit this flow."""
    names = ", ".join(str(f) for f in allowed)
    issue = ValidationIssue(
        Severity.ERROR,
        Rule.ENTETE_FICHIER,
        f"Ce fichier est un flux {report.flow_type} : vous ne pouvez déposer que {names}.",
        None,
        None,
        "entete/fichier",
        report.flow_type.fichier if report.flow_type else None,
    )
    return dataclasses.replace(
        report, issues=(issue, *report.issues), error_count=report.error_count + 1
    )


def previous_counts(
    session: Session, departement: str, flow_type: FlowType, period: date
) -> PeriodCounts | None:
    """Counts of the latest valid file of the same flow for an earlier period."""
    flow = session.execute(
        sa.select(FlowDeposit)
        .join(Deposit, Deposit.id == FlowDeposit.deposit_id)
        .where(
            FlowDeposit.departement_code == departement,
            FlowDeposit.flow_type == flow_type,
            FlowDeposit.status == FlowStatus.VALID,
            FlowDeposit.period_start < period,
            Deposit.withdrawn_at.is_(None),
        )
        .order_by(FlowDeposit.period_start.desc(), FlowDeposit.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if flow is None:
        return None
    return PeriodCounts(flow.record_count, flow.nature_counts)


def _finding_dict(finding: SanityFinding) -> dict[str, Any]:
    return {
        "kind": str(finding.kind),
        "direction": str(finding.direction),
        "subject": finding.subject,
        "previous": finding.previous,
        "current": finding.current,
        "change": finding.change,
        "message": finding.message,
    }


def sanity_notice(findings: Iterable[dict[str, Any]]) -> str | None:
    """The paragraph added to the notification when the sanity check flagged the file."""
    messages = [f"- {f['message']}" for f in findings]
    if not messages:
        return None
    return (
        "ATTENTION : ce flux diffère nettement de celui de la période précédente "
        "(comparaison des seuls nombres de dossiers) :\n" + "\n".join(messages)
    )


def deposit_flow(
    session: Session,
    svc: Services,
    user: User,
    departement: str,
    expected_type: FlowType | None,
    filename: str,
    chunks: Iterable[bytes],
    ctx: audit.Context,
    *,
    today: date | None = None,
    declared_size: int | None = None,
) -> FlowOutcome:
    """Store, validate, then deliver a flow to the other side, or refuse it whole.

    The file streams into the encrypted store as any deposit's (a draft nobody else sees), is
    validated from the stored object, and only then published. A refused file's object is
    destroyed before this returns, and its draft was never visible to a recipient.
    """
    allowed = depositable_flows(user)
    if not can_deposit_flow(user, departement):
        raise FlowError("Vous ne pouvez pas déposer de flux dans cet espace.")
    if expected_type is not None and expected_type not in allowed:
        names = ", ".join(str(f) for f in allowed)
        raise FlowError(f"Vous ne pouvez déposer que les flux {names}.")
    recipients = recipient_organisations(session, user, departement)
    if not recipients:
        raise FlowError(
            "Aucune organisation destinataire n'est habilitée pour ce département : "
            "contactez votre gestionnaire de comptes."
        )
    today = today or paris_today()
    draft = deposits.create_deposit(
        session,
        user,
        deposits.NewDeposit(
            departement=departement,
            category=Category.FLUX_XML,
            title="Flux XML en cours de vérification",
            recipient_org_ids=[o.id for o in recipients],
            lifetime_days=MAX_LIFETIME.days,
        ),
        ctx,
        validated_flow=True,
    )
    deposit_id = draft.id
    session.commit()
    try:
        record = deposits.add_file(
            session, svc.store, user, draft, filename, chunks,
            size_limit=svc.settings.max_upload_bytes, ctx=ctx, validated_flow=True,
            antivirus=Antivirus.of(svc), declared_size=declared_size,
        )  # fmt: skip
    except BaseException:
        session.rollback()
        _discard(session, svc, user, deposit_id, ctx)
        raise
    object_key, size, sha256 = record.object_key, record.size, record.sha256
    file_id = record.id
    # add_file committed: nothing is held while the store is read back.
    if len(allowed) == 1 and expected_type is None:
        expected_type = allowed[0]
    try:
        with _StoredReader(svc.store.open(object_key)) as reader:
            report = validate(
                reader,  # type: ignore[arg-type] # a RawIOBase is a binary file, not a BinaryIO
                expected_type=expected_type,
                departement=departement,
                today=today,
            )
    except storage.IntegrityError as e:
        # Read back moments after it was written: the store alters or corrupts what it holds.
        try:
            report_integrity_failure(
                session, svc, actor=user.audit_actor, ctx=ctx,
                target=audit.Target("file", file_id, departement), deposit_id=deposit_id,
                file_id=file_id, object_key=object_key, error=e, sent=0,
            )  # fmt: skip
        finally:
            _discard(session, svc, user, deposit_id, ctx)
        raise deposits.FileCorrupted(
            "Le fichier a été endommagé dans l'espace de stockage pendant sa vérification : "
            "rien n'a été transmis. L'équipe sécurité a été alertée ; déposez-le à nouveau."
        ) from e
    except BaseException:
        _discard(session, svc, user, deposit_id, ctx)
        raise
    if report.flow_type is not None and report.flow_type not in allowed:
        report = _side_error(report, allowed)
    flow_type = report.flow_type or expected_type
    period = period_of(flow_type or FlowType.CGPEM, report.date_reference or today)
    deposit = session.get(Deposit, deposit_id, populate_existing=True)
    assert deposit is not None  # noqa: S101 - created above, never deleted
    flow = FlowDeposit(
        deposit_id=deposit_id,
        departement_code=departement,
        sender_org_id=user.organisation_id,
        flow_type=str(flow_type) if flow_type else None,
        period_start=period,
        version=report.version,
        periodicite=report.periodicite,
        date_reference=report.date_reference,
        record_count=report.record_count,
        nature_counts_json=json.dumps(dict(report.nature_counts), sort_keys=True),
        error_count=report.error_count,
        warning_count=report.warning_count,
        created_at=utcnow(),
    )
    target = audit.Target("deposit", deposit_id, departement)
    name = f"Flux {flow_type or 'XML'} — {departement} — {period_label(flow_type, period)}"
    if not report.is_valid or flow_type is None:
        title = f"{name} (refusé)"
        deposit.title, deposit.title_sort = title, fold(title)
        session.commit()
        _discard(session, svc, user, deposit_id, ctx)
        flow.status = FlowStatus.REJECTED
        session.add(flow)
        session.flush()
        flow.report_sealed = seal_report(svc.settings.secret_key, flow.id, report)
        audit.record(
            session,
            AuditAction.FLOW_REJECTED,
            actor=user.audit_actor,
            context=ctx,
            outcome=Outcome.FAILURE,
            target=target,
            details={
                "flow_id": flow.id,
                "flow_type": flow.flow_type,
                "errors": report.error_count,
                "warnings": report.warning_count,
                "records": report.record_count,
            },
        )
        session.commit()
        return FlowOutcome(flow, report)
    findings = compare_periods(
        PeriodCounts.from_report(report),
        previous_counts(session, departement, flow_type, period),
        thresholds(svc),
    )
    flow.status = FlowStatus.VALID
    flow.sanity_json = json.dumps([_finding_dict(f) for f in findings], ensure_ascii=False)
    session.add(flow)
    session.flush()
    flow.report_sealed = seal_report(svc.settings.secret_key, flow.id, report)
    deposit.title, deposit.title_sort = name, fold(name)
    deposit.expires_at = deposit.created_at + timedelta(days=lifetime_days(svc, flow_type))
    published = deposits.publish(session, user, deposit, ctx, validated_flow=True)
    audit.record(
        session,
        AuditAction.FLOW_VALIDATED,
        actor=user.audit_actor,
        context=ctx,
        target=target,
        details={
            "flow_id": flow.id,
            "flow_type": str(flow_type),
            "period": period.isoformat(),
            "records": report.record_count,
            "warnings": report.warning_count,
            "size": size,
            "sha256": sha256,
        },
    )
    if findings:
        audit.record(
            session,
            AuditAction.FLOW_SANITY_FLAGGED,
            actor=user.audit_actor,
            context=ctx,
            target=target,
            details={"flow_id": flow.id, "findings": [f"{f.kind}:{f.direction}" for f in findings]},
        )
    session.commit()
    if not published:  # held for the antivirus: `filr jobs antivirus` notifies
        return FlowOutcome(flow, report, findings, 0, held_for_scan=True)
    notified = notifications.notify_recipients(
        session, svc, deposit, ctx, notice=sanity_notice(flow.sanity)
    )
    return FlowOutcome(flow, report, findings, notified)


def _discard(
    session: Session, svc: Services, user: User, deposit_id: str, ctx: audit.Context
) -> None:
    """Destroy a refused flow's draft and its stored objects at once."""
    try:
        purge.destroy_content(
            session, svc.store, deposit_id, reason="flow_refused", actor=user.audit_actor, ctx=ctx
        )
    except storage.StorageError:
        # The draft is already recorded destroyed and out of everyone's reach: the purge's next
        # run shreds what the store could not (see purge.finish_destructions).
        session.rollback()
        log.warning("refused flow not destroyed yet (deposit %s)", deposit_id)


def forget_old_reports(session: Session, now: datetime, *, dry_run: bool = False) -> int:
    """Drop the sealed reports older than the 90-day life of any deposit (they may quote the
    file); the counts stay for the follow-up table. Returns how many were (or would be) dropped.
    """
    old = sa.and_(
        FlowDeposit.report_sealed.is_not(None), FlowDeposit.created_at < now - MAX_LIFETIME
    )
    if dry_run:
        count = session.execute(
            sa.select(sa.func.count()).select_from(FlowDeposit).where(old)
        ).scalar_one()
        session.commit()
        return int(count)
    result = session.execute(sa.update(FlowDeposit).where(old).values(report_sealed=None))
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined] # DML returns a CursorResult


# --- reading ---------------------------------------------------------------------------------


def find_flow(session: Session, user: User, flow_id: str, ctx: audit.Context) -> FlowDeposit | None:
    """The flow if *user* may see its deposit (THE isolation check, audited); None otherwise.

    Shaped like `deposits.find_deposit`, for the same reason: a flow of another space and an
    unknown id run the same statements, so the time of the 404 does not tell which ids exist.
    """
    if not is_well_formed_id(flow_id):
        deposits.refuse_unseen(session, user, ctx, audit.Target("flow"))
        return None
    flow = session.execute(
        sa.select(FlowDeposit)
        .join(FlowDeposit.deposit)
        .options(contains_eager(FlowDeposit.deposit))
        .where(FlowDeposit.id == flow_id, visible_deposits(user))
    ).scalar_one_or_none()
    if flow is not None and can_see_deposit(user, flow.deposit):
        return flow
    found = session.execute(
        sa.select(Deposit.id, Deposit.departement_code)
        .join(FlowDeposit, FlowDeposit.deposit_id == Deposit.id)
        .where(FlowDeposit.id == flow_id)
    ).first()
    # A refusal on a real flow is on its deposit (the deposit's timeline shows it).
    target = (
        audit.Target("deposit", found.id, found.departement_code)
        if found is not None
        else audit.Target("flow", flow_id)
    )
    deposits.refuse_unseen(session, user, ctx, target)
    return None


def flow_of_deposit(session: Session, deposit_id: str) -> FlowDeposit | None:
    """The flow record of a deposit, if it is one."""
    return session.execute(
        sa.select(FlowDeposit).where(FlowDeposit.deposit_id == deposit_id)
    ).scalar_one_or_none()


def can_flag_unusable(user: User, flow: FlowDeposit) -> bool:
    """The receiving side may flag a delivered flow as unusable, once."""
    deposit = flow.deposit
    return (
        flow.is_valid
        and flow.unusable_at is None
        and user.has_role(Role.TECHNICIEN)
        and can_see_deposit(user, deposit)
        and not is_sender_side(user, deposit)
        and deposit.status == DepositStatus.AVAILABLE
    )


def sender_side_technicians(session: Session, flow: FlowDeposit) -> list[User]:
    """Active technicians of the organisation that deposited *flow*."""
    users = session.execute(
        sa.select(User).where(
            User.organisation_id == flow.sender_org_id, User.status == AccountStatus.ACTIVE
        )
    ).scalars()
    return [u for u in users if u.has_role(Role.TECHNICIEN)]


def flag_unusable(
    session: Session,
    svc: Services,
    user: User,
    flow: FlowDeposit,
    reason: str,
    ctx: audit.Context,
) -> int:
    """Record that the receiving side cannot use *flow*; e-mail the sending side.

    The reason is shown on the flow's page only: it is free text, so it stays out of the audit
    trail and of e-mails. Returns the number of e-mails sent.
    """
    reason = " ".join(reason.split())
    if not can_flag_unusable(user, flow):
        session.rollback()
        raise FlowError("Ce flux ne peut pas être signalé comme inexploitable.")
    if not 5 <= len(reason) <= 500:
        session.rollback()
        raise FlowError("Indiquez la raison (entre 5 et 500 caractères).")
    won = session.execute(
        sa.update(FlowDeposit)
        .where(FlowDeposit.id == flow.id, FlowDeposit.unusable_at.is_(None))
        .values(unusable_at=utcnow(), unusable_by_id=user.id, unusable_reason=reason)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined] # DML returns a CursorResult
        session.rollback()
        raise FlowError("Ce flux a déjà été signalé comme inexploitable.")
    audit.record(
        session,
        AuditAction.FLOW_FLAGGED_UNUSABLE,
        actor=user.audit_actor,
        context=ctx,
        target=audit.Target("deposit", flow.deposit_id, flow.departement_code),
        details={"flow_id": flow.id, "flow_type": flow.flow_type},
    )
    session.commit()
    session.refresh(flow)
    flow_type = FlowType(flow.flow_type) if flow.flow_type else None
    subject = f"Fil'R : un flux {flow.flow_type} a été signalé inexploitable"
    body = (
        "Bonjour,\n\n"
        f"Le flux {flow.flow_type} ({period_label(flow_type, flow.period_start)}) déposé dans "
        f"l'espace {flow.departement_code} — {DEPARTEMENTS[flow.departement_code]} a été signalé "
        "comme inexploitable par l'organisation destinataire.\n\n"
        "La raison indiquée est visible sur le portail :\n"
        f"{svc.settings.base_url}/flux/depots/{flow.id}\n\n"
        "Ce message ne contient volontairement aucune information sur le contenu du flux.\n\n"
        "-- \nFil'R, échanges sécurisés RSA / France Travail\n"
    )
    sent = 0
    for recipient in sender_side_technicians(session, flow):
        sent += deliver(
            svc.mailer, recipient.email, subject, body,
            what="unusable-flow mail", about=f"user {recipient.id}",
        )  # fmt: skip
    return sent


def recipient_names(session: Session, deposit: Deposit) -> list[str]:
    """Names of the recipient organisations of *deposit*."""
    ids = [r.organisation_id for r in deposit.recipients if r.organisation_id]
    if not ids:
        return []
    return list(
        session.execute(
            sa.select(Organisation.name).where(Organisation.id.in_(ids)).order_by(Organisation.name)
        ).scalars()
    )
