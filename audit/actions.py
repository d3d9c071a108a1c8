"""The typed names of every audited event."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    """Audited events, named ``subject:verb`` (Warehouse-style)."""

    LOGIN_SUCCESS = "auth:login:success"
    LOGIN_FAILURE = "auth:login:failure"
    LOGIN_THROTTLED = "auth:login:throttled"
    MFA_SUCCESS = "auth:mfa:success"
    MFA_FAILURE = "auth:mfa:failure"
    MFA_REPLAY = "auth:mfa:replay"
    MFA_RECOVERY_CODE_USED = "auth:mfa:recovery-code-used"
    MFA_ENROLLED = "auth:mfa:enrolled"
    MFA_RESET = "auth:mfa:reset"
    RECOVERY_CODES_REGENERATED = "auth:recovery-codes:regenerated"
    REAUTH_FAILURE = "auth:reauth:failure"
    LOGOUT = "auth:logout"
    SESSION_EXPIRED = "auth:session:expired"
    SESSION_REVOKED = "auth:session:revoked"
    PASSWORD_CHANGED = "auth:password:changed"  # noqa: S105 - an event name, not a secret
    PASSWORD_RESET_REQUESTED = "auth:password:reset-requested"  # noqa: S105 - event name
    PASSWORD_RESET = "auth:password:reset"  # noqa: S105 - an event name, not a secret
    ACCOUNT_ACTIVATED = "account:activated"
    ACCOUNT_CREATED = "account:created"
    ACCOUNT_SUSPENDED = "account:suspended"
    ACCOUNT_REACTIVATED = "account:reactivated"
    ACCOUNT_REVOKED = "account:revoked"
    ACCOUNT_ACTIVATION_SENT = "account:activation-sent"
    ACCESS_DENIED = "access:denied"
    ORGANISATION_CREATED = "organisation:created"
    AUDIT_VERIFIED = "audit:verified"
    DEPOSIT_CREATED = "deposit:created"
    DEPOSIT_PUBLISHED = "deposit:published"
    FILE_UPLOADED = "deposit:file-uploaded"
    FILE_REFUSED = "deposit:file-refused"
    NOTIFICATION_SENT = "deposit:notification-sent"
    REMINDER_SENT = "deposit:reminder-sent"
    DIGEST_SENT = "deposit:digest-sent"
    LINK_ISSUED = "deposit:link-issued"
    LINK_REFUSED = "deposit:link-refused"
    FILE_DOWNLOADED = "deposit:downloaded"
    DEPOSIT_TAKEN = "deposit:taken-in-charge"
    DEPOSIT_WITHDRAWN = "deposit:withdrawn"
    DEPOSIT_EXPIRED = "deposit:expired"
    DEPOSIT_DESTROYED = "deposit:destroyed"
    ORPHAN_DESTROYED = "storage:orphan-destroyed"
    STORAGE_INTEGRITY_FAILED = "storage:integrity-failed"
    TOKEN_CREATED = "api-token:created"  # noqa: S105 - an event name
    TOKEN_REVOKED = "api-token:revoked"  # noqa: S105 - an event name
    JOB_RUN = "job:run"
    AUDIT_SEARCHED = "audit:searched"
    AUDIT_EXPORTED = "audit:exported"
    ALERT_RAISED = "alert:raised"
    ALERT_ACKNOWLEDGED = "alert:acknowledged"
    ORGANISATION_UPDATED = "organisation:updated"
    AUDIT_PURGED = "audit:purged"
    AUDIT_HEAD_SENT = "audit:head-sent"
    FLOW_VALIDATED = "flow:validated"
    FLOW_REJECTED = "flow:rejected"
    FLOW_SANITY_FLAGGED = "flow:sanity-flagged"
    FLOW_FLAGGED_UNUSABLE = "flow:flagged-unusable"
    FLOW_REMINDER_SENT = "flow:reminder-sent"
    KEY_ROTATED = "key:rotated"


class Outcome(StrEnum):
    """How an audited event ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"
