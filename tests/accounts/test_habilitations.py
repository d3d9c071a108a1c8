"""Habilitations: recorded by the account manager, shown, audited; the end date suspends.

The job is driven with a frozen clock (`now` given to the service, `--as-of` for the command).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import date, timedelta
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction
from portal.accounts import habilitations
from portal.accounts.habilitations import (
    HabilitationError,
    HabilitationInput,
    HabilitationReport,
    enforce_habilitation_ends,
    morning_of,
)
from portal.accounts.models import Habilitation, Role, User
from portal.auth.models import ServerSession
from portal.container import services
from portal.db import db, utcnow
from portal.deposits.antivirus import Antivirus
from portal.filecheck.pdf_content import check_pdf
from portal.orgs.models import OrgKind
from portal.securite.models import AlertKind, SecurityAlert
from portal.settings import Settings
from tests.conftest import audit_rows, csrf_of, reread
from tests.factories import Account, Factory
from tests.support.clamd import EICAR, EICAR_SIGNATURE
from tests.support.pdf import make_pdf
from tests.support.services import SmtpSink, body_of

GRANTED = date(2027, 1, 4)
ENDS = date(2027, 6, 30)


def _subject(mail: Message) -> str:
    return str(make_header(decode_header(mail["Subject"])))


def _habilitate(
    app: Flask, account: Account, ends_on: date | None = ENDS, granted_on: date = GRANTED
) -> None:
    with app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        habilitations.set_habilitation(
            db.session,
            user,
            HabilitationInput("instructeur_rsa", None, granted_on, ends_on),
            granted_by=None,
            actor=audit.SYSTEM,
            ctx=audit.NO_CONTEXT,
            today=granted_on,
        )
        db.session.commit()


def _run(app: Flask, day: date) -> HabilitationReport:
    with app.app_context():
        return enforce_habilitation_ends(db.session, services(), morning_of(day), audit.NO_CONTEXT)


@pytest.fixture
def team(factory: Factory) -> tuple[Account, Account, Account]:
    """An agent of CD 62, its account manager, and the manager of CD 59."""
    cd62 = factory.org(name="CD 62")
    cd59 = factory.org(departement="59", name="CD 59")
    agent = factory.user(cd62, (Role.AGENT,), email="agent@cd62.example.org", name="Alice Agent")
    manager = factory.user(cd62, (Role.GESTIONNAIRE,), email="rgc@cd62.example.org")
    other = factory.user(cd59, (Role.GESTIONNAIRE,), email="rgc@cd59.example.org")
    return agent, manager, other


# --- recorded, shown, audited ------------------------------------------------------------------


def test_manager_records_a_habilitation_with_an_other_function_shown_and_audited(
    app: Flask, client: FlaskClient, team: tuple[Account, Account, Account], login_as
) -> None:
    agent, manager, _ = team
    login_as(manager)
    page = f"/gestion/comptes/{agent.id}/habilitation"
    # When the manager records "autre" with a label and an end date
    response = client.post(
        page,
        data={
            "csrf_token": csrf_of(client, page),
            "function": "autre",
            "function_label": "Chargée de mission insertion",
            "granted_on": "2026-11-02",
            "ends_on": "2027-11-01",
        },
    )
    assert response.status_code == 302
    # Then the account page shows it, with who granted it
    html = client.get(f"/gestion/comptes/{agent.id}").get_data(as_text=True)
    assert "Chargée de mission insertion" in html and "01/11/2027" in html
    hab = reread(app, Habilitation, agent.id)
    assert hab.granted_by_id == manager.id and hab.ends_on == date(2027, 11, 1)
    # And the trail holds the change by the manager, with the function's code, not its label
    (row,) = audit_rows(app, AuditAction.ACCOUNT_HABILITATION_UPDATED)
    assert row.actor_id == manager.id and row.target_id == agent.id
    assert row.target_departement == "62"
    assert '"autre"' in row.details and "Chargée" not in row.details


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ends_on": "2029-11-03"}, "au plus 3 ans"),
        ({"function": "autre"}, "Précisez la fonction"),
        ({"function": "directeur_agence"}, "Fonction inconnue"),  # France Travail's, not a CD's
        ({"granted_on": "2099-01-01"}, "dans le futur"),
    ],
)
def test_a_habilitation_out_of_the_rules_is_refused_in_french(
    app: Flask,
    client: FlaskClient,
    team: tuple[Account, Account, Account],
    login_as,
    fields: dict[str, str],
    message: str,
) -> None:
    agent, manager, _ = team
    login_as(manager)
    page = f"/gestion/comptes/{agent.id}/habilitation"
    data = {"function": "instructeur_rsa", "granted_on": "2026-11-02", **fields}
    response = client.post(page, data={"csrf_token": csrf_of(client, page), **data})
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(Habilitation, agent.id) is None
    assert audit_rows(app, AuditAction.ACCOUNT_HABILITATION_UPDATED) == []


def test_the_end_date_may_be_three_years_after_the_grant_but_not_one_day_more() -> None:
    today = date(2026, 12, 7)
    ok = HabilitationInput("conseiller", None, date(2026, 12, 1), date(2029, 12, 1))
    assert habilitations.check(OrgKind.FRANCE_TRAVAIL, ok, today).ends_on == date(2029, 12, 1)
    late = HabilitationInput("conseiller", None, date(2026, 12, 1), date(2029, 12, 3))
    with pytest.raises(HabilitationError):
        habilitations.check(OrgKind.FRANCE_TRAVAIL, late, today)


def test_a_manager_of_another_organisation_gets_404_on_the_habilitation_page(
    app: Flask, client: FlaskClient, team: tuple[Account, Account, Account], login_as
) -> None:
    # Given the account manager of CD 59
    agent, _, other = team
    login_as(other)
    page = f"/gestion/comptes/{agent.id}/habilitation"
    # When it asks for, or posts, the habilitation of an agent of CD 62
    assert client.get(page).status_code == 404
    token = csrf_of(client, "/gestion/comptes")
    posted = client.post(
        page, data={"csrf_token": token, "function": "autre", "function_label": "Pirate"}
    )
    # Then the same 404 as for an unknown account, and nothing changes
    assert posted.status_code == 404
    assert client.get("/gestion/comptes/" + "0" * 32 + "/habilitation").status_code == 404
    with app.app_context():
        assert db.session.get(Habilitation, agent.id) is None


def test_the_person_sees_its_own_habilitation_on_my_account(
    app: Flask, client: FlaskClient, team: tuple[Account, Account, Account], login_as
) -> None:
    agent, _, _ = team
    _habilitate(app, agent)
    login_as(agent)
    html = client.get("/compte").get_data(as_text=True)
    assert "Instructeur RSA (SLAI)" in html and "30/06/2027" in html


# --- the end date, across the year ------------------------------------------------------------


def test_notices_14_and_1_days_before_then_suspension_on_the_day(
    app: Flask, team: tuple[Account, Account, Account], smtp: SmtpSink
) -> None:
    # Given an agent habilitated until 30 June, with an open session
    agent, manager, other = team
    _habilitate(app, agent)
    with app.app_context():
        now = morning_of(GRANTED)
        db.session.add(
            ServerSession(id="s" * 64, user_id=agent.id, created_at=now, last_seen_at=now)
        )
        db.session.commit()
    # When the daily job runs every day from January to July
    day, reports = GRANTED, {}
    while day <= date(2027, 7, 15):
        reports[day] = _run(app, day)
        day += timedelta(days=1)
    # Then a notice 14 days before (16 June), one the day before (29 June), to the person and
    # the manager of its organisation (never the manager of another), and nothing else
    noticed = {d: r.notices for d, r in reports.items() if any(r.notices.values())}
    assert noticed == {date(2027, 6, 16): {14: 1, 1: 0}, date(2027, 6, 29): {14: 0, 1: 1}}
    assert [_subject(m) for m in smtp.to(agent.email)][:2] == [
        "Fil'R : une habilitation prend fin dans 14 jours",
        "Fil'R : une habilitation prend fin demain",
    ]
    assert len(smtp.to(manager.email)) == 3 and smtp.to(other.email) == []
    assert "Alice Agent" in body_of(smtp.to(manager.email)[0])
    # And the account is suspended on 30 June, not before, once; its session ended at once
    suspended = [d for d, r in reports.items() if r.suspended]
    assert suspended == [date(2027, 6, 30)]
    user = reread(app, User, agent.id)
    assert user.status == "suspended" and user.suspension_reason == "habilitation_end"
    with app.app_context():
        assert db.session.get(ServerSession, "s" * 64) is None
    (row,) = audit_rows(app, AuditAction.ACCOUNT_SUSPENDED)
    assert row.target_id == agent.id and '"habilitation_end"' in row.details
    assert len(audit_rows(app, AuditAction.ACCOUNT_NOTICE_SENT)) == 2
    assert "suspendu à la fin de son habilitation" in body_of(smtp.to(manager.email)[-1])


def test_a_new_end_date_rearms_the_notices_and_a_late_run_sends_only_the_nearest(
    app: Flask, team: tuple[Account, Account, Account], smtp: SmtpSink
) -> None:
    agent, _, _ = team
    _habilitate(app, agent)
    assert _run(app, date(2027, 6, 20)).notices == {14: 1, 1: 0}
    # Given the end date moved to 31 December after the 14-day notice
    _habilitate(app, agent, ends_on=date(2027, 12, 31), granted_on=date(2027, 6, 21))
    # When the job first runs again on the day before the new end (it missed the 14-day one)
    assert _run(app, date(2027, 6, 30)).suspended == 0
    late = _run(app, date(2027, 12, 30))
    # Then only the 1-day notice goes
    assert late.notices == {14: 0, 1: 1}
    assert _run(app, date(2027, 12, 31)).suspended == 1


def test_reactivation_is_refused_while_the_habilitation_has_ended(
    app: Flask, client: FlaskClient, team: tuple[Account, Account, Account], login_as
) -> None:
    agent, manager, _ = team
    _habilitate(app, agent, ends_on=date(2026, 12, 6), granted_on=date(2026, 1, 5))
    assert _run(app, date(2026, 12, 7)).suspended == 1
    login_as(manager)
    token = csrf_of(client, f"/gestion/comptes/{agent.id}")
    response = client.post(
        f"/gestion/comptes/{agent.id}/reactiver", data={"csrf_token": token}, follow_redirects=True
    )
    assert "prolongez-la avant de réactiver" in response.get_data(as_text=True)
    assert reread(app, User, agent.id).status == "suspended"


def test_two_servers_running_the_job_at_once_send_one_set_of_notices_and_suspend_once(
    app: Flask,
    make_app: Callable[..., Flask],
    factory: Factory,
    team: tuple[Account, Account, Account],
    smtp: SmtpSink,
) -> None:
    # Given three agents at 14 days and three at their end date, and a second server
    agent, manager, _ = team
    ending = [agent] + [factory.user(agent.org_id) for _ in range(2)]
    noticed = [factory.user(agent.org_id) for _ in range(3)]
    for account in ending:
        _habilitate(app, account, ends_on=date(2027, 6, 16))
    for account in noticed:
        _habilitate(app, account, ends_on=date(2027, 6, 30))
    other = make_app()
    smtp.clear()
    # When both run the job on 16 June at the same moment
    barrier = threading.Barrier(2)
    reports: list[HabilitationReport] = []

    def run(server: Flask) -> None:
        barrier.wait()
        reports.append(_run(server, date(2027, 6, 16)))

    threads = [threading.Thread(target=run, args=(server,)) for server in (app, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Then each notice went once and each account was suspended once, with one audit row each
    assert len(reports) == 2
    assert sum(r.notices[14] for r in reports) == 3
    assert sum(r.suspended for r in reports) == 3
    assert len(audit_rows(app, AuditAction.ACCOUNT_NOTICE_SENT)) == 3
    assert len(audit_rows(app, AuditAction.ACCOUNT_SUSPENDED)) == 3
    assert len(smtp.to(manager.email)) == 6  # 3 notices + 3 suspensions
    with app.app_context():
        statuses = db.session.execute(
            sa.select(User.status).where(User.id.in_([a.id for a in ending]))
        ).scalars()
        assert set(statuses) == {"suspended"}


# --- the signed form ------------------------------------------------------------------------

# A real PDF (it is parsed for active content before it is stored), naming its signatory.
PDF = make_pdf([b"<< /Title (formulaire d'habilitation signe par Alice Agent) >>"])


def test_the_signed_form_is_stored_encrypted_and_given_back_to_the_manager_only(
    app: Flask,
    client: FlaskClient,
    team: tuple[Account, Account, Account],
    settings: Settings,
    login_as,
) -> None:
    agent, manager, other = team
    _habilitate(app, agent)
    login_as(manager)
    page = f"/gestion/comptes/{agent.id}"

    def upload(content: bytes) -> str:
        token = csrf_of(client, page)
        response = client.post(
            f"{page}/habilitation/formulaire",
            data=content,
            headers={"X-CSRFToken": token, "Content-Type": "application/pdf"},
        )
        if response.status_code != 201:
            return str(response.json["error"])  # type: ignore[index]
        return client.get(page).get_data(as_text=True)

    # A file that is not a PDF is refused
    assert "doit être un fichier PDF" in upload(b"MZ\x90\x00 not a pdf")
    # When the manager uploads the signed PDF
    assert "est enregistré (chiffré)" in upload(PDF)
    first = reread(app, Habilitation, agent.id).form_object_key
    assert first is not None and first.startswith("habilitations/")
    # Then nothing in the object store holds it in clear
    objects = Path(settings.storage_url.removeprefix("file://"))
    stored = [p.read_bytes() for p in objects.rglob("*") if p.is_file()]
    assert stored and all(b"Alice Agent" not in blob and b"%PDF" not in blob for blob in stored)
    # And the manager gets it back, audited
    download = client.get(f"{page}/habilitation/formulaire.pdf")
    assert download.status_code == 200 and download.data == PDF
    assert download.mimetype == "application/pdf"
    assert len(audit_rows(app, AuditAction.ACCOUNT_HABILITATION_FORM_DOWNLOADED)) == 1
    # And a new form replaces the old one, whose key is destroyed
    upload(PDF.replace(b"1.7", b"1.6"))
    with app.app_context():
        store = services().store
        assert not store.exists(first)
        assert store.exists(reread(app, Habilitation, agent.id).form_object_key or "")
    # And a post without the CSRF token stores nothing
    forged = client.post(f"{page}/habilitation/formulaire", data=PDF)
    assert forged.status_code == 400
    # And the manager of another organisation (or the person) gets 404
    for outsider in (other, agent):
        login_as(outsider)
        assert client.get(f"{page}/habilitation/formulaire.pdf").status_code == 404


def test_a_form_with_active_content_or_a_virus_or_unscanned_is_not_stored(
    app: Flask,
    make_app: Callable[..., Flask],
    team: tuple[Account, Account, Account],
    settings: Settings,
) -> None:
    from tests.conftest import https, login, reset_totp_step

    agent, manager, _ = team
    _habilitate(app, agent)
    page = f"/gestion/comptes/{agent.id}"

    def upload(on: Flask, content: bytes) -> tuple[int, str]:
        client = https(on.test_client())
        reset_totp_step(app, manager)
        assert login(client, manager).status_code == 302
        token = csrf_of(client, page)
        response = client.post(
            f"{page}/habilitation/formulaire",
            data=content,
            headers={"X-CSRFToken": token, "Content-Type": "application/pdf"},
        )
        return response.status_code, str((response.json or {}).get("error"))

    # A form that runs JavaScript, or that reaches out when closed, is refused
    scripted = make_pdf(catalog_extra=b" /OpenAction << /S /JavaScript /JS (app.alert(1)) >>")
    assert upload(app, scripted) == (422, check_pdf(scripted).message_fr)  # type: ignore[union-attr]
    # A form clamd finds a signature in (the real clamd) is refused, and raises the alert of
    # an infected deposit, audited with the signature and never the person's name
    status, error = upload(app, make_pdf([b"<< /Subject (" + EICAR + b") >>"]))
    assert status == 422 and "l'antivirus y a détecté" in error
    [refused] = audit_rows(app, AuditAction.ACCOUNT_HABILITATION_FORM_INFECTED)
    assert refused.target_id == agent.id and refused.actor_id == manager.id
    assert json.loads(refused.details)["signature"] == EICAR_SIGNATURE
    with app.app_context():
        [alert] = db.session.execute(
            sa.select(SecurityAlert).where(SecurityAlert.kind == AlertKind.MALWARE_DETECTED)
        ).scalars()
        assert (alert.subject_type, alert.subject_id) == ("user", agent.id)
        assert json.loads(alert.details)["signature"] == EICAR_SIGNATURE
        user = db.session.get(User, agent.id)
        assert user is not None and user.full_name not in alert.details + refused.details
    # While clamd is down, nothing is stored (fail closed) unless the bypass is on
    down = make_app(clamd_url=f"unix://{settings.data_dir}/no-clamd.sock")
    status, error = upload(down, PDF)
    assert status == 422 and "antivirus est indisponible" in error
    assert reread(app, Habilitation, agent.id).form_object_key is None
    bypassing = make_app(
        clamd_url=f"unix://{settings.data_dir}/no-clamd.sock", antivirus_bypass=True
    )
    assert upload(bypassing, PDF)[0] == 201
    assert reread(app, Habilitation, agent.id).form_object_key is not None


def test_a_replacement_that_loses_a_race_or_an_orphan_form_leaves_no_object(
    app: Flask, team: tuple[Account, Account, Account]
) -> None:
    from datetime import timedelta as td

    from sqlalchemy.orm import Session

    from portal.deposits.purge import cleanup_orphans

    agent, manager, _ = team
    _habilitate(app, agent)
    with app.app_context():
        svc = services()
        store = svc.store
        options = {"antivirus": Antivirus.of(svc), "ctx": audit.NO_CONTEXT}
        engine = db.bound(app).engine
        db.session.commit()
        stale = {"expire_on_commit": False}  # what each request read stays as it read it
        with Session(engine, **stale) as first, Session(engine, **stale) as second:
            # Given two managers' requests that both read the account without a form
            users = []
            for s in (first, second):
                user = s.get(User, agent.id)
                assert user is not None and user.habilitation is not None
                assert user.habilitation.form_object_key is None and user.organisation.name
                users.append(user)
                s.commit()
            by = audit.Actor(manager.id, manager.org_id)
            # When both store a form, one after the other
            habilitations.store_form(first, store, users[0], PDF, actor=by, now=utcnow(),
                                     **options)  # type: ignore[arg-type]  # fmt: skip
            with pytest.raises(habilitations.HabilitationError):
                habilitations.store_form(second, store, users[1], PDF, actor=by, now=utcnow(),
                                         **options)  # type: ignore[arg-type]  # fmt: skip
        # Then only the winner's object is stored
        kept = reread(app, Habilitation, agent.id).form_object_key
        assert list(store.inner.list("habilitations/")) == [kept]
        # And an object no habilitation references (a failure after its upload) is removed
        # by the orphan cleanup, the referenced form kept
        store.put("habilitations/" + "0" * 32, [PDF], departement="62")
        assert cleanup_orphans(db.session, store, older_than=td(0)) == 1
        assert list(store.inner.list("habilitations/")) == [kept]
