"""The annual review of habilitations, across the spring, with a frozen clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta
from email.header import decode_header, make_header
from email.message import Message

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction
from portal.accounts import review
from portal.accounts.habilitations import morning_of
from portal.accounts.models import (
    ReviewCampaign,
    ReviewDecision,
    ReviewDecisionKind,
    Role,
    User,
)
from portal.container import services
from portal.db import db
from portal.orgs.models import OrgKind
from portal.settings import Settings, SettingsError
from tests.conftest import audit_rows, csrf_of, reread
from tests.factories import Account, Factory
from tests.support.services import SmtpSink, body_of


def _subject(mail: Message) -> str:
    return str(make_header(decode_header(mail["Subject"])))


def _run(app: Flask, day: date) -> review.ReviewReport:
    with app.app_context():
        return review.run_review(db.session, services(), morning_of(day), audit.NO_CONTEXT)


def _campaign(app: Flask, org_id: str) -> ReviewCampaign:
    with app.app_context():
        found = db.session.execute(
            sa.select(ReviewCampaign).where(ReviewCampaign.organisation_id == org_id)
        ).scalar_one()
        db.session.expunge_all()
        return found


def _decide(app: Flask, manager: Account, target: Account, kind: ReviewDecisionKind) -> None:
    with app.app_context():
        campaign = review.open_campaign_of(db.session, manager.org_id)
        assert campaign is not None
        by, user = db.session.get(User, manager.id), db.session.get(User, target.id)
        assert by is not None and user is not None
        review.decide(db.session, campaign, user, kind, manager=by, ctx=audit.NO_CONTEXT)


class Cast:
    """CD 62 (a manager, four agents) and CD 59 (a manager, an agent)."""

    def __init__(self, factory: Factory) -> None:
        self.cd62 = factory.org(name="CD 62")
        self.cd59 = factory.org(departement="59", name="CD 59")
        self.manager62 = factory.user(self.cd62, (Role.GESTIONNAIRE,), email="rgc@cd62.example.org")
        self.agents62 = [
            factory.user(self.cd62, email=f"agent{i}@cd62.example.org", name=f"Agent {i}")
            for i in range(4)
        ]
        self.manager59 = factory.user(self.cd59, (Role.GESTIONNAIRE,), email="rgc@cd59.example.org")
        self.agent59 = factory.user(self.cd59, email="agent@cd59.example.org")


@pytest.fixture
def cast(factory: Factory) -> Cast:
    return Cast(factory)


def test_a_campaign_opens_on_1_march_reminds_and_on_1_may_suspends_the_undecided(
    app: Flask, cast: Cast, smtp: SmtpSink
) -> None:
    # Given the daily job from 20 February
    reports = {}
    day = date(2027, 2, 20)
    while day <= date(2027, 5, 5):
        reports[day] = _run(app, day)
        if day == date(2027, 3, 10):
            # the manager of 62 confirms itself and two agents, suspends one, forgets one
            _decide(app, cast.manager62, cast.manager62, ReviewDecisionKind.CONFIRMED)
            for agent in cast.agents62[:2]:
                _decide(app, cast.manager62, agent, ReviewDecisionKind.CONFIRMED)
            _decide(app, cast.manager62, cast.agents62[2], ReviewDecisionKind.SUSPENDED)
        day += timedelta(days=1)
    # Then the campaigns open on 1 March, one per organisation, managers told
    assert [d for d, r in reports.items() if r.opened] == [date(2027, 3, 1)]
    assert reports[date(2027, 3, 1)].opened == 2
    subjects = [_subject(m) for m in smtp.to(cast.manager62.email)]
    assert subjects[0] == "Fil'R : revue des habilitations ouverte"
    assert "30/04/2027" in body_of(smtp.to(cast.manager62.email)[0])
    # And reminders go weekly and 7 days before the end (23 April), while accounts wait
    reminded = [d for d, r in reports.items() if r.reminded]
    weekly = [date(2027, 3, 1) + timedelta(days=7 * n) for n in range(1, 9)]
    assert reminded == sorted([*weekly, date(2027, 4, 23)])
    assert subjects.count("Fil'R : rappel, revue des habilitations") == 9
    # And on 1 May the undecided accounts are suspended, each manager told once
    assert [d for d, r in reports.items() if r.closed] == [date(2027, 5, 1)]
    assert reports[date(2027, 5, 1)].suspended == 3  # agent 3 of 62; manager and agent of 59
    forgotten = reread(app, User, cast.agents62[3].id)
    assert forgotten.status == "suspended" and forgotten.suspension_reason == "review"
    assert reread(app, User, cast.agents62[0].id).status == "active"
    assert reread(app, User, cast.agents62[2].id).suspension_reason == "review"
    assert subjects[-1] == "Fil'R : revue des habilitations close"
    assert "1 compte(s) sans décision" in body_of(smtp.to(cast.manager62.email)[-1])
    assert len(audit_rows(app, AuditAction.ACCOUNT_REVIEW_CLOSED)) == 2
    assert len(audit_rows(app, AuditAction.ACCOUNT_REVIEW_CONFIRMED)) == 3
    assert len(audit_rows(app, AuditAction.ACCOUNT_REVIEW_SUSPENDED)) == 1
    # And no campaign opens again before next March
    assert _run(app, date(2027, 12, 1)).opened == 0


def test_a_manager_never_sees_nor_decides_another_organisations_accounts(
    app: Flask, client: FlaskClient, cast: Cast, login_as
) -> None:
    _run(app, date(2027, 3, 1))
    camp62, camp59 = _campaign(app, cast.cd62), _campaign(app, cast.cd59)
    # Given the manager of 59 on its review page
    login_as(cast.manager59)
    page = client.get("/gestion/revue").get_data(as_text=True)
    assert cast.agent59.email in page and cast.agents62[0].email not in page
    token = csrf_of(client, "/gestion/revue")
    target = cast.agents62[0].id
    # When it posts decisions on an account of 62, through either campaign
    for campaign_id in (camp62.id, camp59.id):
        for decision in ("confirmer", "suspendre"):
            url = f"/gestion/revue/{campaign_id}/{target}/{decision}"
            # Then 404, as for an unknown account, and nothing is decided
            assert client.post(url, data={"csrf_token": token}).status_code == 404
    unknown = f"/gestion/revue/{camp59.id}/{'0' * 32}/confirmer"
    assert client.post(unknown, data={"csrf_token": token}).status_code == 404
    with app.app_context():
        assert (
            db.session.execute(sa.select(sa.func.count()).select_from(ReviewDecision)).scalar() == 0
        )
    assert reread(app, User, target).status == "active"
    # And an agent gets 404 on the review page
    login_as(cast.agent59)
    assert client.get("/gestion/revue").status_code == 404


def test_a_manager_confirms_and_suspends_from_the_page_once_per_account(
    app: Flask, client: FlaskClient, cast: Cast, login_as
) -> None:
    _run(app, date(2027, 3, 1))
    campaign = _campaign(app, cast.cd62)
    login_as(cast.manager62)
    token = csrf_of(client, "/gestion/revue")
    first, second = cast.agents62[0].id, cast.agents62[1].id
    assert (
        client.post(
            f"/gestion/revue/{campaign.id}/{first}/confirmer", data={"csrf_token": token}
        ).status_code
        == 302
    )
    client.post(f"/gestion/revue/{campaign.id}/{second}/suspendre", data={"csrf_token": token})
    # A second decision on the same account (another manager, a replayed form) changes nothing
    again = client.post(
        f"/gestion/revue/{campaign.id}/{first}/suspendre",
        data={"csrf_token": token},
        follow_redirects=True,
    )
    assert "déjà été revu" in again.get_data(as_text=True)
    assert reread(app, User, first).status == "active"
    assert reread(app, User, second).status == "suspended"
    (row,) = audit_rows(app, AuditAction.ACCOUNT_REVIEW_SUSPENDED)
    assert row.actor_id == cast.manager62.id and row.target_id == second
    suspended = audit_rows(app, AuditAction.ACCOUNT_SUSPENDED)
    assert [r.target_id for r in suspended] == [second]
    page = client.get("/gestion/revue").get_data(as_text=True)
    assert "Confirmé" in page and "Suspendu" in page


def test_two_servers_opening_and_closing_at_once_act_once(
    app: Flask, make_app: Callable[..., Flask], cast: Cast, smtp: SmtpSink
) -> None:
    other = make_app()

    def both(day: date) -> list[review.ReviewReport]:
        barrier = threading.Barrier(2)
        reports: list[review.ReviewReport] = []

        def run(server: Flask) -> None:
            barrier.wait()
            reports.append(_run(server, day))

        threads = [threading.Thread(target=run, args=(s,)) for s in (app, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(reports) == 2
        return reports

    assert sum(r.opened for r in both(date(2027, 3, 1))) == 2
    assert len(smtp.to(cast.manager62.email)) == 1
    assert sum(r.reminded for r in both(date(2027, 3, 8))) == 2
    closing = both(date(2027, 5, 1))
    assert sum(r.closed for r in closing) == 2
    assert sum(r.suspended for r in closing) == 7
    assert len(audit_rows(app, AuditAction.ACCOUNT_REVIEW_OPENED)) == 2
    assert len(audit_rows(app, AuditAction.ACCOUNT_REVIEW_CLOSED)) == 2
    assert len(audit_rows(app, AuditAction.ACCOUNT_SUSPENDED)) == 7


def test_the_national_view_shows_progress_and_exports_a_french_csv(
    app: Flask, client: FlaskClient, factory: Factory, cast: Cast, login_as
) -> None:
    platform = factory.org(OrgKind.PLATEFORME, None, name="Plateforme")
    admin = factory.user(platform, (Role.ADMIN,))
    national = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("75",), name="FT DSI", national=True)
    officer = factory.user(national, (Role.SECURITE,))
    officer62 = factory.user(cast.cd62, (Role.SECURITE,))
    _run(app, date(2027, 3, 1))
    for account in [cast.manager62, officer62, *cast.agents62]:
        _decide(app, cast.manager62, account, ReviewDecisionKind.CONFIRMED)
    # Given the national security officer
    login_as(officer)
    html = client.get("/revue-des-habilitations").get_data(as_text=True)
    assert "CD 62" in html and "100 %" in html and "0 %" in html
    assert "Ouvrir une revue" not in html  # the operator's button only
    response = client.get("/revue-des-habilitations.csv")
    text = response.get_data(as_text=True)
    assert response.mimetype == "text/csv" and text.startswith("\ufeff")
    line62 = next(line for line in text.splitlines() if line.startswith("CD 62;"))
    assert line62.split(";")[-5:] == ["6", "6", "0", "0", "100"]
    # And an officer of 62, a manager and an agent get 404
    for account in (officer62, cast.manager62, cast.agent59):
        login_as(account)
        assert client.get("/revue-des-habilitations").status_code == 404
        assert client.get("/revue-des-habilitations.csv").status_code == 404
    # And the operator opens a review by hand for an organisation without one (not twice)
    provider = factory.org(OrgKind.PRESTATAIRE, "62", name="Asso 62")
    login_as(admin)
    token = csrf_of(client, "/revue-des-habilitations")
    url = f"/revue-des-habilitations/{provider}/ouvrir"
    done = client.post(url, data={"csrf_token": token}, follow_redirects=True)
    assert "Revue ouverte pour Asso 62" in done.get_data(as_text=True)
    again = client.post(url, data={"csrf_token": token}, follow_redirects=True)
    assert "déjà ouverte" in again.get_data(as_text=True)
    assert len(audit_rows(app, AuditAction.ACCOUNT_REVIEW_OPENED)) == 5  # 4 in March, 1 now


def test_the_review_window_is_checked_at_start(settings: Settings) -> None:
    for opens, closes in (("04-30", "03-01"), ("02-29", "04-30"), ("3-1", "04-30")):
        with pytest.raises(SettingsError, match="REVIEW_OPENS"):
            settings.with_overrides(review_opens=opens, review_closes=closes)
    assert settings.with_overrides(review_opens="09-15", review_closes="10-31")


def test_a_decision_on_a_campaign_closed_meanwhile_is_refused(app: Flask, cast: Cast) -> None:
    from sqlalchemy.orm import Session

    _run(app, date(2027, 3, 1))
    # Given a manager's request that loaded the open campaign
    with Session(db.bound(app).engine, expire_on_commit=False) as request:
        campaign = request.execute(
            sa.select(ReviewCampaign).where(ReviewCampaign.organisation_id == cast.cd62)
        ).scalar_one()
        by, agent = request.get(User, cast.manager62.id), request.get(User, cast.agents62[0].id)
        assert by is not None and agent is not None
        request.commit()
        assert campaign.status == "open"
        # When the job closes it first
        assert _run(app, date(2027, 5, 1)).closed == 2
        # Then the decision is refused and nothing is recorded
        with pytest.raises(review.ReviewError):
            review.decide(
                request, campaign, agent, ReviewDecisionKind.CONFIRMED, manager=by,
                ctx=audit.NO_CONTEXT,
            )  # fmt: skip
        request.rollback()
    with app.app_context():
        assert db.session.execute(sa.select(ReviewDecision)).first() is None
