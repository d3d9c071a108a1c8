"""XML data flows (CGPEM, PECGM, PECDH): schemas, streaming validator, calendar, sanity checks.

Framework-free: nothing here imports Flask; the portal passes plain values in.
"""

from portal.flows.report import ValidationIssue, ValidationReport
from portal.flows.rules import Rule
from portal.flows.types import FlowType, Periodicity, Severity
from portal.flows.validator import validate

__all__ = [
    "FlowType",
    "Periodicity",
    "Rule",
    "Severity",
    "ValidationIssue",
    "ValidationReport",
    "validate",
]
