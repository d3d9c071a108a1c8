"""Unused accounts: notice 7 days before, suspension after FILR_ACCOUNT_INACTIVE_DAYS days,
reactivation by the manager only, with a new password. Frozen clock (`now`, `--as-of`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction
from portal.accounts.habilitations import PARIS, morning_of, today_in_paris
from portal.accounts.inactivity import InactivityReport, suspend_unused_accounts
from portal.accounts.models import AccountStatus, Role, User
from portal.container import services
from portal.db import db, utcnow
from portal.settings import Settings, SettingsError
from tests.api.conftest import bare_client, make_token
from tests.conftest import audit_rows, csrf_of, login, reread
from tests.factories import Account, Factory
from tests.support.services import SmtpSink, body_of

LAST_LOGIN_DAY = date(2027, 1, 10)
LINK_RE = re.compile(r"https://filr\.test(/\S+)")


def _last_login(app: Flask, account: Account, day: date = LAST_LOGIN_DAY) -> None:
    """*account* last logged in at 23:30 in France on *day* (and was activated long before)."""
    at = datetime.combine(day, time(23, 30), PARIS)
    with app.app_context():
        db.session.execute(
            sa.update(User)
            .where(User.id == account.id)
            .values(last_login_at=at, activated_at=morning_of(date(2026, 1, 5)))
        )
        db.session.commit()


def _run(app: Flask, day: date) -> InactivityReport:
    with app.app_context():
        return suspend_unused_accounts(db.session, services(), morning_of(day), audit.NO_CONTEXT)


def _after(days: int) -> date:
    return LAST_LOGIN_DAY + timedelta(days=days)


@pytest.fixture
def pair(factory: Factory) -> tuple[Account, Account]:
    """An agent and the account manager of its organisation."""
    org = factory.org(name="CD 62")
    agent = factory.user(org, email="agent@cd62.example.org", name="Alice Agent")
    manager = factory.user(org, (Role.GESTIONNAIRE,), email="rgc@cd62.example.org")
    return agent, manager


def test_unused_59_days_stays_60_is_suspended_with_the_notice_at_53(
    app: Flask, pair: tuple[Account, Account], smtp: SmtpSink
) -> None:
    # Given an agent whose last log-in was on 10 January (its manager logs in every day)
    agent, manager = pair
    _last_login(app, agent)
    # When the daily job runs every day for three months
    reports = {}
    for n in range(0, 90):
        _last_login(app, manager, _after(n))
        reports[n] = _run(app, _after(n))
    # Then one notice on day 53, nothing on day 59, the suspension on day 60, and nothing after
    assert [n for n, r in reports.items() if r.notices] == [53]
    assert [n for n, r in reports.items() if r.suspended] == [60]
    (notice,) = smtp.to(agent.email)[:1]
    assert "sera suspendu le 11/03/2027" in body_of(notice)  # 10 January + 60 days
    user = reread(app, User, agent.id)
    assert user.status == "suspended" and user.suspension_reason == "inactivity"
    # And the person and the manager were told of the suspension; the trail holds one of each
    assert "faute d'utilisation" in body_of(smtp.to(manager.email)[-1])
    assert len(smtp.to(agent.email)) == 2
    assert len(audit_rows(app, AuditAction.ACCOUNT_NOTICE_SENT)) == 1
    (row,) = audit_rows(app, AuditAction.ACCOUNT_SUSPENDED)
    assert row.target_id == agent.id and '"inactivity"' in row.details and row.actor_id is None


def test_a_log_in_after_the_notice_keeps_the_account_and_rearms_the_notice(
    app: Flask, pair: tuple[Account, Account]
) -> None:
    agent, manager = pair
    _last_login(app, agent)
    _last_login(app, manager, _after(60))  # the manager is in use throughout
    assert _run(app, _after(53)).notices == 1
    # Given the person logs in on day 56
    _last_login(app, agent, _after(56))
    # Then day 60 suspends nothing, and the next notice comes 53 days after the new log-in
    assert _run(app, _after(60)).suspended == 0
    _last_login(app, manager, _after(56 + 53))
    assert _run(app, _after(56 + 52)).notices == 0
    assert _run(app, _after(56 + 53)).notices == 1


def test_the_limit_follows_the_setting_within_30_to_365_days(
    make_app: Callable[..., Flask], factory: Factory, settings: Settings
) -> None:
    app = make_app(account_inactive_days=30)
    agent = Factory(app).user(Factory(app).org())
    _last_login(app, agent)
    assert _run(app, _after(23)).notices == 1
    assert _run(app, _after(29)).suspended == 0
    assert _run(app, _after(30)).suspended == 1
    for wrong in (29, 366):
        with pytest.raises(SettingsError, match="ACCOUNT_INACTIVE_DAYS"):
            settings.with_overrides(account_inactive_days=wrong)


def test_accounts_never_activated_are_left_to_their_activation_link(
    app: Flask, factory: Factory
) -> None:
    pending = factory.user(factory.org(), status=AccountStatus.PENDING)
    assert _run(app, _after(400)).suspended == 0
    assert reread(app, User, pending.id).status == "pending"


def test_two_servers_running_the_job_at_once_send_one_notice_and_suspend_once(
    app: Flask,
    make_app: Callable[..., Flask],
    factory: Factory,
    pair: tuple[Account, Account],
    smtp: SmtpSink,
) -> None:
    # Given three accounts at day 53 and three at day 60, and a second server
    agent, manager = pair
    at_53 = [factory.user(agent.org_id) for _ in range(3)]
    at_60 = [agent] + [factory.user(agent.org_id) for _ in range(2)]
    for account in at_53:
        _last_login(app, account, _after(7))
    for account in at_60:
        _last_login(app, account)
    _last_login(app, manager, _after(60))
    assert _run(app, _after(53)).notices == 3  # those at day 60 were told on day 53
    other = make_app()
    smtp.clear()
    # When both run the job on day 60 at the same moment
    barrier = threading.Barrier(2)
    reports: list[InactivityReport] = []

    def run(server: Flask) -> None:
        barrier.wait()
        reports.append(_run(server, _after(60)))

    threads = [threading.Thread(target=run, args=(server,)) for server in (app, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Then one notice each, one suspension each, one audit row each, one mail each
    assert len(reports) == 2
    assert sum(r.notices for r in reports) == 3
    assert sum(r.suspended for r in reports) == 3
    assert len(audit_rows(app, AuditAction.ACCOUNT_NOTICE_SENT)) == 3 + 3
    assert len(audit_rows(app, AuditAction.ACCOUNT_SUSPENDED)) == 3
    assert len(smtp.to(manager.email)) == 3
    for account in at_53 + at_60:
        assert len(smtp.to(account.email)) == 1


def test_a_suspended_account_is_reactivated_by_its_manager_only_with_a_new_password(
    app: Flask,
    client: FlaskClient,
    pair: tuple[Account, Account],
    smtp: SmtpSink,
    login_as,
) -> None:
    # Given an agent with an API token, suspended for non-use
    agent, manager = pair
    token = make_token(app, agent)
    _last_login(app, agent)
    _last_login(app, manager, _after(60))
    assert _run(app, _after(53)).notices == 1  # never suspended without this notice
    assert _run(app, _after(60)).suspended == 1
    # Then its token stops at once, it cannot log in, nor ask itself for a reset link
    api = bare_client(app)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/deposits", headers=headers).status_code == 401
    assert login(client, agent).status_code == 200
    smtp.clear()
    client.post(
        "/mot-de-passe/oubli",
        data={"csrf_token": csrf_of(client, "/mot-de-passe/oubli"), "email": agent.email},
    )
    assert smtp.to(agent.email) == []
    # When its manager reactivates it
    login_as(manager)
    page = f"/gestion/comptes/{agent.id}"
    client.post(f"{page}/reactiver", data={"csrf_token": csrf_of(client, page)})
    # Then the account is active, its old password no longer works, its token stays revoked
    assert reread(app, User, agent.id).status == "active"
    assert "nouveau mot de passe à choisir" in client.get(page).get_data(as_text=True)
    person = app.test_client()
    person.environ_base.update({"HTTP_REFERER": "https://localhost/", "REMOTE_ADDR": "203.0.113.9"})
    assert login(person, agent).status_code == 200
    assert api.get("/api/v1/deposits", headers=headers).status_code == 401
    # And the person chooses a new password from the mailed link (72 h), then logs in
    mail = smtp.last_to(agent.email)
    match = LINK_RE.search(body_of(mail))
    assert match
    link = match.group(1)
    new_password = "une toute nouvelle phrase secrète"
    person.post(
        link,
        data={
            "csrf_token": csrf_of(person, link),
            "password": new_password,
            "confirmation": new_password,
        },
    )
    changed = Account(agent.id, agent.email, new_password, agent.totp_secret, agent.org_id)
    assert login(person, changed).status_code == 302
    (row,) = audit_rows(app, AuditAction.ACCOUNT_REACTIVATED)
    assert row.actor_id == manager.id
    # And the next day's run does not suspend it again: its days count from the reactivation
    _run(app, today_in_paris(utcnow()) + timedelta(days=1))
    assert reread(app, User, agent.id).status == "active"


def test_a_script_using_the_api_every_day_keeps_its_account(
    app: Flask, pair: tuple[Account, Account]
) -> None:
    from portal.api.models import ApiToken

    agent, manager = pair
    _last_login(app, agent)
    make_token(app, agent)
    # Given the person never logs in again, but its script used its token on day 50
    used = datetime.combine(_after(50), time(9, 0), PARIS)
    with app.app_context():
        db.session.execute(
            sa.update(ApiToken).where(ApiToken.user_id == agent.id).values(last_used_at=used)
        )
        db.session.commit()
    # Then day 60 neither suspends nor notifies; the notice comes 53 days after that use
    for day, notices in ((60, 0), (50 + 52, 0), (50 + 53, 1)):
        _last_login(app, manager, _after(day))  # the manager logs in every day
        report = _run(app, _after(day))
        assert (report.suspended, report.notices) == (0, notices), day
    assert reread(app, User, agent.id).status == AccountStatus.ACTIVE


def test_an_account_past_the_limit_but_never_told_is_told_first_and_suspended_7_days_later(
    app: Flask, pair: tuple[Account, Account], smtp: SmtpSink
) -> None:
    agent, manager = pair
    _last_login(app, agent)
    # Given the job runs for the first time on day 80 (first production run, scheduler down)
    for day, notices, suspended in ((80, 1, 0), (86, 0, 0), (87, 0, 1)):
        _last_login(app, manager, _after(day))  # the manager logs in every day
        report = _run(app, _after(day))
        # Then the notice goes first, and the suspension 7 days after it, not before
        assert (report.notices, report.suspended) == (notices, suspended), day
    (notice,) = smtp.to(agent.email)[:1]
    assert f"sera suspendu le {_after(87):%d/%m/%Y}" in body_of(notice)
    assert reread(app, User, agent.id).status == AccountStatus.SUSPENDED
