"""Fixtures of the security officer's tests: two départements, their officers, a national one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

import audit
from audit import AuditAction, Outcome
from portal.accounts.models import Role
from portal.db import db, utcnow
from portal.orgs.models import Organisation, OrgKind
from tests.conftest import Account, Factory


@dataclass
class World:
    """Organisations of 62 and 59, a provider of 62, France Travail, and their accounts."""

    org62: str
    org59: str
    provider62: str
    ft62: str
    ft_national: str
    agent62: Account
    gest62: Account
    agent59: Account
    provider_agent62: Account
    officer62: Account
    officer59: Account
    officer_ft62: Account
    officer_national: Account


@pytest.fixture
def world(app: Flask, factory: Factory) -> World:
    """The cast of the security tests."""
    org62 = factory.org(OrgKind.DEPARTEMENT, "62", name="CD 62")
    org59 = factory.org(OrgKind.DEPARTEMENT, "59", name="CD 59")
    provider62 = factory.org(OrgKind.PRESTATAIRE, "62", name="Association 62")
    ft62 = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("62",), name="FT DT 62")
    ft_national = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("75",), name="FT DSI nationale")
    with app.app_context():
        db.session.execute(
            sa.update(Organisation).where(Organisation.id == ft_national).values(is_national=True)
        )
        db.session.commit()
    return World(
        org62=org62,
        org59=org59,
        provider62=provider62,
        ft62=ft62,
        ft_national=ft_national,
        agent62=factory.user(org62, (Role.AGENT,), email="agent62@example.org"),
        gest62=factory.user(org62, (Role.GESTIONNAIRE,), email="gest62@example.org"),
        agent59=factory.user(org59, (Role.AGENT,), email="agent59@example.org"),
        provider_agent62=factory.user(provider62, (Role.AGENT,), email="presta62@example.org"),
        officer62=factory.user(org62, (Role.SECURITE,), email="secu62@example.org"),
        officer59=factory.user(org59, (Role.SECURITE,), email="secu59@example.org"),
        officer_ft62=factory.user(ft62, (Role.SECURITE,), email="secu-ft62@example.org"),
        officer_national=factory.user(
            ft_national, (Role.SECURITE,), email="secu-national@example.org"
        ),
    )


Emit = Callable[..., int]


@pytest.fixture
def emit(app: Flask) -> Emit:
    """Write one audit row as the portal would (returns its seq)."""

    def do(
        action: AuditAction,
        actor: Account | None = None,
        *,
        ip: str | None = "203.0.113.10",
        target: audit.Target | None = None,
        outcome: Outcome = Outcome.SUCCESS,
        at: datetime | None = None,
        details: dict[str, Any] | None = None,
        user_agent: str | None = "pytest",
    ) -> int:
        with app.app_context():
            event = audit.record(
                db.session,
                action,
                actor=audit.Actor(actor.id, actor.org_id) if actor else audit.SYSTEM,
                target=target,
                context=audit.Context(source_ip=ip, user_agent=user_agent),
                outcome=outcome,
                details=details,
                at=at or utcnow(),
            )
            db.session.commit()
            return event.seq

    return do
