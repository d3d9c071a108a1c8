"""The isolation rule of ARCHITECTURE.md, as pure predicates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from portal.orgs.models import Organisation, OrgKind

if TYPE_CHECKING:
    from portal.accounts.models import User


def is_national(org: Organisation) -> bool:
    """The national France Travail structure (flag set with `filr orgs national`): its
    officers see the whole audit trail, its technicians the national follow-up of the flows."""
    return org.is_national and OrgKind(org.kind) is OrgKind.FRANCE_TRAVAIL


def spaces_of_organisation(org: Organisation) -> frozenset[str]:
    """Département codes whose space *org* is habilitated for."""
    kind = OrgKind(org.kind)
    if kind in (OrgKind.DEPARTEMENT, OrgKind.PRESTATAIRE):
        return frozenset({org.departement_code}) if org.departement_code else frozenset()
    if kind is OrgKind.FRANCE_TRAVAIL:
        return frozenset(t.departement_code for t in org.territory)
    # The platform operates the service and reads no document: it sees no space.
    return frozenset()


def spaces_of(user: User | None) -> frozenset[str]:
    """Département spaces *user* may see; empty for anyone not active. The one isolation check."""
    if user is None or not user.is_active:
        return frozenset()
    return spaces_of_organisation(user.organisation)


def can_see_space(user: User | None, departement_code: str | None) -> bool:
    """True when *user* may see anything in the space of *departement_code*."""
    return departement_code is not None and departement_code in spaces_of(user)


def may_exchange(sender: Organisation, recipient: Organisation, departement_code: str) -> bool:
    """Who may address whom inside one space (conventions of ARCHITECTURE.md)."""
    if departement_code not in spaces_of_organisation(sender):
        return False
    if departement_code not in spaces_of_organisation(recipient):
        return False
    kinds = {OrgKind(sender.kind), OrgKind(recipient.kind)}
    if OrgKind.PLATEFORME in kinds:
        return False
    if kinds == {OrgKind.DEPARTEMENT, OrgKind.FRANCE_TRAVAIL}:
        return True
    if kinds == {OrgKind.DEPARTEMENT, OrgKind.PRESTATAIRE}:
        return True
    # A provider never exchanges directly with France Travail, nor providers among themselves,
    # nor within itself: what it sends goes to the SLAI that mandates it. Exchanges inside one
    # département or France Travail structure are allowed.
    if OrgKind.PRESTATAIRE in kinds:
        return False
    return sender.id == recipient.id
