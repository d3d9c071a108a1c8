"""Append-only, hash-chained audit trail (framework-free)."""

from audit.actions import AuditAction, Outcome
from audit.export import (
    CSV_COLUMNS,
    SafeCsvWriter,
    event_as_dict,
    iter_csv,
    iter_json_array,
    iter_jsonl,
)
from audit.models import AuditBase, AuditChainHead, AuditCheckpoint, AuditEvent, metadata
from audit.query import AuditFilter, Scope, iter_matching, search
from audit.trail import (
    NO_CONTEXT,
    SYSTEM,
    Actor,
    Context,
    Target,
    VerificationResult,
    record,
    verify_chain,
)

__all__ = [
    "CSV_COLUMNS",
    "NO_CONTEXT",
    "SYSTEM",
    "Actor",
    "AuditAction",
    "AuditBase",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditFilter",
    "Context",
    "Outcome",
    "SafeCsvWriter",
    "Scope",
    "Target",
    "VerificationResult",
    "event_as_dict",
    "iter_csv",
    "iter_json_array",
    "iter_jsonl",
    "iter_matching",
    "metadata",
    "record",
    "search",
    "verify_chain",
]
