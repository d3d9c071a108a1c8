"""The 21 days of a bilatérale fiche (reminders at D-7 and D-2, "sans réponse" on both sides),
its correction by a new fiche, and its destruction after 90 days."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

import audit
from portal.accounts.models import User
from portal.container import services
from portal.db import db
from portal.fiches import services as fiches
from portal.fiches.models import Fiche
from portal.settings import Settings
from tests.cli.conftest import cli_environment
from tests.conftest import csrf_of, reread
from tests.factories import Account
from tests.fiches.conftest import NOM, FicheWorld, bilaterale_values
from tests.support.services import SmtpSink

Clients = Callable[[Account], FlaskClient]


@pytest.fixture
def backend() -> str:
    """The life cycle is the services' own: the embedded stack is enough."""
    return "sqlite"


def _sent(app: Flask, fw: FicheWorld) -> str:
    with app.app_context():
        user = db.session.get(User, fw.adviser.id)
        assert user is not None
        draft = fiches.Draft("liaison-bilaterale@1", "62", fw.cd62, bilaterale_values(fw))
        return fiches.submit(db.session, services(), user, draft, audit.NO_CONTEXT).id


def test_reminders_at_d7_and_d2_then_overdue_on_both_sides(
    app: Flask, fw: FicheWorld, smtp: SmtpSink, client_for: Clients
) -> None:
    fiche_id = _sent(app, fw)
    sent_at = reread(app, Fiche, fiche_id).sent_at
    assert sent_at is not None
    smtp.clear()
    with app.app_context():
        svc = services()
        assert fiches.send_reminders(db.session, svc, sent_at + timedelta(days=10)) == {
            "j7": 0,
            "j2": 0,
        }
        assert fiches.send_reminders(db.session, svc, sent_at + timedelta(days=15)) == {
            "j7": 1,
            "j2": 0,
        }
        # Once only
        assert fiches.send_reminders(db.session, svc, sent_at + timedelta(days=16))["j7"] == 0
        assert fiches.send_reminders(db.session, svc, sent_at + timedelta(days=19)) == {
            "j7": 0,
            "j2": 1,
        }
    reminders = [m for m in smtp.messages if fw.slai62.email in m["To"]]
    assert len(reminders) == 2
    assert all(NOM not in m.as_string() for m in reminders)
    # Past the 21 days: "sans réponse", listed as overdue for both sides.
    with app.app_context():
        db.session.execute(
            sa.update(Fiche).where(Fiche.id == fiche_id).values(due_at=sent_at - timedelta(days=1))
        )
        db.session.commit()
    for account in (fw.adviser, fw.slai62):
        page = client_for(account).get("/fiches?boite=en-retard").get_data(as_text=True)
        assert fiche_id in page and "Sans réponse" in page
        assert 'id="lien-suivi"' in page
        follow_up = client_for(account).get("/fiches/suivi").get_data(as_text=True)
        assert 'id="suivi"' in follow_up
        with app.app_context():
            user = db.session.get(User, account.id)
            assert user is not None
            [month] = fiches.monthly_counts(db.session, user)
            assert (month.sent, month.accepted, month.waiting, month.overdue) == (1, 0, 0, 1)
    assert fiche_id not in client_for(fw.slai59).get("/fiches?boite=en-retard").get_data(
        as_text=True
    )


