"""Expiry reminders, the daily digest and the notification preference, with a real SMTP server."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction
from portal.accounts.models import Role, User
from portal.container import services
from portal.db import db, utcnow
from portal.deposits.models import Deposit
from portal.deposits.reminders import (
    DigestReport,
    ReminderReport,
    send_daily_digests,
    send_expiry_reminders,
)
from portal.mail import Mailer, MailError
from portal.orgs.models import OrgKind
from portal.settings import Settings
from tests.conftest import audit_rows, csrf_of, reread
from tests.deposits.conftest import (
    PDF,
    create_deposit,
    download,
    file_ids,
    publish,
    sent_deposit,
    upload,
)
from tests.factories import Account, Factory, World
from tests.support.services import SmtpSink, body_of

Clients = Callable[[Account], FlaskClient]

NIR = "2850762123456"
NIR_TITLE = f"Fiche {NIR} LEFEBVRE Hélène"


# --- helpers ---------------------------------------------------------------------------


def _age(
    app: Flask,
    deposit_id: str,
    *,
    expires_in: timedelta,
    published_ago: timedelta = timedelta(days=30),
) -> None:
    """Move a deposit in time: published *published_ago*, expiring in *expires_in*."""
    now = utcnow()
    with app.app_context():
        db.session.execute(
            sa.update(Deposit)
            .where(Deposit.id == deposit_id)
            .values(
                created_at=now - published_ago - timedelta(minutes=5),
                published_at=now - published_ago,
                expires_at=now + expires_in,
            )
        )
        db.session.commit()


def _reminders(
    app: Flask, now: datetime | None = None, *, dry_run: bool = False, mailer: Mailer | None = None
) -> ReminderReport:
    with app.app_context():
        svc = services()
        if mailer is not None:
            svc = dataclasses.replace(svc, mailer=mailer)
        return send_expiry_reminders(db.session, svc, now or utcnow(), audit.NO_CONTEXT, dry_run)


def _digests(
    app: Flask, now: datetime | None = None, *, dry_run: bool = False, mailer: Mailer | None = None
) -> DigestReport:
    with app.app_context():
        svc = services()
        if mailer is not None:
            svc = dataclasses.replace(svc, mailer=mailer)
        return send_daily_digests(db.session, svc, now or utcnow(), audit.NO_CONTEXT, dry_run)


def _subject(mail: Message) -> str:
    """The decoded subject of a received message."""
    return str(make_header(decode_header(mail["Subject"])))


def _choose(client: FlaskClient, mode: str) -> None:
    """Save a notification preference through the page."""
    token = csrf_of(client, "/compte/notifications")
    response = client.post("/compte/notifications", data={"csrf_token": token, "mode": mode})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


@dataclasses.dataclass
class RefusingMailer:
    """Delivers through the real mailer, except to the addresses the relay refuses."""

    inner: Mailer
    refused: set[str]

    def send(self, to: str, subject: str, body: str) -> None:
        if to in self.refused:
            raise MailError("relay refused the recipient")
        self.inner.send(to, subject, body)


@pytest.fixture
def colleague_ft(factory: Factory, world: World) -> Account:
    """A second agent of France Travail 62 (two recipients behind one shared inbox)."""
    return factory.user(world.ft62, (Role.AGENT,), name="Colette Collegue")


# --- reminders -------------------------------------------------------------------------


def test_reminders_at_7_and_1_day_go_to_a_shared_inbox_until_one_member_downloads(
    app: Flask, world: World, client_for: Clients, colleague_ft: Account, smtp: SmtpSink
) -> None:
    # Given a deposit for the shared inbox of France Travail 62 (two agents), not yet downloaded
    adviser = client_for(world.adviser_ft)
    deposit_id = sent_deposit(client_for(world.agent62), [world.ft62])
    _age(app, deposit_id, expires_in=timedelta(days=6, hours=20))
    smtp.clear()

    # When the reminder job runs, twice
    first = _reminders(app)
    second = _reminders(app)

    # Then both agents of the inbox are reminded once, "7 days before"
    assert first.deposits == {7: 1, 1: 0} and first.mails_sent == 2
    assert first.already_downloaded == 0
    assert second.deposits == {7: 0, 1: 0} and second.mails_sent == 0
    for member in (world.adviser_ft, colleague_ft):
        [mail] = smtp.to(member.email)
        assert _subject(mail) == "Fil'R : un dépôt expire dans 7 jours"
        assert f"https://filr.test/depots/{deposit_id}" in body_of(mail)
    assert reread(app, Deposit, deposit_id).reminded_7_at is not None

    # When one agent downloads it and the job runs again with less than a day left
    assert download(adviser, deposit_id, file_ids(app, deposit_id)[0]).status_code == 200
    smtp.clear()
    later = utcnow() + timedelta(days=6, hours=4)
    last = _reminders(app, later)

    # Then the inbox counts as served: nobody is told it was "not yet downloaded"
    assert last.deposits == {7: 0, 1: 1} and last.mails_sent == 0
    assert last.already_downloaded == 2
    assert smtp.messages == []
    # And the trail holds one reminder row per deposit and window, with counts only
    rows = audit_rows(app, AuditAction.DEPOSIT_REMINDER_SENT)
    assert [r.target_id for r in rows] == [deposit_id, deposit_id]
    assert '"days":7' in rows[0].details and '"sent":2' in rows[0].details
    assert '"already_downloaded":2' in rows[1].details and '"days":1' in rows[1].details


def test_named_recipients_are_reminded_each_until_they_download(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    # Given a deposit for two named agents of the CD 62, one of whom downloaded it
    sender = client_for(world.adviser_ft)
    token = csrf_of(sender, "/depots/nouveau")
    response = sender.post(
        "/depots/nouveau",
        data={
            "csrf_token": token,
            "departement": "62",
            "category": "document",
            "title": "Pour deux personnes",
            "recipient_users": [world.agent62.id, world.agent62b.id],
            "lifetime_days": "30",
        },
    )
    assert response.status_code == 302
    deposit_id = response.headers["Location"].split("/")[2]
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201
    assert publish(sender, deposit_id).status_code == 302
    downloader = client_for(world.agent62)
    assert download(downloader, deposit_id, file_ids(app, deposit_id)[0]).status_code == 200
    _age(app, deposit_id, expires_in=timedelta(days=6, hours=20))
    smtp.clear()

    # When the reminder job runs
    report = _reminders(app)

    # Then only the named agent who has not downloaded is reminded
    assert report.mails_sent == 1 and report.already_downloaded == 1
    assert smtp.to(world.agent62.email) == []
    [mail] = smtp.to(world.agent62b.email)
    assert _subject(mail) == "Fil'R : un dépôt expire dans 7 jours"


def test_a_deposit_first_seen_with_less_than_a_day_left_gets_only_the_1_day_reminder(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    deposit_id = sent_deposit(client_for(world.agent62), [world.ft62])
    _age(app, deposit_id, expires_in=timedelta(hours=10))
    smtp.clear()
    report = _reminders(app)
    assert report.deposits == {7: 0, 1: 1}
    assert [_subject(m) for m in smtp.to(world.adviser_ft.email)] == [
        "Fil'R : un dépôt expire dans 1 jour"
    ]


def test_a_weekly_deposit_gets_no_7_day_reminder_right_after_its_announcement(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    # Given a deposit kept 7 days, just sent (its recipients were told a minute ago)
    deposit_id = sent_deposit(client_for(world.agent62), [world.ft62], lifetime=7)
    smtp.clear()
    # When the reminder job runs now, then on its last day
    assert _reminders(app).mails_sent == 0
    assert _reminders(app, utcnow() + timedelta(days=6, hours=12)).deposits == {7: 0, 1: 1}
    # Then only the 1-day reminder went out
    assert [_subject(m) for m in smtp.to(world.adviser_ft.email)] == [
        "Fil'R : un dépôt expire dans 1 jour"
    ]
    assert reread(app, Deposit, deposit_id).reminded_7_at is None


def test_no_reminder_for_withdrawn_expired_or_draft_deposits(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    # Given a withdrawn, an expired and a draft deposit, all "expiring" within a week
    sender = client_for(world.agent62)
    withdrawn = sent_deposit(sender, [world.ft62])
    token = csrf_of(sender, f"/depots/{withdrawn}")
    assert (
        sender.post(f"/depots/{withdrawn}/retirer", data={"csrf_token": token}).status_code == 302
    )
    expired = sent_deposit(sender, [world.ft62])
    draft = create_deposit(sender, [world.ft62])
    assert upload(sender, draft, "brouillon.pdf", PDF).status_code == 201
    _age(app, withdrawn, expires_in=timedelta(days=3))
    _age(app, expired, expires_in=-timedelta(hours=1))
    _age(app, draft, expires_in=timedelta(hours=12))
    smtp.clear()

    # When the reminder job runs now and a little later
    reports = [_reminders(app), _reminders(app, utcnow() + timedelta(hours=6))]

    # Then no mail is sent and nothing is marked
    assert all(r.deposits == {7: 0, 1: 0} and r.mails_sent == 0 for r in reports)
    assert smtp.messages == []
    for deposit_id in (withdrawn, expired, draft):
        deposit = reread(app, Deposit, deposit_id)
        assert deposit.reminded_7_at is None and deposit.reminded_1_at is None
    assert audit_rows(app, AuditAction.DEPOSIT_REMINDER_SENT) == []


def test_dry_run_reports_but_sends_and_marks_nothing(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    deposit_id = sent_deposit(client_for(world.agent62), [world.ft62])
    _age(app, deposit_id, expires_in=timedelta(days=5))
    smtp.clear()
    report = _reminders(app, dry_run=True)
    assert report.dry_run and report.deposits == {7: 1, 1: 0} and report.mails_sent == 1
    assert smtp.messages == []
    assert reread(app, Deposit, deposit_id).reminded_7_at is None
    assert audit_rows(app, AuditAction.DEPOSIT_REMINDER_SENT) == []
    # And the real run afterwards still sends the reminder
    assert _reminders(app).mails_sent == 1


def test_mail_failures_are_counted_and_do_not_stop_the_job(
    app: Flask, world: World, client_for: Clients, colleague_ft: Account, smtp: SmtpSink
) -> None:
    # Given two deposits due for a reminder, and a relay refusing every agent of France Travail
    for_ft = sent_deposit(client_for(world.agent62), [world.ft62])
    for_cd = sent_deposit(client_for(world.adviser_ft), [world.cd62])
    for deposit_id in (for_ft, for_cd):
        _age(app, deposit_id, expires_in=timedelta(days=4))
    smtp.clear()
    with app.app_context():
        refusing = RefusingMailer(services().mailer, {world.adviser_ft.email, colleague_ft.email})

    # When the job runs
    report = _reminders(app, mailer=refusing)

    # Then the failures are counted and the other deposit's recipients are reminded
    assert report.mails_failed == 2 and report.mails_sent == 2
    assert {m["To"] for m in smtp.messages} == {world.agent62.email, world.agent62b.email}
    failed = [
        r for r in audit_rows(app, AuditAction.DEPOSIT_REMINDER_SENT) if r.target_id == for_ft
    ]
    assert failed[0].outcome == "failure" and '"failed":2' in failed[0].details
    # And the deposit whose reminder reached nobody is tried again by the next run
    assert reread(app, Deposit, for_ft).reminded_7_at is None
    assert reread(app, Deposit, for_cd).reminded_7_at is not None
    again = _reminders(app)
    assert again.deposits == {7: 1, 1: 0} and again.mails_sent == 2


def test_two_servers_running_the_jobs_at_once_send_each_mail_once(
    app: Flask,
    make_app: Callable[..., Flask],
    world: World,
    client_for: Clients,
    smtp: SmtpSink,
) -> None:
    # Given four deposits due for a reminder, a digest subscriber, and a second server
    sender = client_for(world.agent62)
    _choose(client_for(world.adviser_ft), "resume-quotidien")
    due = [sent_deposit(sender, [world.ft62]) for _ in range(4)]
    for deposit_id in due:
        _age(app, deposit_id, expires_in=timedelta(days=3))
    sent_deposit(sender, [world.ft62])
    other = make_app()
    smtp.clear()

    # When both servers run both jobs at the same moment
    barrier = threading.Barrier(2)
    reports: list[tuple[ReminderReport, DigestReport]] = []

    def run(server: Flask) -> None:
        barrier.wait()
        reports.append((_reminders(server), _digests(server)))

    threads = [threading.Thread(target=run, args=(server,)) for server in (app, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then each deposit was reminded once, and one digest was sent
    assert len(reports) == 2
    assert sum(r.deposits[7] for r, _ in reports) == 4
    assert sum(d.mails_sent for _, d in reports) == 1
    subjects = sorted(_subject(m) for m in smtp.to(world.adviser_ft.email))
    assert (
        subjects
        == ["Fil'R : résumé quotidien, 1 nouveau dépôt"]
        + ["Fil'R : un dépôt expire dans 3 jours"] * 4
    )
    assert len(audit_rows(app, AuditAction.DEPOSIT_REMINDER_SENT)) == 4


# --- daily digest ----------------------------------------------------------------------


def test_digest_counts_deposits_by_space_and_category_and_replaces_the_immediate_mails(
    app: Flask, world: World, client_for: Clients, factory: Factory, smtp: SmtpSink
) -> None:
    # Given a France Travail direction covering 59 and 62, one agent on the daily digest and
    # one on immediate mails
    region = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("59", "62"), name="FT Hauts-de-France")
    digest = factory.user(region, (Role.AGENT,), name="Dora Digest")
    immediate = factory.user(region, (Role.AGENT,), name="Eli Immediat")
    _choose(client_for(digest), "resume-quotidien")
    assert reread(app, User, digest.id).daily_digest

    # When the SLAI of 62 sends two documents and a fiche de liaison, the SLAI of 59 one
    # document, and a deposit withdrawn at once
    cd62, cd59 = client_for(world.agent62), client_for(world.agent59)
    for _ in range(2):
        sent_deposit(cd62, [region])
    sent_deposit(cd62, [region], category="fiche_liaison", title="")
    sent_deposit(cd59, [region], departement="59")
    withdrawn = sent_deposit(cd62, [region])
    token = csrf_of(cd62, f"/depots/{withdrawn}")
    assert cd62.post(f"/depots/{withdrawn}/retirer", data={"csrf_token": token}).status_code == 302

    # Then the digest subscriber got no immediate mail, the other agent one per deposit
    assert smtp.to(digest.email) == []
    assert len(smtp.to(immediate.email)) == 5

    # When the digest job runs, twice
    first = _digests(app)
    second = _digests(app)

    # Then one digest counts the four available deposits by space and category
    assert (first.users, first.mails_sent, first.deposits) == (1, 1, 4)
    assert second.mails_sent == 0
    [mail] = smtp.to(digest.email)
    assert _subject(mail) == "Fil'R : résumé quotidien, 4 nouveaux dépôts"
    body = body_of(mail)
    assert "- Espace 59 — Nord, Document : 1" in body
    assert "- Espace 62 — Pas-de-Calais, Document : 2" in body
    assert "- Espace 62 — Pas-de-Calais, Fiche de liaison : 1" in body
    assert "https://filr.test/depots" in body.splitlines()
    assert "https://filr.test/compte/notifications" in body
    # And the immediate-mail agent gets no digest; the mark has moved
    assert len(smtp.to(immediate.email)) == 5
    assert reread(app, User, digest.id).last_digest_at is not None
    [row] = audit_rows(app, AuditAction.DEPOSIT_DIGEST_SENT)
    assert row.target_id == digest.id and '"deposits":4' in row.details


def test_no_digest_is_sent_when_nothing_arrived(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    _choose(client_for(world.adviser_ft), "resume-quotidien")
    report = _digests(app)
    assert (report.users, report.mails_sent) == (0, 0)
    assert smtp.messages == []
    assert audit_rows(app, AuditAction.DEPOSIT_DIGEST_SENT) == []


def test_digest_dry_run_sends_nothing_and_keeps_the_mark(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    _choose(client_for(world.adviser_ft), "resume-quotidien")
    mark = reread(app, User, world.adviser_ft.id).last_digest_at
    sent_deposit(client_for(world.agent62), [world.ft62])
    smtp.clear()
    report = _digests(app, dry_run=True)
    assert report.dry_run and (report.mails_sent, report.deposits) == (1, 1)
    assert smtp.messages == []
    assert reread(app, User, world.adviser_ft.id).last_digest_at == mark
    assert _digests(app).mails_sent == 1


def test_an_undelivered_digest_is_sent_again_by_the_next_run(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    _choose(client_for(world.adviser_ft), "resume-quotidien")
    sent_deposit(client_for(world.agent62), [world.ft62])
    with app.app_context():
        refusing = RefusingMailer(services().mailer, {world.adviser_ft.email})
    failed = _digests(app, mailer=refusing)
    assert (failed.mails_sent, failed.mails_failed) == (0, 1)
    assert smtp.to(world.adviser_ft.email) == []
    again = _digests(app)
    assert (again.mails_sent, again.deposits) == (1, 1)
    assert len(smtp.to(world.adviser_ft.email)) == 1


# --- no personal data ------------------------------------------------------------------


def test_reminders_and_digests_carry_no_personal_data(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    # Given deposits whose title and file name hold a NIR and a name, one due for a
    # reminder, one fresh for the digest of one recipient
    _choose(client_for(world.agent62), "resume-quotidien")
    sender = client_for(world.adviser_ft)
    personal: dict[str, Any] = {
        "files": {f"LEFEBVRE_{NIR}.pdf": PDF},
        "title": NIR_TITLE,
    }
    due = sent_deposit(sender, [world.cd62], **personal)
    _age(app, due, expires_in=timedelta(days=2))
    sent_deposit(sender, [world.cd62], **personal)
    smtp.clear()

    # When both jobs run
    assert _reminders(app).mails_sent == 2
    assert _digests(app).mails_sent == 1

    # Then no mail holds the NIR, the beneficiary's name or the sender's name
    assert len(smtp.raw) == 3
    for raw in smtp.raw:
        text = raw.decode("utf-8", "replace")
        for secret in (NIR, "LEFEBVRE", "Hélène", "H=C3=A9l=C3=A8ne", "Conseil Ler"):
            assert secret not in text


# --- the preference page ---------------------------------------------------------------


def test_preference_page_shows_and_saves_the_choice(
    app: Flask, world: World, client_for: Clients
) -> None:
    client = client_for(world.agent62)
    account = client.get("/compte").get_data(as_text=True)
    assert 'href="/compte/notifications"' in account
    page = client.get("/compte/notifications").get_data(as_text=True)
    assert "Recevoir un e-mail à chaque dépôt" in page and "Un résumé quotidien" in page
    assert 'id="mode-chaque-depot" value="chaque-depot" checked' in page

    _choose(client, "resume-quotidien")
    page = client.get("/compte/notifications").get_data(as_text=True)
    assert "Vos préférences de notification ont été enregistrées." in page
    assert 'id="mode-resume-quotidien" value="resume-quotidien" checked' in page
    user = reread(app, User, world.agent62.id)
    assert user.daily_digest and user.last_digest_at is not None

    _choose(client, "chaque-depot")
    assert not reread(app, User, world.agent62.id).daily_digest


def test_preference_page_refuses_a_post_without_csrf_token_or_choice(
    app: Flask, world: World, client_for: Clients
) -> None:
    client = client_for(world.agent62)
    # Given a logged-in user, When a cross-site form posts without the token
    response = client.post("/compte/notifications", data={"mode": "resume-quotidien"})
    # Then it is refused and nothing changes
    assert response.status_code == 400
    assert not reread(app, User, world.agent62.id).daily_digest
    token = csrf_of(client, "/compte/notifications")
    invalid = client.post("/compte/notifications", data={"csrf_token": token, "mode": "jamais"})
    assert invalid.status_code == 200
    assert "Choisissez une option." in invalid.get_data(as_text=True)
    assert not reread(app, User, world.agent62.id).daily_digest


# --- the commands ----------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, smtp: SmtpSink) -> None:
    """`filr` reads the test app's database, store and SMTP server from the environment."""
    for key, value in {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_BASE_URL": settings.base_url,
        "FILR_STORAGE_URL": settings.storage_url,
        "FILR_MASTER_KEY_FILE": str(settings.master_key_file),
        "FILR_SMTP_HOST": smtp.host,
        "FILR_SMTP_PORT": str(smtp.port),
        "FILR_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "FILR_S3_REGION": settings.s3_region or "",
        "FILR_S3_ACCESS_KEY": settings.s3_access_key or "",
        "FILR_S3_SECRET_KEY": settings.s3_secret_key or "",
    }.items():
        monkeypatch.setenv(key, value)


