"""The flows' validation core: schemas, streaming validator, rules, samples, sanity checks.

Framework-free and offline, like `storage/`: no Flask, no SQLAlchemy, nothing of the portal but
the list of département codes (an import-linter contract in pyproject.toml keeps it so).
"""

from portal.flows.core.report import ValidationIssue, ValidationReport
from portal.flows.core.rules import Rule
from portal.flows.core.types import FlowType, Periodicity, Severity
from portal.flows.core.validator import validate

__all__ = [
    "FlowType",
    "Periodicity",
    "Rule",
    "Severity",
    "ValidationIssue",
    "ValidationReport",
    "validate",
]