def test_the_reminder_job_runs_from_the_command_line(
    app: Flask, fw: FicheWorld, settings: Settings
) -> None:
    from portal.cli import main

    env = cli_environment(settings)
    result = CliRunner().invoke(main, ["jobs", "fiches-rappels", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert "Rappels de fiches de liaison : 0 à 7 jours, 0 à 2 jours" in result.output


def test_a_correction_replaces_the_sent_fiche_once_sent(
    app: Flask, fw: FicheWorld, client_for: Clients
) -> None:
    fiche_id = _sent(app, fw)
    adviser = client_for(fw.adviser)
    # A sent fiche cannot be edited.
    assert adviser.get(f"/fiches/{fiche_id}/modifier").status_code == 404
    token = csrf_of(adviser, f"/fiches/{fiche_id}")
    response = adviser.post(f"/fiches/{fiche_id}/corriger", data={"csrf_token": token})
    assert response.status_code == 302
    new_id = response.headers["Location"].split("/")[2]
    assert new_id != fiche_id
    assert reread(app, Fiche, new_id).replaces_id == fiche_id
    token = csrf_of(adviser, f"/fiches/{new_id}")
    assert adviser.post(f"/fiches/{new_id}/envoyer", data={"csrf_token": token}).status_code == 302
    old = reread(app, Fiche, fiche_id)
    assert old.state == "withdrawn" and old.replaced_by_id == new_id
    assert "Retirée" in client_for(fw.slai62).get(f"/fiches/{fiche_id}").get_data(as_text=True)


def test_the_purge_destroys_a_fiche_after_90_days(app: Flask, fw: FicheWorld) -> None:
    fiche_id = _sent(app, fw)
    fiche = reread(app, Fiche, fiche_id)
    key = fiche.values_key
    assert key is not None and fiche.person_sealed is not None
    with app.app_context():
        svc = services()
        assert fiches.purge(db.session, svc, fiche.sent_at + timedelta(days=89)) == 0  # type: ignore[operator]
        assert fiches.purge(db.session, svc, fiche.sent_at + timedelta(days=90)) == 1  # type: ignore[operator]
        assert not svc.store.exists(key)
    gone = reread(app, Fiche, fiche_id)
    assert gone.state == "destroyed" and gone.values_key is None
    assert gone.person_sealed is None and gone.person_index is None


def test_the_read_only_body_is_printable_and_in_the_forms_order(app: Flask, fw: FicheWorld) -> None:
    from portal.fiches.display import render

    form = services_form(app)
    values = {
        **bilaterale_values(fw),
        "entree_accompagnement": "oui",
        "date_decision": "2026-12-08",
    }
    with app.test_request_context():
        html = app.jinja_env.get_template("fiches/_body.html").render(
            fiche_form=form,
            fiche_blocks=render(form, values, {fw.cd62: "CD 62"}),
            fiche_reference="f" * 32,
        )
    assert "<script" not in html and "style=" not in html
    positions = [html.index(f'id="bloc-{b.id}-titre"') for b in form.blocks]
    assert positions == sorted(positions)
    assert "<dl" in html and "<h3" in html
    for text in (
        "Aucune information d&#39;ordre économique et financière ne doit être communiquée.",
        "CNIL",
        "12/04/1990",
        "Accéder à un moyen de transport",
        "OUI",
        "CD 62",
        "f" * 32,
    ):
        assert text in html, text


def services_form(app: Flask):  # type: ignore[no-untyped-def]
    with app.app_context():
        form = services().catalogue.latest("liaison-bilaterale")
    assert form is not None
    return form


def test_a_pdf_attached_to_a_draft_is_checked_encrypted_and_sent_with_the_fiche(
    app: Flask, fw: FicheWorld, client_for: Clients
) -> None:
    from tests.fiches.conftest import post_form, web_data
    from tests.support.clamd import FILR_SIGNATURE, FILR_TEST_STRING
    from tests.support.pdf import make_pdf

    adviser = client_for(fw.adviser)
    response = post_form(
        adviser,
        "/fiches/nouvelle/liaison-bilaterale?espace=62",
        {"destinataire": fw.cd62, **web_data(bilaterale_values(fw))},
    )
    fiche_id = response.headers["Location"].split("/")[2]
    page = adviser.get(f"/fiches/{fiche_id}").get_data(as_text=True)
    assert 'id="piece-attestation_scan"' in page and "fiches.js" in page
    token = csrf_of(adviser, f"/fiches/{fiche_id}")

    def attach(content: bytes, field: str = "attestation_scan") -> tuple[int, str]:
        answer = adviser.post(
            f"/fiches/{fiche_id}/pieces/{field}",
            data=content,
            headers={"X-CSRFToken": token, "Content-Type": "application/pdf"},
        )
        return answer.status_code, (answer.get_json() or {}).get("error", "")

    assert attach(b"not a pdf") == (
        422,
        "La pièce jointe doit être un fichier PDF de 10 Mo au plus.",
    )
    status, error = attach(make_pdf([b"<< >>"], streams={4: FILR_TEST_STRING}))
    assert status == 422 and FILR_SIGNATURE in error
    assert attach(make_pdf(), field="demandeur")[0] == 422  # not an attachment field
    pdf = make_pdf(padding=100)
    assert attach(pdf) == (201, "")
    assert attach(pdf) == (201, "")  # replaces the first (destroyed)
    with app.app_context():
        pieces = fiches.attachments_of(db.session, fiche_id)
        assert [p.object_key is not None for p in pieces] == [False, True]
        raw = b"".join(services().store.inner.get(pieces[1].object_key or ""))
        assert pdf not in raw  # encrypted
    token = csrf_of(adviser, f"/fiches/{fiche_id}")
    assert (
        adviser.post(f"/fiches/{fiche_id}/envoyer", data={"csrf_token": token}).status_code == 302
    )
    slai = client_for(fw.slai62)
    page = slai.get(f"/fiches/{fiche_id}").get_data(as_text=True)
    link = page.split('id="pieces-jointes"')[1].split('href="')[1].split('"')[0]
    downloaded = slai.get(link)
    assert downloaded.status_code == 200 and downloaded.data == pdf
    assert client_for(fw.slai59).get(link).status_code == 404
    assert client_for(fw.referent59).get(link).status_code == 404
    # A sent fiche takes no more attachment.
    assert attach(pdf)[0] == 422
    # The purge destroys the attachment with the fiche.
    with app.app_context():
        key = fiches.attachments_of(db.session, fiche_id)[1].object_key
        fiche = db.session.get(Fiche, fiche_id)
        assert fiche is not None and fiche.sent_at is not None and key is not None
        fiches.purge(db.session, services(), fiche.sent_at + timedelta(days=91))
        assert not services().store.exists(key)