def _filr(*args: str) -> str:
    from portal.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.usefixtures("cli_env")
def test_reminder_and_digest_commands_exit_0_and_are_idempotent(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    _choose(client_for(world.adviser_ft), "resume-quotidien")
    deposit_id = sent_deposit(client_for(world.agent62), [world.ft62])
    sent_deposit(client_for(world.agent62), [world.ft62])
    _age(app, deposit_id, expires_in=timedelta(days=5))
    smtp.clear()

    assert _filr("jobs", "reminders", "--dry-run").startswith("[essai] Rappels : 1 dépôts à 7")
    assert smtp.messages == []
    assert "1 dépôts à 7 jours, 0 à 1 jour, 1 e-mails envoyés" in _filr("jobs", "reminders")
    assert "0 dépôts à 7 jours, 0 à 1 jour, 0 e-mails envoyés" in _filr("jobs", "reminders")

    assert _filr("jobs", "digest", "--dry-run").startswith("[essai] Résumés quotidiens : 1 e-mail")
    assert "1 e-mails envoyés (1 dépôts)" in _filr("jobs", "digest")
    assert "0 e-mails envoyés (0 dépôts)" in _filr("jobs", "digest")

    subjects = [_subject(m) for m in smtp.to(world.adviser_ft.email)]
    assert subjects == [
        "Fil'R : un dépôt expire dans 5 jours",
        "Fil'R : résumé quotidien, 1 nouveau dépôt",
    ]
    jobs = [r.details for r in audit_rows(app, AuditAction.JOB_RUN)]
    assert sum('"job":"reminders"' in d for d in jobs) == 2
    assert sum('"job":"digest"' in d for d in jobs) == 2
