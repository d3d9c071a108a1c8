"""Small shared vocabulary of the flows package: flow types, severities, periodicities."""

from __future__ import annotations

from enum import StrEnum


class FlowType(StrEnum):
    """The three XML flows of the convention between France Travail and the départements."""

    CGPEM = "CGPEM"
    PECGM = "PECGM"
    PECDH = "PECDH"

    @property
    def fichier(self) -> str:
        """The 4-character code written in `entete/fichier` for this flow."""
        return _FICHIER[self]

    @property
    def periodicities(self) -> tuple[Periodicity, ...]:
        """The values accepted in `entete/periodicite` for this flow."""
        return _PERIODICITIES[self]

    @classmethod
    def from_fichier(cls, code: str) -> FlowType | None:
        """The flow whose `entete/fichier` code is `code`, if any."""
        for flow_type, fichier in _FICHIER.items():
            if fichier == code:
                return flow_type
        return None


class Periodicity(StrEnum):
    """Value of `entete/periodicite`."""

    MONTHLY = "M"
    WEEKLY = "H"


class Severity(StrEnum):
    """An error rejects the file; a warning is shown but does not."""

    ERROR = "error"
    WARNING = "warning"

    @property
    def label(self) -> str:
        """French label shown to technicians."""
        return "erreur" if self is Severity.ERROR else "avertissement"


_FICHIER: dict[FlowType, str] = {
    FlowType.CGPEM: "CGPE",
    FlowType.PECGM: "PECG",
    FlowType.PECDH: "PECD",
}

# The convention's CGPEM table copies `H` from PECDH while the flow is monthly: accept both.
_PERIODICITIES: dict[FlowType, tuple[Periodicity, ...]] = {
    FlowType.CGPEM: (Periodicity.MONTHLY, Periodicity.WEEKLY),
    FlowType.PECGM: (Periodicity.MONTHLY,),
    FlowType.PECDH: (Periodicity.WEEKLY,),
}
