"""The antivirus at upload: each file is sent to clamd while it streams into the store.

The upload's chunks are written to clamd's socket as they go by (`UploadScan`), so the scan
costs no second read of the file; clamd gives its verdict once the last chunk is sent. A
detection refuses the file (its ciphertext destroyed, audited, alerted at once). Fail closed:
when clamd cannot give a verdict (not running, killed mid-scan, too slow), the file is kept
with its scan *pending*, and its deposit cannot reach anyone before `filr jobs antivirus`
(`portal.deposits.rescan`) has scanned it, unless the deployment set the explicit,
audited FILR_ANTIVIRUS_BYPASS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

import audit
from audit import AuditAction, Outcome
from portal.container import Services
from portal.filecheck.clamd import ClamdClient, ClamdStream, ClamdUnavailable, ScanVerdict
from portal.filecheck.verdict import Chunk
from portal.mail import Mailer
from portal.securite.alerts import alert_at_once
from portal.securite.detectors import Hit
from portal.securite.models import AlertKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Antivirus:
    """What an upload needs of the antivirus: clamd, the bypass setting, and who to alert."""

    client: ClamdClient
    bypass: bool
    mailer: Mailer
    base_url: str
    inline_max_bytes: int

    def lets_through(self, scan: UploadScan) -> bool:
        """Whether the bypass lets the file of a failed *scan* through unscanned: only when it
        is on and clamd does not answer PING now. A scan that failed while clamd is up (an
        upload stalled past clamd's ReadTimeout, a stream over its StreamMaxLength) waits for
        `filr jobs antivirus` instead."""
        scan.bypassed = scan.failure is not None and self.bypass and not self.client.ping()
        return scan.bypassed

    @classmethod
    def of(cls, svc: Services) -> Antivirus:
        """The antivirus of the application's services."""
        settings = svc.settings
        return cls(
            svc.clamd,
            settings.antivirus_bypass,
            svc.mailer,
            settings.base_url,
            settings.antivirus_inline_max_bytes,
        )

    def scan_upload(self, declared_size: int | None) -> UploadScan:
        """The scan of one upload: while it streams, or after it (`filr jobs antivirus`) when
        it declares more than `inline_max_bytes` (a big file's upload does not wait for clamd).
        """
        if declared_size is not None and declared_size > self.inline_max_bytes:
            # Let through (bypass) only when clamd is down, as for a scan while streaming.
            down = self.bypass and not self.client.ping()
            return UploadScan(None, failure="clamd unreachable" if down else None)
        return UploadScan(self.client)


def infected_message(signature: str) -> str:
    """The French refusal naming the signature clamd found."""
    return (
        f"Fichier refusé : l'antivirus y a détecté « {signature} ». Il a été supprimé sans "
        "être transmis et l'équipe sécurité a été alertée. Si ce fichier vous semble sain, "
        "contactez-la avant de le déposer à nouveau."
    )


class UploadScan:
    """The scan of one upload, fed chunk by chunk; a failure of clamd is kept, never raised."""

    def __init__(self, client: ClamdClient | None, *, failure: str | None = None) -> None:
        # No client: the file is scanned after its upload (`is_after_upload`).
        self.is_after_upload = client is None and failure is None
        self.failure = failure
        self.bypassed = False  # decided by `Antivirus.lets_through`
        self._stream: ClamdStream | None = None
        if client is not None:
            try:
                self._stream = client.stream()
            except ClamdUnavailable as e:
                self.failure = str(e)

    def feed(self, chunk: Chunk) -> None:
        """Send one chunk to clamd; on a failure, stop sending and remember it."""
        if self._stream is None:
            return
        try:
            self._stream.feed(chunk)
        except ClamdUnavailable as e:
            self.failure = str(e)
            self._stream = None

    def finish(self) -> ScanVerdict | None:
        """clamd's verdict, or None when it could not give one (the scan is then pending)."""
        stream, self._stream = self._stream, None
        if stream is None:
            return None
        try:
            return stream.finish()
        except ClamdUnavailable as e:
            self.failure = str(e)
            return None

    def close(self) -> None:
        """Abandon the scan (the upload failed or was refused)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def report_infected(
    session: Session,
    antivirus: Antivirus,
    *,
    actor: audit.Actor,
    ctx: audit.Context,
    deposit_id: str,
    departement: str,
    file_id: str,
    signature: str,
    size: int,
    rescan: bool,
) -> None:
    """Audit a detection and open (and e-mail) its security alert at once; commits.

    The trail keeps the signature's name, the ids and the size: never the file's name (it
    often carries a person's name).
    """
    event = audit.record(
        session,
        AuditAction.DEPOSIT_FILE_INFECTED,
        actor=actor,
        context=ctx,
        outcome=Outcome.DENIED,
        target=audit.Target("file", file_id, departement),
        details={
            "deposit_id": deposit_id,
            "signature": signature,
            "size": size,
            "rescan": rescan,
        },
    )
    log.warning("antivirus: signature %s found in file %s", signature, file_id)
    alert_at_once(
        session,
        antivirus.mailer,
        antivirus.base_url,
        Hit(
            kind=AlertKind.MALWARE_DETECTED,
            subject_type="file",
            subject_id=file_id,
            first_at=event.occurred_at,
            last_at=event.occurred_at,
            first_seq=event.seq,
            last_seq=event.seq,
            departement=departement,
            organisation_id=actor.org_id,
            details={"deposit_id": deposit_id, "signature": signature},
        ),
        ctx,
    )


def record_unscanned(
    session: Session,
    antivirus: Antivirus,
    *,
    actor: audit.Actor,
    ctx: audit.Context,
    deposit_id: str,
    departement: str,
    file_id: str,
    scan: UploadScan,
) -> None:
    """Audit a file kept without a verdict: to scan after its upload, pending because clamd
    is unavailable, or let through by the bypass."""
    if scan.is_after_upload:
        audit.record(
            session,
            AuditAction.DEPOSIT_SCAN_DEFERRED,
            actor=actor,
            context=ctx,
            target=audit.Target("file", file_id, departement),
            details={"deposit_id": deposit_id, "reason": "after_upload"},
        )
        return
    bypassed = scan.bypassed
    audit.record(
        session,
        AuditAction.DEPOSIT_SCAN_BYPASSED if bypassed else AuditAction.DEPOSIT_SCAN_DEFERRED,
        actor=actor,
        context=ctx,
        outcome=Outcome.FAILURE,
        target=audit.Target("file", file_id, departement),
        details={
            "deposit_id": deposit_id,
            "reason": "clamd_unavailable",
            "error": (scan.failure or "")[:200],
        },
    )
    log.warning(
        "antivirus unavailable (%s): file %s %s",
        scan.failure,
        file_id,
        "let through unscanned (FILR_ANTIVIRUS_BYPASS)" if bypassed else "waits for its scan",
    )
