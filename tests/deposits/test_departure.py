"""Départ de l'agent: the account is revoked at once and its named deposits go to the inbox."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.accounts.models import Role, User
from portal.auth.models import ServerSession
from portal.db import db
from portal.deposits.models import DepositRecipient
from tests.api.conftest import bare_client, make_token
from tests.conftest import audit_rows, csrf_of, reread
from tests.deposits.conftest import sent_deposit
from tests.factories import Account, Factory, World

Clients = Callable[[Account], FlaskClient]


def _address_to(app: Flask, deposit_id: str, account: Account) -> None:
    """Make *account* the named recipient of *deposit_id* (instead of its organisation)."""
    with app.app_context():
        db.session.execute(
            sa.delete(DepositRecipient).where(DepositRecipient.deposit_id == deposit_id)
        )
        db.session.add(DepositRecipient(deposit_id=deposit_id, user_id=account.id))
        db.session.commit()


def test_departure_revokes_now_and_hands_named_deposits_to_the_shared_inbox(
    app: Flask, world: World, factory: Factory, client_for: Clients
) -> None:
    # Given an adviser of FT 62, named recipient of a deposit, with a session and an API token
    manager = factory.user(world.ft62, (Role.GESTIONNAIRE,), email="rgc@ft62.example.org")
    deposit_id = sent_deposit(client_for(world.agent62), [world.ft62])
    _address_to(app, deposit_id, world.adviser_ft)
    adviser = client_for(world.adviser_ft)
    token = make_token(app, world.adviser_ft)
    colleague = factory.user(world.ft62, (Role.AGENT,), email="collegue@ft62.example.org")
    assert deposit_id not in client_for(colleague).get("/depots").get_data(as_text=True)
    # When its manager records the departure
    boss = client_for(manager)
    page = f"/gestion/comptes/{world.adviser_ft.id}"
    assert "Départ de l'agent" in boss.get(page).get_data(as_text=True)
    response = boss.post(
        f"{page}/depart",
        data={
            "csrf_token": csrf_of(boss, page),
            "reason": "depart_organisation",
            "left_on": "2026-12-01",
        },
        follow_redirects=True,
    )
    assert "1 dépôt(s) transmis" in response.get_data(as_text=True)
    # Then the account is revoked, its session and token stop at once
    assert reread(app, User, world.adviser_ft.id).status == "revoked"
    with app.app_context():
        left = db.session.execute(
            sa.select(ServerSession).where(ServerSession.user_id == world.adviser_ft.id)
        ).first()
        assert left is None
    assert adviser.get("/depots").status_code == 302  # back to the log-in page
    headers = {"Authorization": f"Bearer {token}"}
    assert bare_client(app).get("/api/v1/deposits", headers=headers).status_code == 401
    # And the deposit waits in the shared inbox of FT 62: a colleague sees it
    assert deposit_id in client_for(colleague).get("/depots").get_data(as_text=True)
    (row,) = audit_rows(app, AuditAction.ACCOUNT_DEPARTED)
    assert row.actor_id == manager.id and '"deposits_transferred":1' in row.details
    assert '"reason":"depart_organisation"' in row.details


def test_a_departure_in_the_future_or_by_another_organisation_is_refused(
    app: Flask, world: World, client_for: Clients
) -> None:
    boss = client_for(world.manager62)
    page = f"/gestion/comptes/{world.agent62.id}"
    future = boss.post(
        f"{page}/depart",
        data={"csrf_token": csrf_of(boss, page), "reason": "fin_contrat", "left_on": "2099-01-01"},
        follow_redirects=True,
    )
    assert "ne peut pas être dans le futur" in future.get_data(as_text=True)
    assert reread(app, User, world.agent62.id).status == "active"
    # The manager of 62 posting on an account of France Travail gets 404
    token = csrf_of(boss, page)
    other = f"/gestion/comptes/{world.adviser_ft.id}/depart"
    refused = boss.post(
        other, data={"csrf_token": token, "reason": "autre", "left_on": "2026-12-01"}
    )
    assert refused.status_code == 404
    assert reread(app, User, world.adviser_ft.id).status == "active"
    assert audit_rows(app, AuditAction.ACCOUNT_DEPARTED) == []
