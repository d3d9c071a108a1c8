"""Who sees which part of the audit trail and which alerts: pure predicates.

A security officer sees the rows of its organisation's départements (the isolation rule,
`spaces_of`) and the rows whose actor belongs to its organisation or, for a département, to the
providers it mandates; the officers of the national France Travail structure see everything.
"""

from __future__ import annotations

from collections.abc import Iterable

from audit import AuditEvent
from audit.query import Scope
from portal.accounts.models import Role, User
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.permissions import is_national, spaces_of, spaces_of_organisation
from portal.securite.models import AlertKind, SecurityAlert


def is_security_officer(user: User | None) -> bool:
    """True when *user* is an active account holding the `securite` role."""
    return user is not None and user.is_active and user.has_role(Role.SECURITE)


def mandated_by(org: Organisation, organisations: Iterable[Organisation]) -> frozenset[str]:
    """Ids of the providers that the département *org* mandates, among *organisations*."""
    if OrgKind(org.kind) is not OrgKind.DEPARTEMENT or org.departement_code is None:
        return frozenset()
    return frozenset(
        o.id
        for o in organisations
        if OrgKind(o.kind) is OrgKind.PRESTATAIRE and o.departement_code == org.departement_code
    )


def audit_scope_of(user: User | None, mandated: frozenset[str] = frozenset()) -> Scope | None:
    """The part of the trail *user* may read; None when it may read none of it."""
    if user is None or not is_security_officer(user):
        return None
    if is_national(user.organisation):
        return Scope(departements=None)
    return Scope(
        departements=spaces_of(user),
        organisation_ids=frozenset({user.organisation_id}) | mandated,
    )


def can_see_event(scope: Scope | None, event: AuditEvent) -> bool:
    """True when *event* lies in *scope* (the predicate the search's SQL condition mirrors)."""
    if scope is None:
        return False
    if scope.departements is None:
        return True
    if event.target_departement is not None and event.target_departement in scope.departements:
        return True
    return event.actor_org_id is not None and event.actor_org_id in scope.organisation_ids


def can_see_departement(scope: Scope | None, departement_code: str | None) -> bool:
    """True when the trail of the space *departement_code* lies in *scope*."""
    if scope is None or departement_code is None:
        return False
    return scope.departements is None or departement_code in scope.departements


def can_see_user_trail(scope: Scope | None, user: User) -> bool:
    """True when *scope* covers *user*'s organisation (its own, a mandated one, or a space)."""
    if scope is None:
        return False
    if scope.departements is None or user.organisation_id in scope.organisation_ids:
        return True
    return bool(spaces_of_organisation(user.organisation) & scope.departements)


def can_see_alert(scope: Scope | None, alert: SecurityAlert) -> bool:
    """True when *alert* concerns *scope*; a broken chain concerns every security officer."""
    if scope is None:
        return False
    if scope.departements is None or AlertKind(alert.kind) is AlertKind.CHAIN_BROKEN:
        return True
    if alert.departement_code is not None and alert.departement_code in scope.departements:
        return True
    return alert.organisation_id is not None and alert.organisation_id in scope.organisation_ids
