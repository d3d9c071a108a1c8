"""A stored object that fails its integrity check: audited and alerted at once, wherever read."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

import audit
import storage
from audit import AuditAction, Outcome
from portal.container import Services
from portal.securite.alerts import alert_at_once
from portal.securite.detectors import Hit
from portal.securite.models import AlertKind

log = logging.getLogger(__name__)


def report_integrity_failure(
    session: Session,
    svc: Services,
    *,
    actor: audit.Actor,
    ctx: audit.Context,
    target: audit.Target,
    deposit_id: str,
    file_id: str,
    object_key: str,
    error: storage.IntegrityError,
    sent: int,
) -> None:
    """Audit a failed integrity check and open (and e-mail) its security alert at once.

    Stored data that fails authentication means tampering with, or corruption of, the store:
    the security officers must hear of it now, not when the file is next asked for. *sent* is
    the number of plaintext bytes already handed to a person (0 when none was).
    """
    segment = error.segment if isinstance(error, storage.ObjectCorrupted) else None
    reason = error.reason if isinstance(error, storage.ObjectCorrupted) else str(error)
    event = audit.record(
        session,
        AuditAction.STORAGE_INTEGRITY_FAILED,
        actor=actor,
        context=ctx,
        outcome=Outcome.FAILURE,
        target=target,
        details={
            "deposit_id": deposit_id,
            "object_key": object_key,
            "segment": segment,
            "reason": reason,
            "bytes_sent": sent,
        },
    )
    log.error(
        "integrity check failed: object %s, segment %s (%s)",
        object_key,
        "header" if segment is None else segment,
        reason,
    )
    alert_details: dict[str, object] = {
        "deposit_id": deposit_id,
        "object_key": object_key,
        "reason": reason,
    }
    if segment is not None:
        alert_details["segment"] = segment
    alert_at_once(
        session,
        svc.mailer,
        svc.settings.base_url,
        Hit(
            kind=AlertKind.STORAGE_INTEGRITY,
            subject_type="file",
            subject_id=file_id,
            first_at=event.occurred_at,
            last_at=event.occurred_at,
            first_seq=event.seq,
            last_seq=event.seq,
            departement=target.departement,
            details=alert_details,
        ),
        ctx,
    )
