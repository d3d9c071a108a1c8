"""Who may manage which account."""

from __future__ import annotations

from portal.accounts.models import Role, User
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.permissions import can_see_space, is_national


def can_manage_accounts(actor: User) -> bool:
    """True when *actor* is an active account manager."""
    return actor.is_active and actor.has_role(Role.GESTIONNAIRE)


def can_manage_account(actor: User, target: User) -> bool:
    """An account manager acts on accounts of its own organisation only, never on itself."""
    return (
        can_manage_accounts(actor)
        and actor.organisation_id == target.organisation_id
        and actor.id != target.id
    )


def roles_allowed_for(kind: OrgKind) -> frozenset[Role]:
    """Roles an account of an organisation of *kind* may hold."""
    if kind is OrgKind.PLATEFORME:
        return frozenset({Role.ADMIN, Role.GESTIONNAIRE, Role.SECURITE})
    if kind is OrgKind.PRESTATAIRE:
        return frozenset({Role.AGENT, Role.GESTIONNAIRE, Role.SECURITE})
    return frozenset({Role.AGENT, Role.TECHNICIEN, Role.GESTIONNAIRE, Role.SECURITE})


def can_see_national_review(user: User) -> bool:
    """The national view of the annual review: the platform operator and the national security
    officers (France Travail's national structure)."""
    if not user.is_active:
        return False
    return user.has_role(Role.ADMIN) or (
        user.has_role(Role.SECURITE) and is_national(user.organisation)
    )


def can_open_review(user: User) -> bool:
    """Opening a campaign by hand for one organisation: the platform operator."""
    return user.is_active and user.has_role(Role.ADMIN)


def can_see_usage(user: User) -> bool:
    """The usage statistics page: account managers, security officers, the platform operator."""
    return user.is_active and any(
        user.has_role(r) for r in (Role.ADMIN, Role.GESTIONNAIRE, Role.SECURITE)
    )


def can_see_usage_of(user: User, org: Organisation) -> bool:
    """Whose usage statistics *user* sees: every organisation for the platform operator and the
    national security officers (as the national review); otherwise its own organisation and, for
    a département, the providers it mandates in its space (the isolation rule, `can_see_space`).
    A France Travail structure's figures span several spaces: only its own people see them."""
    if not can_see_usage(user):
        return False
    if can_see_national_review(user):
        return True
    if org.id == user.organisation_id:
        return True
    return (
        OrgKind(user.organisation.kind) is OrgKind.DEPARTEMENT
        and OrgKind(org.kind) is OrgKind.PRESTATAIRE
        and can_see_space(user, org.departement_code)
    )
