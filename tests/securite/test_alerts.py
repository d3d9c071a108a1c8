"""Each alert fires on its scenario and not otherwise; dedup; e-mails on the real SMTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

import audit
from audit import AuditAction, AuditEvent, Outcome
from portal.accounts.models import Role, User
from portal.container import services
from portal.db import db, utcnow
from portal.mail import MailError
from portal.orgs.models import OrgKind
from portal.securite import alerts as alerts_module
from portal.securite.alerts import NOTIFICATION_KEY, AlertReport, run_alert_job
from portal.securite.detectors import network_of
from portal.securite.models import AlertJobState, AlertKind, AlertStatus, SecurityAlert
from portal.securite.services import scope_for, visible_alerts
from tests.factories import Factory, OfficerWorld
from tests.securite.conftest import Emit
from tests.support.services import SmtpSink, body_of

LoginAs = Callable[..., FlaskClient]
NOW = utcnow().replace(microsecond=0) - timedelta(hours=2)


def run_job(app: Flask, *, verify_chain: bool = False, dry_run: bool = False) -> AlertReport:
    with app.app_context():
        svc = services()
        return run_alert_job(
            db.session,
            svc.settings,
            svc.mailer,
            utcnow(),
            audit.Context(user_agent="test-job"),
            verify_chain=verify_chain,
            dry_run=dry_run,
        )


def alerts_of(app: Flask, kind: AlertKind | None = None) -> list[SecurityAlert]:
    with app.app_context():
        stmt = sa.select(SecurityAlert).order_by(SecurityAlert.created_at)
        if kind is not None:
            stmt = stmt.where(SecurityAlert.kind == kind)
        rows = list(db.session.execute(stmt).scalars())
        db.session.expunge_all()
        return rows


def failures(
    emit: Emit, who: object, n: int, *, start: datetime, every: timedelta, ip: str
) -> None:
    for i in range(n):
        emit(
            AuditAction.AUTH_LOGIN_FAILURE,
            who,
            ip=ip,
            outcome=Outcome.FAILURE,
            at=start + i * every,
            details={"reason": "bad_password"},
        )


# --- repeated log-in failures -----------------------------------------------------------


def test_five_failures_in_fifteen_minutes_on_an_account_raise_one_alert_mailed_to_its_officers(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    # Given five failed log-ins on the account of an agent of 62 within 4 minutes
    failures(emit, world.agent62, 5, start=NOW, every=timedelta(minutes=1), ip="203.0.113.10")
    # When the alert job runs
    report = run_job(app)
    # Then one alert, scoped to the agent's organisation, e-mailed to the officers who see it
    [alert] = alerts_of(app, AlertKind.LOGIN_FAILURES_ACCOUNT)
    assert (alert.subject_type, alert.subject_id) == ("user", world.agent62.id)
    assert alert.organisation_id == world.org62 and alert.status == AlertStatus.NEW
    assert report.raised == 1
    assert len(smtp.to(world.officer62.email)) == 1
    assert len(smtp.to(world.officer_national.email)) == 1
    assert smtp.to(world.officer59.email) == []
    assert smtp.to(world.officer_ft62.email) == []
    # And the e-mail names nobody: the kind and a link only
    body = body_of(smtp.last_to(world.officer62.email))
    assert f"https://filr.test/securite/alertes/{alert.id}" in body
    for secret in (world.agent62.email, "Alex Test", "203.0.113.10", world.agent62.id):
        assert secret not in body


def test_four_failures_or_five_spread_over_twenty_minutes_raise_nothing(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    # Given four failures in a row on one account, and five spread over 20 minutes on another
    failures(emit, world.agent62, 4, start=NOW, every=timedelta(minutes=1), ip="203.0.113.10")
    failures(emit, world.agent59, 5, start=NOW, every=timedelta(minutes=5), ip="203.0.113.11")
    # When the job runs
    run_job(app)
    # Then no alert and no mail
    assert alerts_of(app) == []
    assert smtp.messages == []


def test_failures_counted_across_two_runs_still_raise_the_alert(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given three failures scanned by a first run, then two more within the window
    failures(emit, world.agent62, 3, start=NOW, every=timedelta(minutes=1), ip="203.0.113.10")
    run_job(app)
    assert alerts_of(app) == []
    failures(
        emit,
        world.agent62,
        2,
        start=NOW + timedelta(minutes=3),
        every=timedelta(minutes=1),
        ip="203.0.113.10",
    )
    # When the job runs again, Then the window spans both runs
    run_job(app)
    assert len(alerts_of(app, AlertKind.LOGIN_FAILURES_ACCOUNT)) == 1


def test_twenty_failures_from_one_ip_raise_an_ip_alert_and_nineteen_do_not(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given 19 failures from one IP on unknown accounts (no actor)
    failures(emit, None, 19, start=NOW, every=timedelta(seconds=20), ip="198.51.100.7")
    run_job(app)
    assert alerts_of(app, AlertKind.LOGIN_FAILURES_IP) == []
    # When the 20th arrives within the window
    failures(emit, None, 1, start=NOW + timedelta(minutes=7), every=timedelta(0), ip="198.51.100.7")
    run_job(app)
    # Then an IP alert, for the national officers only (no organisation behind it)
    [alert] = alerts_of(app, AlertKind.LOGIN_FAILURES_IP)
    assert (alert.subject_type, alert.subject_id) == ("ip", "198.51.100.7")
    assert alert.organisation_id is None and alert.departement_code is None


# --- MFA replay --------------------------------------------------------------------------


def test_an_mfa_replay_raises_an_alert_and_an_mfa_success_does_not(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    emit(AuditAction.AUTH_MFA_SUCCESS, world.agent59)
    run_job(app)
    assert alerts_of(app) == []
    # Given a replayed TOTP code on the account of an agent of 59
    emit(AuditAction.AUTH_MFA_REPLAY, world.agent59, outcome=Outcome.FAILURE)
    # When the job runs, Then an MFA replay alert for 59's officers
    run_job(app)
    [alert] = alerts_of(app, AlertKind.MFA_REPLAY)
    assert alert.subject_id == world.agent59.id and alert.organisation_id == world.org59
    assert len(smtp.to(world.officer59.email)) == 1
    assert smtp.to(world.officer62.email) == []


# --- access refused to another département -----------------------------------------------


def test_access_refused_to_a_deposit_of_another_departement_raises_an_alert_for_both_sides(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    # Given an agent of 62 refused a deposit of 59
    emit(
        AuditAction.ACCESS_DENIED,
        world.agent62,
        outcome=Outcome.DENIED,
        target=audit.Target("deposit", "d" * 32, "59"),
        details={"reason": "not_visible"},
    )
    # When the job runs
    run_job(app)
    # Then one alert, seen by the officers of 59 (the space) and of 62 (the actor)
    [alert] = alerts_of(app, AlertKind.FOREIGN_ACCESS)
    assert alert.departement_code == "59" and alert.organisation_id == world.org62
    assert len(smtp.to(world.officer59.email)) == 1
    assert len(smtp.to(world.officer62.email)) == 1


def test_access_refused_inside_ones_own_departement_or_to_an_unknown_id_raises_nothing(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given a provider of 62 refused a deposit of 62, and an agent probing an unknown id
    emit(
        AuditAction.ACCESS_DENIED,
        world.provider_agent62,
        outcome=Outcome.DENIED,
        target=audit.Target("deposit", "e" * 32, "62"),
        details={"reason": "not_visible"},
    )
    emit(
        AuditAction.ACCESS_DENIED,
        world.agent62,
        outcome=Outcome.DENIED,
        target=audit.Target("deposit", "f" * 32, None),
        details={"reason": "unknown"},
    )
    run_job(app)
    assert alerts_of(app) == []


def test_a_refusal_on_59_after_one_on_62_opens_its_own_alert_for_the_officers_of_59(
    app: Flask, world: OfficerWorld, factory: Factory, emit: Emit, smtp: SmtpSink, login_as: LoginAs
) -> None:
    # Given an agent of 80 refused a deposit of 62, and the alert raised for 62
    org80 = factory.org(OrgKind.DEPARTEMENT, "80", name="CD 80")
    agent80 = factory.user(org80, (Role.AGENT,), email="agent80@example.org")
    emit(
        AuditAction.ACCESS_DENIED,
        agent80,
        outcome=Outcome.DENIED,
        target=audit.Target("deposit", "a" * 32, "62"),
        at=NOW,
    )
    run_job(app)
    [alert62] = alerts_of(app, AlertKind.FOREIGN_ACCESS)
    assert smtp.to(world.officer59.email) == []
    # When the same agent is refused a deposit of 59 while that alert is still open
    emit(
        AuditAction.ACCESS_DENIED,
        agent80,
        outcome=Outcome.DENIED,
        target=audit.Target("deposit", "b" * 32, "59"),
        at=NOW + timedelta(minutes=5),
    )
    report = run_job(app)
    # Then a second alert, scoped to 59, is raised and mailed to the officer of 59
    assert (report.raised, report.updated) == (1, 0)
    alerts = {a.departement_code: a for a in alerts_of(app, AlertKind.FOREIGN_ACCESS)}
    assert set(alerts) == {"62", "59"} and alerts["62"].id == alert62.id
    assert alerts["59"].organisation_id == org80
    assert len(smtp.to(world.officer59.email)) == 1
    # And the alert of 62 says nothing of 59, in its details or on its page
    assert alerts["62"].occurrences == 1
    details = json.loads(alerts["62"].details)
    details.pop("_notification", None)  # officer ids (random hex may contain "59")
    assert details["departements"] == ["62"] and "59" not in json.dumps(details)
    c = login_as(world.officer62, on=app.test_client())
    html = c.get(f"/securite/alertes/{alert62.id}").get_data(as_text=True)
    assert "<dt>Départements visés</dt><dd>62</dd>" in html


def test_an_ip_alert_of_62_does_not_absorb_failures_on_accounts_of_59(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    # Given 20 failures from one IP on an account of 62: an IP alert for the organisation of 62
    failures(emit, world.agent62, 20, start=NOW, every=timedelta(seconds=10), ip="198.51.100.7")
    run_job(app)
    [ip62] = alerts_of(app, AlertKind.LOGIN_FAILURES_IP)
    assert ip62.organisation_id == world.org62
    smtp.clear()
    # When, 40 minutes later, the same IP fails 20 times on an account of 59
    failures(
        emit,
        world.agent59,
        20,
        start=NOW + timedelta(minutes=40),
        every=timedelta(seconds=10),
        ip="198.51.100.7",
    )
    run_job(app)
    # Then the officers of 59 get an IP alert of their own, and its e-mail
    by_org = {a.organisation_id: a for a in alerts_of(app, AlertKind.LOGIN_FAILURES_IP)}
    assert set(by_org) == {world.org62, world.org59}
    assert by_org[world.org62].occurrences == ip62.occurrences
    assert by_org[world.org62].last_seen_at == ip62.last_seen_at
    mails59 = [body_of(m) for m in smtp.to(world.officer59.email)]
    assert any(f"/securite/alertes/{by_org[world.org59].id}" in body for body in mails59)
    assert smtp.to(world.officer62.email) == []
    with app.app_context():
        officer59 = db.session.get(User, world.officer59.id)
        seen = visible_alerts(db.session, scope_for(db.session, officer59))
        assert by_org[world.org59].id in {a.id for a in seen}
        assert ip62.id not in {a.id for a in seen}


# --- probing of unknown ids --------------------------------------------------------------


def unknown_ids(emit: Emit, who: object, n: int, start: datetime, kind: str = "deposit") -> None:
    for i in range(n):
        emit(
            AuditAction.ACCESS_DENIED,
            who,
            outcome=Outcome.DENIED,
            target=audit.Target(kind, f"{i:032x}", None),
            details={"reason": "unknown"},
            at=start + timedelta(seconds=20 * i),
        )


def test_twenty_unknown_ids_in_ten_minutes_raise_a_probing_alert_and_nineteen_do_not(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    # Given an agent of 62 refused 19 ids that exist nowhere (deposits and flows) in 6 minutes,
    # and refusals that are not probes: a real deposit of 59, a revoked API token
    unknown_ids(emit, world.agent62, 10, NOW)
    unknown_ids(emit, world.agent62, 9, NOW + timedelta(minutes=3), kind="flow")
    emit(
        AuditAction.ACCESS_DENIED,
        world.agent62,
        outcome=Outcome.DENIED,
        target=audit.Target("deposit", "d" * 32, "59"),
        details={"reason": "not_visible"},
        at=NOW + timedelta(minutes=6),
    )
    emit(
        AuditAction.ACCESS_DENIED,
        world.agent62,
        outcome=Outcome.DENIED,
        target=audit.Target("api_token", "t" * 32, None),
        details={"reason": "token_revoked"},
        at=NOW + timedelta(minutes=6),
    )
    run_job(app)
    assert alerts_of(app, AlertKind.UNKNOWN_IDS) == []
    # When a 20th unknown id is asked for within the ten minutes
    unknown_ids(emit, world.agent62, 1, NOW + timedelta(minutes=7))
    run_job(app)
    # Then one probing alert on that account, for the officers of its organisation
    [alert] = alerts_of(app, AlertKind.UNKNOWN_IDS)
    assert (alert.subject_type, alert.subject_id) == ("user", world.agent62.id)
    assert alert.organisation_id == world.org62 and alert.departement_code is None
    assert json.loads(alert.details)["count_in_window"] == 20
    label = "Demandes répétées de dépôts ou de flux inexistants"
    assert [label in body_of(m) for m in smtp.to(world.officer62.email)].count(True) == 1
    # (59's officers hear of the refusal on 59, which is the foreign-access alert, not of this)
    assert not any(label in body_of(m) for m in smtp.to(world.officer59.email))


def test_unknown_ids_spread_over_more_than_the_window_raise_nothing(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given 20 unknown ids, one every minute: never 20 within ten minutes
    for i in range(20):
        unknown_ids(emit, world.agent62, 1, NOW + timedelta(minutes=i))
    run_job(app)
    assert alerts_of(app, AlertKind.UNKNOWN_IDS) == []


def test_the_probing_threshold_and_window_are_settings(
    make_app: Callable[..., Flask], world: OfficerWorld, emit: Emit, app: Flask
) -> None:
    # Given a threshold of 3 unknown ids in one minute
    strict = make_app(alert_unknown_ids=3, alert_unknown_ids_window_minutes=1)
    unknown_ids(emit, world.agent62, 3, NOW)  # 3 in 40 seconds
    # When the job runs with it, Then 3 are too many
    run_job(strict)
    assert len(alerts_of(app, AlertKind.UNKNOWN_IDS)) == 1


def test_an_agent_probing_random_deposit_ids_on_the_portal_is_reported_to_its_officers(
    app: Flask, world: OfficerWorld, smtp: SmtpSink, login_as: LoginAs
) -> None:
    # Given an agent of 62 who asks the portal for 20 random deposit and flow ids
    from portal.db import new_id

    c = login_as(world.agent62, on=app.test_client())
    for i in range(20):
        path = f"/depots/{new_id()}" if i % 2 else f"/flux/depots/{new_id()}"
        assert c.get(path).status_code == 404
    # When the alert job runs
    run_job(app)
    # Then its officers are told, and see the alert, labelled in French, in their workspace
    [alert] = alerts_of(app, AlertKind.UNKNOWN_IDS)
    assert alert.subject_id == world.agent62.id
    assert len(smtp.to(world.officer62.email)) == 1
    officer = login_as(world.officer62, on=app.test_client())
    html = officer.get(f"/securite/alertes/{alert.id}").get_data(as_text=True)
    assert "Demandes répétées de dépôts ou de flux inexistants" in html
    assert "Demandes répétées de dépôts ou de flux inexistants" in officer.get(
        "/securite/alertes"
    ).get_data(as_text=True)


# --- download surge ----------------------------------------------------------------------


def downloads(emit: Emit, who: object, n: int, start: datetime) -> None:
    for i in range(n):
        emit(
            AuditAction.DEPOSIT_DOWNLOADED,
            who,
            target=audit.Target("file", f"{i:032x}", "62"),
            details={"deposit_id": "a" * 32, "size": 10},
            at=start + timedelta(seconds=30 * i),
        )


def test_fifty_one_downloads_in_an_hour_raise_an_alert_and_fifty_do_not(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given 50 downloads in 25 minutes: the threshold, not above it
    downloads(emit, world.agent62, 50, NOW)
    run_job(app)
    assert alerts_of(app) == []
    # When a 51st arrives within the hour
    downloads(emit, world.agent62, 1, NOW + timedelta(minutes=40))
    run_job(app)
    # Then a download surge alert on that account
    [alert] = alerts_of(app, AlertKind.DOWNLOAD_SURGE)
    assert alert.subject_id == world.agent62.id and alert.departement_code == "62"


def test_failed_downloads_do_not_count_towards_a_surge(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given 50 downloads in an hour, the threshold, and failed attempts before and after them
    def failed(n: int, start: datetime, reason: str) -> None:
        for i in range(n):
            emit(
                AuditAction.DEPOSIT_DOWNLOADED,
                world.agent62,
                outcome=Outcome.FAILURE,
                target=audit.Target("file", f"{i:032x}", "62"),
                details={"deposit_id": "a" * 32, "reason": reason, "bytes_sent": 0},
                at=start + timedelta(seconds=10 * i),
            )

    failed(5, NOW - timedelta(minutes=5), "storage_unavailable")
    downloads(emit, world.agent62, 50, NOW)
    run_job(app)
    failed(5, NOW + timedelta(minutes=30), "interrupted")
    # When the job runs, in the same batch as the downloads and in a later one
    run_job(app)
    # Then no file was handed over beyond the threshold: no alert
    assert alerts_of(app, AlertKind.DOWNLOAD_SURGE) == []
    # And one more successful download still raises it
    downloads(emit, world.agent62, 1, NOW + timedelta(minutes=40))
    run_job(app)
    assert len(alerts_of(app, AlertKind.DOWNLOAD_SURGE)) == 1


def test_the_download_threshold_is_a_setting(
    make_app: object, world: OfficerWorld, emit: Emit, app: Flask
) -> None:
    # Given a threshold of 3 files per hour
    strict = make_app(alert_downloads_max=3)  # type: ignore[operator]
    downloads(emit, world.agent62, 4, NOW)
    # When the job runs with it, Then 4 downloads are too many
    run_job(strict)
    assert len(alerts_of(app, AlertKind.DOWNLOAD_SURGE)) == 1


# --- new network for a privileged account ------------------------------------------------


def test_log_in_from_a_new_network_raises_an_alert_for_a_privileged_account_only(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given a first log-in of an account manager (no history: activation is no anomaly)
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.gest62, ip="203.0.113.10")
    run_job(app)
    assert alerts_of(app) == []
    # And a later log-in from the same /24
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.gest62, ip="203.0.113.200")
    run_job(app)
    assert alerts_of(app) == []
    # And an agent (not privileged) logging in from two networks
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent62, ip="203.0.113.10")
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent62, ip="192.0.2.1")
    run_job(app)
    assert alerts_of(app) == []
    # When the account manager logs in from another network
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.gest62, ip="192.0.2.44")
    run_job(app)
    # Then one alert naming the /24 network
    [alert] = alerts_of(app, AlertKind.NEW_NETWORK)
    assert alert.subject_id == world.gest62.id
    assert '"192.0.2.0/24"' in alert.details
    assert alert.departement_code is None and alert.organisation_id == world.org62


def test_a_new_network_alert_goes_to_the_organisation_not_to_france_travail_of_its_departement(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    # Given an account manager of 62 logging in from a second network (log-in rows carry no
    # département: only the officers of the organisation and the national ones can read them)
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.gest62, ip="203.0.113.5", at=NOW)
    emit(
        AuditAction.AUTH_LOGIN_SUCCESS, world.gest62, ip="192.0.2.99", at=NOW + timedelta(minutes=1)
    )
    # When the job runs
    run_job(app)
    # Then the alert is scoped to the organisation only
    [alert] = alerts_of(app, AlertKind.NEW_NETWORK)
    assert alert.departement_code is None and alert.organisation_id == world.org62
    # And it is mailed to the officers of 62 and the national ones, not to France Travail's 62
    assert len(smtp.to(world.officer62.email)) == 1
    assert len(smtp.to(world.officer_national.email)) == 1
    assert smtp.to(world.officer_ft62.email) == []


def test_ipv6_networks_are_compared_on_their_48_bit_prefix(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.officer59, ip="2001:db8:1:1::5")
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.officer59, ip="2001:db8:1:ffff::9")
    run_job(app)
    assert alerts_of(app) == []
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.officer59, ip="2001:db8:2::1")
    run_job(app)
    assert len(alerts_of(app, AlertKind.NEW_NETWORK)) == 1


def test_network_of_ipv4_ipv6_mapped_and_garbage() -> None:
    assert network_of("203.0.113.77") == "203.0.113.0/24"
    assert network_of("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert network_of("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert network_of("not an ip\r\n") is None
    assert network_of(None) is None


# --- broken chain ------------------------------------------------------------------------


def test_a_row_altered_in_the_database_raises_a_chain_alert_mailed_to_every_officer(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    seq = emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent62)
    emit(AuditAction.AUTH_LOGOUT, world.agent62)
    # A valid chain raises nothing and records its status
    run_job(app, verify_chain=True)
    assert alerts_of(app) == []
    with app.app_context():
        state = db.session.get(AlertJobState, 1)
        assert state is not None and state.chain_is_valid is True
    # Given a row rewritten behind the application's back (a superuser, a restored dump)
    with app.app_context():
        db.session.execute(
            sa.update(AuditEvent).where(AuditEvent.seq == seq).values(source_ip="192.0.2.99")
        )
        db.session.commit()
    # When the job verifies the chain
    report = run_job(app, verify_chain=True)
    # Then a chain alert names the first broken row and every officer is told
    assert report.chain_valid is False
    [alert] = alerts_of(app, AlertKind.CHAIN_BROKEN)
    assert f'"first_broken_seq": {seq}' in alert.details
    for officer in (world.officer62, world.officer59, world.officer_ft62, world.officer_national):
        assert len(smtp.to(officer.email)) == 1
    with app.app_context():
        state = db.session.get(AlertJobState, 1)
        assert state is not None and state.chain_is_valid is False
        assert state.chain_first_broken_seq == seq


def test_a_failed_verify_command_row_raises_a_chain_alert(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    emit(AuditAction.AUDIT_VERIFIED, None, details={"valid": True, "checked": 10})
    run_job(app)
    assert alerts_of(app) == []
    emit(
        AuditAction.AUDIT_VERIFIED,
        None,
        outcome=Outcome.FAILURE,
        details={"valid": False, "first_broken_seq": 7},
    )
    run_job(app)
    [alert] = alerts_of(app, AlertKind.CHAIN_BROKEN)
    assert '"first_broken_seq": 7' in alert.details


# --- idempotence -------------------------------------------------------------------------


def test_running_the_job_twice_raises_and_mails_once(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    failures(emit, world.agent62, 6, start=NOW, every=timedelta(minutes=1), ip="203.0.113.10")
    emit(AuditAction.AUTH_MFA_REPLAY, world.agent62, outcome=Outcome.FAILURE)
    first = run_job(app)
    second = run_job(app)
    assert (first.raised, second.raised, second.updated) == (2, 0, 0)
    assert len(alerts_of(app)) == 2
    [failures_alert] = alerts_of(app, AlertKind.LOGIN_FAILURES_ACCOUNT)
    assert failures_alert.occurrences == 2  # the 5th and the 6th failure crossed the threshold
    assert len(smtp.to(world.officer62.email)) == 2
    raised = [e for e in audit_events(app) if e.action == AuditAction.ALERT_RAISED]
    assert len(raised) == 2


def test_a_new_occurrence_updates_the_open_alert_without_a_new_mail(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    emit(AuditAction.AUTH_MFA_REPLAY, world.agent62, outcome=Outcome.FAILURE)
    run_job(app)
    emit(AuditAction.AUTH_MFA_REPLAY, world.agent62, outcome=Outcome.FAILURE)
    report = run_job(app)
    assert (report.raised, report.updated) == (0, 1)
    [alert] = alerts_of(app)
    assert alert.occurrences == 2
    assert len(smtp.to(world.officer62.email)) == 1


def test_dry_run_changes_nothing(
    app: Flask, world: OfficerWorld, emit: Emit, smtp: SmtpSink
) -> None:
    emit(AuditAction.AUTH_MFA_REPLAY, world.agent62, outcome=Outcome.FAILURE)
    report = run_job(app, dry_run=True)
    assert report.kinds == {"mfa_replay": 1}
    assert alerts_of(app) == [] and smtp.messages == []
    assert run_job(app).raised == 1


def audit_events(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.seq)).scalars())
        db.session.expunge_all()
        return rows


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_unreachable_relay_leaves_the_alert_to_be_mailed_at_the_next_run(
    make_app: object, world: OfficerWorld, emit: Emit, app: Flask, smtp: SmtpSink
) -> None:
    # Given a relay that refuses connections
    broken = make_app(smtp_port=1)  # type: ignore[operator]
    emit(AuditAction.AUTH_MFA_REPLAY, world.agent62, outcome=Outcome.FAILURE)
    report = run_job(broken)
    assert report.raised == 1 and report.mails_failed >= 1
    [alert] = alerts_of(app)
    assert alert.notified_at is None
    # When the relay is back, Then the next run delivers it
    report = run_job(app)
    assert report.mails_sent >= 1
    assert len(smtp.to(world.officer62.email)) == 1


class RefusingMailer:
    """Delivers to every address but one, whose mailbox refuses every message."""

    def __init__(self, refused: str) -> None:
        self.refused = refused
        self.sent: list[str] = []
        self.attempts = 0

    def send(self, to: str, subject: str, body: str) -> None:
        if to == self.refused:
            self.attempts += 1
            raise MailError("550 mailbox unavailable")
        self.sent.append(to)


def run_with(app: Flask, mailer: RefusingMailer) -> AlertReport:
    with app.app_context():
        return run_alert_job(
            db.session, services().settings, mailer, utcnow(), audit.Context(user_agent="test-job")
        )


def refusal_of_62_on_59(emit: Emit, world: OfficerWorld) -> None:
    """An alert seen by the officers of 59, of 62 and the national one."""
    emit(
        AuditAction.ACCESS_DENIED,
        world.agent62,
        outcome=Outcome.DENIED,
        target=audit.Target("deposit", "d" * 32, "59"),
    )


def test_one_refused_mailbox_does_not_make_the_other_officers_receive_the_alert_again(
    app: Flask, world: OfficerWorld, emit: Emit, login_as: LoginAs
) -> None:
    # Given an alert for the officers of 59, 62 and the national one, and 59's mailbox refusing
    refusal_of_62_on_59(emit, world)
    mailer = RefusingMailer(world.officer59.email)
    # When the job runs three times
    reports = [run_with(app, mailer) for _ in range(3)]
    # Then the others received the alert exactly once, and 59's delivery was tried each time
    assert mailer.sent.count(world.officer62.email) == 1
    assert mailer.sent.count(world.officer_national.email) == 1
    assert len(mailer.sent) == 2 and mailer.attempts == 3
    assert [r.mails_failed for r in reports] == [1, 1, 1]
    [alert] = alerts_of(app)
    assert alert.notified_at is None
    # And the bookkeeping holds ids only, and is not shown as a detail of the detection
    assert world.officer62.id in alert.details and "@" not in alert.details
    c = login_as(world.officer62, on=app.test_client())
    html = c.get(f"/securite/alertes/{alert.id}").get_data(as_text=True)
    assert "<dt>Départements visés</dt><dd>59</dd>" in html
    for hidden in (NOTIFICATION_KEY, world.officer62.id, world.officer59.id, "attempts"):
        assert hidden not in html


def test_a_refused_mailbox_is_given_up_after_a_bounded_number_of_attempts(
    app: Flask, world: OfficerWorld, emit: Emit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given at most 3 attempts per officer, and 59's mailbox refusing every message
    monkeypatch.setattr(alerts_module, "MAIL_MAX_ATTEMPTS", 3)
    refusal_of_62_on_59(emit, world)
    mailer = RefusingMailer(world.officer59.email)
    # When the job runs five times
    for _ in range(5):
        run_with(app, mailer)
    # Then 59 was tried three times, the others mailed once, and the alert counts as notified
    assert mailer.attempts == 3
    assert sorted(mailer.sent) == sorted([world.officer62.email, world.officer_national.email])
    [alert] = alerts_of(app)
    assert alert.notified_at is not None


def test_the_first_run_looks_back_one_day_only(app: Flask, world: OfficerWorld, emit: Emit) -> None:
    # Given a replay two days ago and one an hour ago, before the job ever ran
    emit(AuditAction.AUTH_MFA_REPLAY, world.agent62, at=utcnow() - timedelta(days=2))
    emit(AuditAction.AUTH_MFA_REPLAY, world.agent59, at=utcnow() - timedelta(hours=1))
    # When the job runs for the first time, Then only the recent one raises an alert
    run_job(app)
    [alert] = alerts_of(app)
    assert alert.subject_id == world.agent59.id


def test_a_deleted_last_row_is_found_by_the_chain_check(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given the newest row deleted behind the application's back
    emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent62)
    last = emit(AuditAction.AUTH_LOGOUT, world.agent62)
    with app.app_context():
        db.session.execute(sa.text("DELETE FROM audit_event WHERE seq = :s"), {"s": last})
        db.session.commit()
    # When the job verifies the chain, Then the head no longer matches and the alert names it
    report = run_job(app, verify_chain=True)
    assert report.chain_valid is False
    [alert] = alerts_of(app, AlertKind.CHAIN_BROKEN)
    assert f'"first_broken_seq": {last}' in alert.details


@pytest.mark.parametrize("backend", ["postgres"])
def test_a_row_committed_by_another_server_during_the_check_is_no_broken_chain(
    app: Flask, world: OfficerWorld, emit: Emit
) -> None:
    # Given a valid trail, and another server committing a row just before the job reads the
    # chain head (READ COMMITTED: read after the rows, the head would be newer than them)
    for _ in range(3):
        emit(AuditAction.AUTH_LOGIN_SUCCESS, world.agent62)
    armed = [True]

    def interleave(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if armed[0] and "FROM audit_chain_head" in statement:
            armed[0] = False
            writer = threading.Thread(
                target=emit, args=(AuditAction.DEPOSIT_LINK_ISSUED, world.agent62)
            )
            writer.start()
            writer.join()

    engine = db.bound(app).engine
    event.listen(engine, "before_cursor_execute", interleave)
    try:
        report = run_job(app, verify_chain=True)
    finally:
        event.remove(engine, "before_cursor_execute", interleave)
    # Then the check found the chain valid, and no officer is alarmed
    assert armed == [False]
    assert report.chain_valid is True
    assert alerts_of(app, AlertKind.CHAIN_BROKEN) == []
