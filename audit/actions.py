"""The typed names of every audited event."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    """Audited events, named ``subject:verb`` (Warehouse-style)."""

    AUTH_LOGIN_SUCCESS = "auth:login:success"
    AUTH_LOGIN_FAILURE = "auth:login:failure"
    AUTH_LOGIN_THROTTLED = "auth:login:throttled"
    AUTH_MFA_SUCCESS = "auth:mfa:success"
    AUTH_MFA_FAILURE = "auth:mfa:failure"
    AUTH_MFA_REPLAY = "auth:mfa:replay"
    AUTH_MFA_RECOVERY_CODE_USED = "auth:mfa:recovery-code-used"
    AUTH_MFA_ENROLLED = "auth:mfa:enrolled"
    AUTH_MFA_RESET = "auth:mfa:reset"
    AUTH_KEY_ENROLLED = "auth:key:enrolled"
    AUTH_KEY_REMOVED = "auth:key:removed"
    AUTH_KEY_SUCCESS = "auth:key:success"
    AUTH_KEY_FAILURE = "auth:key:failure"
    AUTH_KEY_CLONE_WARNING = "auth:key:clone-warning"
    AUTH_KEY_REQUIRED = "auth:key:required"
    AUTH_RECOVERY_CODES_REGENERATED = "auth:recovery-codes:regenerated"
    AUTH_REAUTH_FAILURE = "auth:reauth:failure"
    AUTH_LOGOUT = "auth:logout"
    AUTH_SESSION_EXPIRED = "auth:session:expired"
    AUTH_SESSION_REVOKED = "auth:session:revoked"
    AUTH_PASSWORD_CHANGED = "auth:password:changed"  # noqa: S105 - an event name, not a secret
    AUTH_PASSWORD_RESET_REQUESTED = "auth:password:reset-requested"  # noqa: S105 - event name
    AUTH_PASSWORD_RESET = "auth:password:reset"  # noqa: S105 - an event name, not a secret
    ACCOUNT_ACTIVATED = "account:activated"
    ACCOUNT_CREATED = "account:created"
    ACCOUNT_SUSPENDED = "account:suspended"
    ACCOUNT_REACTIVATED = "account:reactivated"
    ACCOUNT_REVOKED = "account:revoked"
    ACCOUNT_ACTIVATION_SENT = "account:activation-sent"
    ACCOUNT_HABILITATION_UPDATED = "account:habilitation:updated"
    ACCOUNT_HABILITATION_FORM_STORED = "account:habilitation:form-stored"
    ACCOUNT_HABILITATION_FORM_DOWNLOADED = "account:habilitation:form-downloaded"
    # A notice before a suspension (end of habilitation, non-use); details say which.
    ACCOUNT_NOTICE_SENT = "account:notice:sent"
    # "Départ de l'agent": the account is revoked and its named deposits go to the shared inbox.
    ACCOUNT_DEPARTED = "account:departed"
    # The annual review of habilitations: a campaign per organisation and its decisions.
    ACCOUNT_REVIEW_OPENED = "account:review:opened"
    ACCOUNT_REVIEW_CONFIRMED = "account:review:confirmed"
    ACCOUNT_REVIEW_SUSPENDED = "account:review:suspended"
    ACCOUNT_REVIEW_REMINDED = "account:review:reminded"
    ACCOUNT_REVIEW_CLOSED = "account:review:closed"
    ACCESS_DENIED = "access:denied"
    ORGANISATION_CREATED = "organisation:created"
    AUDIT_VERIFIED = "audit:verified"
    DEPOSIT_CREATED = "deposit:created"
    DEPOSIT_PUBLISHED = "deposit:published"
    DEPOSIT_FILE_UPLOADED = "deposit:file-uploaded"
    DEPOSIT_FILE_REFUSED = "deposit:file-refused"
    # The antivirus (docs/operations.md): a signature found, a scan put off while clamd is
    # unavailable, a file let through unscanned by the deployment's explicit bypass, a deposit
    # whose sending waits for its files' scans.
    DEPOSIT_FILE_INFECTED = "deposit:file-infected"
    DEPOSIT_SCAN_DEFERRED = "deposit:scan-deferred"
    DEPOSIT_SCAN_BYPASSED = "deposit:scan-bypassed"
    DEPOSIT_HELD_FOR_SCAN = "deposit:held-for-scan"
    DEPOSIT_NOTIFICATION_SENT = "deposit:notification-sent"
    DEPOSIT_REMINDER_SENT = "deposit:reminder-sent"
    DEPOSIT_DIGEST_SENT = "deposit:digest-sent"
    DEPOSIT_LINK_ISSUED = "deposit:link-issued"
    DEPOSIT_LINK_REFUSED = "deposit:link-refused"
    # Committed before the first byte leaves (fail closed); `deposit:downloaded` follows the last.
    DEPOSIT_DOWNLOAD_STARTED = "deposit:download-started"
    DEPOSIT_DOWNLOADED = "deposit:downloaded"
    DEPOSIT_TAKEN_IN_CHARGE = "deposit:taken-in-charge"
    DEPOSIT_WITHDRAWN = "deposit:withdrawn"
    DEPOSIT_EXPIRED = "deposit:expired"
    DEPOSIT_DESTROYED = "deposit:destroyed"
    STORAGE_ORPHAN_DESTROYED = "storage:orphan-destroyed"
    STORAGE_INTEGRITY_FAILED = "storage:integrity-failed"
    API_TOKEN_CREATED = "api-token:created"  # noqa: S105 - an event name
    API_TOKEN_REVOKED = "api-token:revoked"  # noqa: S105 - an event name
    JOB_RUN = "job:run"
    AUDIT_SEARCHED = "audit:searched"
    AUDIT_EXPORTED = "audit:exported"
    ALERT_RAISED = "alert:raised"
    ALERT_ACKNOWLEDGED = "alert:acknowledged"
    ORGANISATION_UPDATED = "organisation:updated"
    AUDIT_PURGED = "audit:purged"
    AUDIT_HEAD_SENT = "audit:head-sent"
    # Fiches de liaison filled on the portal (portal/fiches): the values never in details.
    FICHE_DRAFT_SAVED = "fiche:draft-saved"
    FICHE_SENT = "fiche:sent"
    FICHE_VIEWED = "fiche:viewed"
    FICHE_DECIDED = "fiche:decided"
    FICHE_FORWARDED = "fiche:forwarded"
    FICHE_WITHDRAWN = "fiche:withdrawn"
    FICHE_NOTIFICATION_SENT = "fiche:notification-sent"
    FICHE_REMINDER_SENT = "fiche:reminder-sent"
    FICHE_PDF_DOWNLOADED = "fiche:pdf-downloaded"
    FICHE_DESTROYED = "fiche:destroyed"
    FLOW_VALIDATED = "flow:validated"
    FLOW_REJECTED = "flow:rejected"
    FLOW_SANITY_FLAGGED = "flow:sanity-flagged"
    FLOW_FLAGGED_UNUSABLE = "flow:flagged-unusable"
    FLOW_REMINDER_SENT = "flow:reminder-sent"
    KEY_ROTATED = "key:rotated"
    INCIDENT_CREATED = "incident:created"
    INCIDENT_LINKED = "incident:linked"
    INCIDENT_NOTICE_RECORDED = "incident:notice-recorded"
    INCIDENT_REMINDER_SENT = "incident:reminder-sent"
    ANTIVIRUS_SIGNATURES_STALE = "antivirus:signatures-stale"
    BACKUP_COMPLETED = "backup:completed"
    BACKUP_FAILED = "backup:failed"
    BACKUP_RESTORED = "backup:restored"
    BACKUP_DRILL = "backup:drill"


class Outcome(StrEnum):
    """How an audited event ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"
