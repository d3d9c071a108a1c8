"""Fixtures of the security officer's tests: two départements, their officers, a national one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from flask import Flask

import audit
from audit import AuditAction, Outcome
from portal.db import db, utcnow
from tests.factories import Account, Factory, OfficerWorld


@pytest.fixture
def world(factory: Factory) -> OfficerWorld:
    """The cast of the security tests."""
    return OfficerWorld.build(factory)


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
