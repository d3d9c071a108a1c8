"""Who may see, download, withdraw or address a deposit: pure predicates on the isolation rule."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from portal.accounts.models import Role, User
from portal.deposits.models import Category, Deposit, DepositRecipient, DepositStatus
from portal.orgs.permissions import spaces_of

# The role a user needs to handle each category (fiches, documents and the weekly files of the
# experimentation conventions: agents; flows: technicians).
CATEGORY_ROLE = {
    Category.FICHE_LIAISON: Role.AGENT,
    Category.DOCUMENT: Role.AGENT,
    Category.HEBDO_EXPERIMENTATION: Role.AGENT,
    Category.FLUX_XML: Role.TECHNICIEN,
}


def categories_of(user: User) -> frozenset[Category]:
    """Categories *user*'s roles allow it to handle."""
    return frozenset(c for c, role in CATEGORY_ROLE.items() if user.has_role(role))


def can_create_deposit(user: User) -> bool:
    """A space to deposit in, and a category other than flows (those go through /flux)."""
    return bool(spaces_of(user)) and bool(categories_of(user) - {Category.FLUX_XML})


def is_recipient(user: User, deposit: Deposit) -> bool:
    """Named recipient, or member of a recipient organisation."""
    return any(
        r.user_id == user.id or r.organisation_id == user.organisation_id
        for r in deposit.recipients
    )


def is_sender_side(user: User, deposit: Deposit) -> bool:
    """The sender, or a colleague of the sender's organisation."""
    return user.id == deposit.sender_id or user.organisation_id == deposit.sender_org_id


def can_see_deposit(user: User | None, deposit: Deposit) -> bool:
    """The one isolation check for a deposit: space, role, and party to the exchange."""
    if user is None or deposit.departement_code not in spaces_of(user):
        return False
    if Category(deposit.category) not in categories_of(user):
        return False
    if deposit.status == DepositStatus.DRAFT:
        return user.id == deposit.sender_id
    # A recipient only ever sees what was sent: a draft destroyed before it was published (a
    # flow refused by validation, a withdrawn draft) never reaches it.
    return is_sender_side(user, deposit) or (
        deposit.published_at is not None and is_recipient(user, deposit)
    )


def can_download(user: User | None, deposit: Deposit) -> bool:
    """May *user* download the files of *deposit* now?"""
    return user is not None and can_see_deposit(user, deposit) and deposit.is_downloadable()


def can_withdraw(user: User | None, deposit: Deposit) -> bool:
    """The sender, or its organisation's account manager, before the end."""
    if user is None or deposit.status not in (DepositStatus.AVAILABLE, DepositStatus.DRAFT):
        return False
    if deposit.departement_code not in spaces_of(user):
        return False
    if user.id == deposit.sender_id:
        return True
    return user.has_role(Role.GESTIONNAIRE) and user.organisation_id == deposit.sender_org_id


def visible_deposits(user: User) -> ColumnElement[bool]:
    """SQL condition equivalent to `can_see_deposit`, for lists (tested against it)."""
    spaces = sorted(spaces_of(user))
    categories = sorted(str(c) for c in categories_of(user))
    if not spaces or not categories:
        return sa.false()
    party = sa.or_(
        Deposit.sender_id == user.id,
        sa.and_(
            Deposit.status != DepositStatus.DRAFT,
            sa.or_(
                Deposit.sender_org_id == user.organisation_id,
                # A LIMIT 1 lookup per row rather than EXISTS: PostgreSQL would otherwise hash
                # every recipient row of the organisation on each page (benchmarks/http_throughput).
                sa.and_(
                    Deposit.published_at.is_not(None),
                    sa.select(sa.literal(1))
                    .where(
                        DepositRecipient.deposit_id == Deposit.id,
                        sa.or_(
                            DepositRecipient.user_id == user.id,
                            DepositRecipient.organisation_id == user.organisation_id,
                        ),
                    )
                    .limit(1)
                    .scalar_subquery()
                    .is_not(None),
                ),
            ),
        ),
    )
    return sa.and_(
        Deposit.departement_code.in_(spaces),
        Deposit.category.in_(categories),
        party,
    )
