"""Who sees a fiche: pure predicates built on the isolation rule, and their SQL twin."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from portal.accounts.models import Role, User
from portal.fiches.models import Fiche, FicheState
from portal.orgs.models import Organisation, OrgKind
from portal.orgs.permissions import may_exchange, spaces_of


def handles_fiches(user: User | None) -> bool:
    """Agents handle fiches (as they handle deposited fiches de liaison)."""
    return user is not None and user.has_role(Role.AGENT) and bool(spaces_of(user))


def is_sender_side(user: User, fiche: Fiche) -> bool:
    return user.organisation_id == fiche.sender_org_id


def is_recipient_side(user: User, fiche: Fiche) -> bool:
    return user.organisation_id == fiche.recipient_org_id


def is_forwarded_to(user: User, fiche: Fiche) -> bool:
    return fiche.forwarded_org_id is not None and user.organisation_id == fiche.forwarded_org_id


def can_see_fiche(user: User | None, fiche: Fiche) -> bool:
    """The one isolation check of a fiche: space, role, and party to it.

    A draft is its author's only. A sent fiche is its sender organisation's, its recipient
    organisation's, and (once forwarded) the mandated provider's it was forwarded to.
    """
    if user is None or not handles_fiches(user) or fiche.departement_code not in spaces_of(user):
        return False
    if fiche.state == FicheState.DESTROYED:
        return False
    if fiche.state == FicheState.DRAFT:
        return user.id == fiche.sender_id
    return (
        is_sender_side(user, fiche)
        or is_recipient_side(user, fiche)
        or is_forwarded_to(user, fiche)
    )


def visible_fiches(user: User) -> ColumnElement[bool]:
    """SQL condition equivalent to `can_see_fiche` (tested against it)."""
    spaces = sorted(spaces_of(user))
    if not spaces or not handles_fiches(user):
        return sa.false()
    return sa.and_(
        Fiche.departement_code.in_(spaces),
        Fiche.state != FicheState.DESTROYED,
        sa.or_(
            Fiche.sender_id == user.id,
            sa.and_(
                Fiche.state != FicheState.DRAFT,
                sa.or_(
                    Fiche.sender_org_id == user.organisation_id,
                    Fiche.recipient_org_id == user.organisation_id,
                    Fiche.forwarded_org_id == user.organisation_id,
                ),
            ),
        ),
    )


def can_decide(user: User | None, fiche: Fiche) -> bool:
    """The receiving side records the decision of a bilatérale fiche it received."""
    return (
        user is not None
        and can_see_fiche(user, fiche)
        and is_recipient_side(user, fiche)
        and fiche.due_at is not None
        and fiche.state in (FicheState.SENT, FicheState.RECEIVED)
    )


def can_forward_to(user: User | None, fiche: Fiche, provider: Organisation) -> bool:
    """The SLAI forwards a fiche it received to a provider its département mandates (the
    convention rule of `may_exchange`), once."""
    return (
        user is not None
        and can_see_fiche(user, fiche)
        and is_recipient_side(user, fiche)
        and OrgKind(user.organisation.kind) is OrgKind.DEPARTEMENT
        and OrgKind(provider.kind) is OrgKind.PRESTATAIRE
        and fiche.forwarded_org_id is None
        and fiche.state not in (FicheState.DRAFT, FicheState.WITHDRAWN, FicheState.DESTROYED)
        and may_exchange(user.organisation, provider, fiche.departement_code)
    )


def can_correct(user: User | None, fiche: Fiche) -> bool:
    """The sender side replaces a sent fiche by a corrected one (before its decision)."""
    return (
        user is not None
        and can_see_fiche(user, fiche)
        and is_sender_side(user, fiche)
        and fiche.state in (FicheState.SENT, FicheState.RECEIVED)
        and fiche.replaced_by_id is None
    )
