"""The scope predicates, tested directly on unsaved objects (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit import AuditEvent
from audit.query import Scope
from portal.accounts.models import AccountStatus, Role, User, UserRole
from portal.orgs.models import FtTerritory, Organisation, OrgKind
from portal.securite.models import AlertKind, SecurityAlert
from portal.securite.permissions import (
    audit_scope_of,
    can_see_alert,
    can_see_departement,
    can_see_event,
    can_see_user_trail,
    mandated_by,
)


def org(
    kind: OrgKind, dep: str | None = None, territory: tuple[str, ...] = (), national: bool = False
) -> Organisation:
    o = Organisation(id=f"{kind}-{dep}-{'-'.join(territory)}", kind=kind, departement_code=dep)
    o.name = o.id
    o.territory = [FtTerritory(departement_code=c) for c in territory]
    o.is_national = national
    return o


def user(o: Organisation, *roles: Role, status: AccountStatus = AccountStatus.ACTIVE) -> User:
    u = User(id=f"u-{o.id}-{'-'.join(roles)}", organisation=o, organisation_id=o.id, status=status)
    u.role_rows = [UserRole(role=str(r)) for r in roles]
    return u


def event(dep: str | None, actor_org: str | None) -> AuditEvent:
    return AuditEvent(
        seq=1,
        occurred_at=datetime.now(UTC),
        action="deposit:downloaded",
        outcome="success",
        actor_org_id=actor_org,
        target_departement=dep,
    )


CD62 = org(OrgKind.DEPARTEMENT, "62")
CD59 = org(OrgKind.DEPARTEMENT, "59")
PRESTA62 = org(OrgKind.PRESTATAIRE, "62")
FT_HDF = org(OrgKind.FRANCE_TRAVAIL, territory=("59", "62"))
FT_DSI = org(OrgKind.FRANCE_TRAVAIL, territory=("75",), national=True)
PLATFORM = org(OrgKind.PLATEFORME)


def test_only_active_security_officers_have_a_scope() -> None:
    assert audit_scope_of(user(CD62, Role.AGENT)) is None
    assert audit_scope_of(user(CD62, Role.GESTIONNAIRE, Role.ADMIN)) is None
    assert audit_scope_of(user(CD62, Role.SECURITE, status=AccountStatus.SUSPENDED)) is None
    assert audit_scope_of(None) is None


def test_a_departement_officer_sees_its_space_its_organisation_and_its_providers() -> None:
    mandated = mandated_by(CD62, [CD62, CD59, PRESTA62, FT_HDF])
    assert mandated == frozenset({PRESTA62.id})
    scope = audit_scope_of(user(CD62, Role.SECURITE), mandated)
    assert scope == Scope(frozenset({"62"}), frozenset({CD62.id, PRESTA62.id}))
    assert can_see_event(scope, event("62", None))
    assert can_see_event(scope, event(None, CD62.id))
    assert can_see_event(scope, event(None, PRESTA62.id))


def test_an_officer_of_62_sees_nothing_of_59() -> None:
    # Given the officer of 62
    scope = audit_scope_of(user(CD62, Role.SECURITE), frozenset({PRESTA62.id}))
    # Then nothing whose space is 59 or whose actor is of 59
    assert not can_see_event(scope, event("59", CD59.id))
    assert not can_see_event(scope, event(None, CD59.id))
    assert not can_see_event(scope, event("59", None))
    assert not can_see_departement(scope, "59")
    assert not can_see_user_trail(scope, user(CD59, Role.AGENT))
    alert = SecurityAlert(kind=AlertKind.MFA_REPLAY, departement_code="59", organisation_id=CD59.id)
    assert not can_see_alert(scope, alert)


def test_an_officer_of_62_sees_what_its_agents_did_in_59() -> None:
    scope = audit_scope_of(user(CD62, Role.SECURITE))
    assert can_see_event(scope, event("59", CD62.id))
    alert = SecurityAlert(
        kind=AlertKind.FOREIGN_ACCESS, departement_code="59", organisation_id=CD62.id
    )
    assert can_see_alert(scope, alert)


def test_providers_are_not_mandated_by_another_kind_of_organisation() -> None:
    assert mandated_by(FT_HDF, [PRESTA62]) == frozenset()
    assert mandated_by(CD59, [PRESTA62]) == frozenset()


def test_a_france_travail_officer_sees_its_territory() -> None:
    scope = audit_scope_of(user(FT_HDF, Role.SECURITE))
    assert scope is not None and scope.departements == frozenset({"59", "62"})
    assert can_see_event(scope, event("59", None)) and can_see_event(scope, event("62", None))
    assert not can_see_event(scope, event("06", None))
    assert can_see_user_trail(scope, user(CD59, Role.AGENT))


@pytest.mark.parametrize("dep", ["59", "62", "06", None])
def test_the_national_officer_sees_everything(dep: str | None) -> None:
    scope = audit_scope_of(user(FT_DSI, Role.SECURITE))
    assert scope is not None and scope.departements is None
    assert can_see_event(scope, event(dep, "anything"))
    assert can_see_departement(scope, "59")
    assert can_see_alert(scope, SecurityAlert(kind=AlertKind.LOGIN_FAILURES_IP))


def test_national_is_a_france_travail_flag_only() -> None:
    flagged_departement = org(OrgKind.DEPARTEMENT, "62", national=True)
    scope = audit_scope_of(user(flagged_departement, Role.SECURITE))
    assert scope is not None and scope.departements == frozenset({"62"})


def test_the_platform_officer_sees_its_own_accounts_only() -> None:
    scope = audit_scope_of(user(PLATFORM, Role.SECURITE))
    assert scope == Scope(frozenset(), frozenset({PLATFORM.id}))
    assert can_see_event(scope, event(None, PLATFORM.id))
    assert not can_see_event(scope, event("62", CD62.id))


def test_a_broken_chain_concerns_every_officer_and_an_ip_alert_only_the_national_one() -> None:
    scope = audit_scope_of(user(CD59, Role.SECURITE))
    assert can_see_alert(scope, SecurityAlert(kind=AlertKind.CHAIN_BROKEN))
    assert not can_see_alert(scope, SecurityAlert(kind=AlertKind.LOGIN_FAILURES_IP))
    assert not can_see_alert(None, SecurityAlert(kind=AlertKind.CHAIN_BROKEN))


def test_every_family_of_audited_actions_can_be_chosen_in_the_search_form() -> None:
    from audit import AuditAction
    from portal.securite.forms import FAMILY_LABELS

    families = {action.value.split(":", 1)[0] + ":" for action in AuditAction}
    assert families <= set(FAMILY_LABELS)
