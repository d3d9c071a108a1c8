"""Départ de l'agent: revoke an account at once and hand its deposits to the shared inbox.

The conventions ask that a habilitation be removed without delay when someone leaves. The
account is revoked (sessions end, password and second factor wiped), its API tokens revoked,
and every live deposit it was the named recipient of is addressed to its organisation instead
(the shared inbox), so that nothing waits for someone who left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction
from portal.accounts.models import AccountStatus, User
from portal.accounts.services import AccountError, revoke
from portal.api import services as api_tokens
from portal.deposits.models import Deposit, DepositRecipient, DepositStatus

# Codes only in the trail: a free text could name a person or a reason that is nobody's business.
DEPARTURE_REASONS = {
    "depart_organisation": "Départ de l'organisation",
    "changement_fonction": "Changement de fonction",
    "fin_contrat": "Fin de contrat ou de mission",
    "autre": "Autre motif",
}


@dataclass(frozen=True)
class Departure:
    """What a departure did."""

    deposits_transferred: int
    api_tokens_revoked: int


def record_departure(
    session: Session,
    user: User,
    *,
    reason: str,
    left_on: date,
    actor: audit.Actor,
    ctx: audit.Context,
    today: date,
) -> Departure:
    """Revoke *user* now for *reason* (left on *left_on*), hand its named live deposits to its
    organisation's shared inbox; commits. A refusal (AccountError) rolls back."""
    try:
        if reason not in DEPARTURE_REASONS:
            raise AccountError("Choisissez le motif du départ.")
        if left_on > today:
            raise AccountError(
                "La date de départ ne peut pas être dans le futur : enregistrez le départ le jour "
                "venu, ou fixez une date de fin d'habilitation."
            )
        if user.status == AccountStatus.REVOKED:
            raise AccountError("Ce compte est déjà révoqué.")
        revoke(session, user, actor, ctx)
        tokens = api_tokens.revoke_all_tokens(
            session, user, actor=actor, ctx=ctx, reason="departure"
        )
        moved = _hand_to_shared_inbox(session, user)
    except AccountError:
        session.rollback()
        raise
    audit.record(
        session,
        AuditAction.ACCOUNT_DEPARTED,
        actor=actor,
        context=ctx,
        target=audit.Target("user", user.id, user.organisation.departement_code),
        details={
            "reason": reason,
            "left_on": left_on.isoformat(),
            "deposits_transferred": moved,
            "api_tokens_revoked": tokens,
        },
    )
    session.commit()
    return Departure(moved, tokens)


def _hand_to_shared_inbox(session: Session, user: User) -> int:
    live = sa.select(Deposit.id).where(
        Deposit.status.in_((DepositStatus.DRAFT, DepositStatus.AVAILABLE))
    )
    deposit_ids = list(
        session.execute(
            sa.select(DepositRecipient.deposit_id).where(
                DepositRecipient.user_id == user.id, DepositRecipient.deposit_id.in_(live)
            )
        ).scalars()
    )
    already = set(
        session.execute(
            sa.select(DepositRecipient.deposit_id).where(
                DepositRecipient.organisation_id == user.organisation_id,
                DepositRecipient.deposit_id.in_(deposit_ids),
            )
        ).scalars()
    )
    for deposit_id in deposit_ids:
        if deposit_id not in already:
            session.add(
                DepositRecipient(deposit_id=deposit_id, organisation_id=user.organisation_id)
            )
    session.execute(
        sa.delete(DepositRecipient).where(
            DepositRecipient.user_id == user.id, DepositRecipient.deposit_id.in_(deposit_ids)
        )
    )
    return len(deposit_ids)
