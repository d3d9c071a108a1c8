"""The verbs on organisations: creation, look-up, national scope (used by the CLI)."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
from audit import AuditAction
from portal.db import utcnow
from portal.orgs.departements import is_departement_code
from portal.orgs.models import FtTerritory, Organisation, OrgKind


class OrganisationError(ValueError):
    """An organisation cannot be created or changed as asked (French message for people)."""


def organisation_named(session: Session, name: str) -> Organisation | None:
    """The organisation called exactly *name*, if any."""
    return session.execute(
        sa.select(Organisation).where(Organisation.name == name)
    ).scalar_one_or_none()


def find_organisation(session: Session, ref: str) -> Organisation | None:
    """The organisation whose id, or else whose exact name, is *ref*."""
    return session.get(Organisation, ref) or organisation_named(session, ref)


def create_organisation(
    session: Session,
    *,
    kind: OrgKind,
    name: str,
    departement: str | None,
    territory: Iterable[str],
    ctx: audit.Context,
) -> Organisation:
    """Create an organisation with its France Travail territory and audit it (not committed)."""
    given = list(territory)
    for code in [departement, *given]:
        if code is not None and not is_departement_code(code):
            raise OrganisationError(f"code de département inconnu : {code}")
    has_departement = kind in (OrgKind.DEPARTEMENT, OrgKind.PRESTATAIRE)
    if has_departement and not departement:
        raise OrganisationError("--departement est obligatoire pour ce type d'organisation")
    if kind is OrgKind.FRANCE_TRAVAIL and not given:
        raise OrganisationError("--territory est obligatoire pour une structure France Travail")
    org = Organisation(
        kind=kind,
        name=name,
        departement_code=departement if has_departement else None,
        created_at=utcnow(),
    )
    codes = sorted(set(given))
    org.territory = [FtTerritory(departement_code=c) for c in codes]
    session.add(org)
    session.flush()
    audit.record(
        session,
        AuditAction.ORGANISATION_CREATED,
        context=ctx,
        target=audit.Target("organisation", org.id, org.departement_code),
        details={"kind": str(kind), "territory": codes},
    )
    return org


def set_national(
    session: Session, org: Organisation, *, is_national: bool, ctx: audit.Context
) -> None:
    """Give a France Travail structure the national scope, or withdraw it (not committed)."""
    if OrgKind(org.kind) is not OrgKind.FRANCE_TRAVAIL:
        raise OrganisationError("seule une structure France Travail peut être nationale")
    session.execute(
        sa.update(Organisation).where(Organisation.id == org.id).values(is_national=is_national)
    )
    audit.record(
        session,
        AuditAction.ORGANISATION_UPDATED,
        context=ctx,
        target=audit.Target("organisation", org.id),
        details={"is_national": is_national},
    )


def set_proconnect(
    session: Session, org: Organisation, *, enabled: bool, ctx: audit.Context
) -> None:
    """Let the organisation's members log in through ProConnect, or stop it (not committed).

    The accounts and their habilitations stay the account manager's: ProConnect only proves
    who logs in (portal.auth.proconnect).
    """
    session.execute(
        sa.update(Organisation).where(Organisation.id == org.id).values(proconnect_enabled=enabled)
    )
    audit.record(
        session,
        AuditAction.ORGANISATION_UPDATED,
        context=ctx,
        target=audit.Target("organisation", org.id),
        details={"proconnect": enabled},
    )
