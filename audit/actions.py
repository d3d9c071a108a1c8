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


class Outcome(StrEnum):
    """How an audited event ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"
