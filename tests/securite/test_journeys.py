"""The portal's own rows feed the detectors: real log-ins and a real foreign access."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from portal.securite.models import AlertKind
from tests.conftest import login
from tests.factories import OfficerWorld
from tests.securite.test_alerts import alerts_of, run_job
from tests.securite.test_workspace import make_deposit
from tests.support.services import SmtpSink, body_of


def test_five_wrong_passwords_through_the_log_in_page_alert_the_officer_of_62(
    app: Flask, world: OfficerWorld, client: FlaskClient, smtp: SmtpSink
) -> None:
    # Given five log-in attempts with a wrong password on the account of an agent of 62
    for _ in range(5):
        response = login(client, world.agent62, password="wrong password 1234")
        assert response.status_code in (200, 429)
    # When the alert job runs
    run_job(app)
    # Then the officer of 62 receives one e-mail that names nobody, and the officer of 59 none
    [alert] = alerts_of(app, AlertKind.LOGIN_FAILURES_ACCOUNT)
    assert alert.subject_id == world.agent62.id
    body = body_of(smtp.last_to(world.officer62.email))
    assert world.agent62.email not in body and "203.0.113.10" not in body
    assert smtp.to(world.officer59.email) == []


def test_an_agent_of_62_opening_a_deposit_of_59_alerts_both_officers(
    app: Flask,
    world: OfficerWorld,
    login_as: Callable[..., FlaskClient],
    smtp: SmtpSink,
) -> None:
    # Given a deposit of 59
    deposit59, _file = make_deposit(app, world.agent59, "59", "Fiche 59")
    # When an agent of 62 asks for it (404, and an access:denied row)
    c = login_as(world.agent62)
    assert c.get(f"/depots/{deposit59}").status_code == 404
    run_job(app)
    # Then one foreign-access alert, for 59's officers and 62's
    [alert] = alerts_of(app, AlertKind.FOREIGN_ACCESS)
    assert alert.departement_code == "59" and alert.organisation_id == world.org62
    assert len(smtp.to(world.officer59.email)) == 1
    assert len(smtp.to(world.officer62.email)) == 1
    # And an agent of 59 opening it raises nothing more
    c59 = login_as(world.agent59, on=app.test_client())
    c59.get(f"/depots/{deposit59}")
    run_job(app)
    assert len(alerts_of(app)) == 1
