"""XML data flows (CGPEM, PECGM, PECDH): schemas, streaming validator, calendar, sanity checks.

The core (validator, schemas, calendar, sanity, samples) is framework-free and runs offline;
`models`, `services`, `follow_up` and `reminders` are the portal's verbs on flow deposits (no
request), `views` the blueprint, the only module that imports Flask.
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
