"""Who deposits which flow, who sees which follow-up: pure predicates on the isolation rule."""

from __future__ import annotations

from portal.accounts.models import Role, User
from portal.flows.core.types import FlowType
from portal.orgs.departements import DEPARTEMENTS
from portal.orgs.models import OrgKind
from portal.orgs.permissions import is_national, spaces_of

# The convention's directions: CGPEM goes from the département to France Travail, PECGM and
# PECDH from France Travail to the département.
FLOWS_BY_SIDE: dict[OrgKind, tuple[FlowType, ...]] = {
    OrgKind.DEPARTEMENT: (FlowType.CGPEM,),
    OrgKind.FRANCE_TRAVAIL: (FlowType.PECGM, FlowType.PECDH),
}
SENDER_SIDE: dict[FlowType, OrgKind] = {
    flow: side for side, flows in FLOWS_BY_SIDE.items() for flow in flows
}


def is_technicien(user: User | None) -> bool:
    """An active account holding the `technicien` role."""
    return user is not None and user.is_active and user.has_role(Role.TECHNICIEN)


def depositable_flows(user: User | None) -> tuple[FlowType, ...]:
    """The flows *user* may deposit: its side's, for technicians of a département or of France
    Travail; none for anyone else (providers, the platform, agents)."""
    if user is None or not is_technicien(user):
        return ()
    return FLOWS_BY_SIDE.get(OrgKind(user.organisation.kind), ())


def can_deposit_flow(user: User | None, departement: str) -> bool:
    """May *user* deposit a flow in the space of *departement*?"""
    return bool(depositable_flows(user)) and departement in spaces_of(user)


def follow_up_spaces(user: User | None) -> frozenset[str]:
    """Départements whose follow-up table *user* sees: its spaces, or all for the national view.

    The national view shows statuses and counts only; opening a flow still goes through the
    deposit's isolation check.
    """
    if not depositable_flows(user):
        return frozenset()
    assert user is not None  # noqa: S101 - depositable_flows(None) is empty
    if is_national(user.organisation):
        return frozenset(DEPARTEMENTS)
    return spaces_of(user)
