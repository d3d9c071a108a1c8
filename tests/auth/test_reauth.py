"""Re-authentication before sensitive changes is throttled: a stolen session is no oracle."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.accounts.models import Role
from portal.orgs.models import OrgKind
from tests.conftest import audit_rows, csrf_of
from tests.factories import Account, Factory


def _change_password(client: FlaskClient, current: str) -> str:
    token = csrf_of(client, "/compte")
    response = client.post(
        "/compte/mot-de-passe",
        data={
            "csrf_token": token,
            "current": current,
            "password": "Une phrase de passe toute neuve 2026",
            "confirmation": "Une phrase de passe toute neuve 2026",
        },
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _regenerate_codes(client: FlaskClient, current: str) -> str:
    token = csrf_of(client, "/compte")
    response = client.post(
        "/compte/codes-de-secours", data={"csrf_token": token, "current": current}
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_wrong_current_passwords_are_throttled_audited_and_then_even_the_right_one_waits(
    app: Flask, factory: Factory, login_as: Callable[[Account], FlaskClient]
) -> None:
    # Given a logged-in agent whose session fell into the wrong hands
    org = factory.org(OrgKind.DEPARTEMENT, "62", name="CD 62")
    agent: Account = factory.user(org, (Role.AGENT,), name="Agnès Soixantedeux")
    client = login_as(agent)

    # When the holder of the session guesses the password five times
    limit = app.config["FILR_SETTINGS"].throttle_account_per_minute
    for attempt in range(limit):
        page = _change_password(client, f"guess number {attempt}")
        assert "Le mot de passe actuel est incorrect." in page

    # Then the next attempt, even with the right password, is refused with a delay
    page = _regenerate_codes(client, agent.password)
    assert "Trop de tentatives" in page
    assert "Réessayez dans" in page
    # And every failure is in the trail, with its purpose and no password
    rows = audit_rows(app, AuditAction.AUTH_REAUTH_FAILURE)
    assert len(rows) == limit + 1
    assert [r.outcome for r in rows] == ["failure"] * limit + ["denied"]
    assert '"purpose":"password_change"' in rows[0].details
    assert '"reason":"throttled"' in rows[-1].details
    assert all(agent.password not in r.details and "guess" not in r.details for r in rows)
    assert all(r.actor_id == agent.id for r in rows)


def test_the_right_current_password_passes_and_clears_the_failures(
    app: Flask, factory: Factory, login_as: Callable[[Account], FlaskClient]
) -> None:
    org = factory.org(OrgKind.DEPARTEMENT, "62", name="CD 62")
    agent: Account = factory.user(org, (Role.AGENT,), name="Agnès Soixantedeux")
    client = login_as(agent)
    limit = app.config["FILR_SETTINGS"].throttle_account_per_minute

    # Given failures just under the limit, then a success
    for attempt in range(limit - 1):
        assert "incorrect" in _regenerate_codes(client, f"wrong {attempt}")
    page = _regenerate_codes(client, agent.password)
    assert "Trop de tentatives" not in page
    assert audit_rows(app, AuditAction.AUTH_RECOVERY_CODES_REGENERATED)

    # Then the counter started again: limit - 1 further failures are not throttled
    for attempt in range(limit - 1):
        assert "incorrect" in _regenerate_codes(client, f"again {attempt}")
