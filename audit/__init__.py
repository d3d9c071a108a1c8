"""Append-only, hash-chained audit trail (framework-free)."""

from audit.actions import AuditAction, Outcome
from audit.models import AuditBase, AuditChainHead, AuditEvent, metadata
from audit.trail import (
    NO_CONTEXT,
    SYSTEM,
    Actor,
    Context,
    Target,
    VerificationResult,
    iter_events,
    record,
    verify_chain,
)

__all__ = [
    "NO_CONTEXT",
    "SYSTEM",
    "Actor",
    "AuditAction",
    "AuditBase",
    "AuditChainHead",
    "AuditEvent",
    "Context",
    "Outcome",
    "Target",
    "VerificationResult",
    "iter_events",
    "metadata",
    "record",
    "verify_chain",
]
