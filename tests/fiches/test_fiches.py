"""A bilatérale fiche from France Travail to the SLAI of 62, on the web and through the API:
validation, sending, isolation (404 for every route of a 62 fiche outside it), forwarding to a
mandated provider, the decision, and nothing of the person in clear outside the page."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from audit.models import AuditEvent
from portal.container import services
from portal.db import db
from portal.fiches.models import Fiche
from tests.api.conftest import assert_problem
from tests.conftest import csrf_of, reread
from tests.factories import Account, Api
from tests.fiches.conftest import (
    CAF,
    NOM,
    PRENOM,
    FicheWorld,
    bilaterale_values,
    post_form,
    web_data,
)
from tests.support.services import SmtpSink

Clients = Callable[[Account], FlaskClient]
NEW = "/fiches/nouvelle/liaison-bilaterale?espace=62"
ECO = "Aucune information d&#39;ordre économique et financière ne doit être communiquée."


def _send_on_the_web(client: FlaskClient, fw: FicheWorld) -> str:
    response = post_form(client, NEW, {"destinataire": fw.cd62, **web_data(bilaterale_values(fw))})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    fiche_id = response.headers["Location"].split("/")[2]
    page = client.get(f"/fiches/{fiche_id}").get_data(as_text=True)
    assert 'id="send"' in page and "Brouillon" in page
    token = csrf_of(client, f"/fiches/{fiche_id}")
    response = client.post(f"/fiches/{fiche_id}/envoyer", data={"csrf_token": token})
    assert response.status_code == 302
    return fiche_id


def test_the_form_validates_every_field_and_says_where(
    app: Flask, fw: FicheWorld, client_for: Clients
) -> None:
    adviser = client_for(fw.adviser)
    page = adviser.get(NEW).get_data(as_text=True)
    assert ECO in page
    # Blocks as sections with anchors, no free-text area anywhere.
    assert 'href="#bloc-identification"' in page and "<textarea" not in page
    wrong = web_data(bilaterale_values(fw, identifiant_caf="12AB", consentement_numerique=False))
    del wrong["attestation_signee"]
    response = post_form(adviser, NEW, {"destinataire": fw.cd62, **wrong})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="error-summary"' in html
    assert '<a href="#champ-identifiant_caf">' in html
    assert "Le numéro allocataire CAF compte 7 chiffres." in html
    assert '<a href="#champ-email">' in html  # e-mail without the consent
    # The draft was kept without the fields in error; sending it is refused until complete.
    with app.app_context():
        fiche = db.session.execute(sa.select(Fiche)).scalar_one()
        fiche_id = fiche.id
    show = adviser.get(f"/fiches/{fiche_id}").get_data(as_text=True)
    assert 'id="incomplete"' in show and 'id="send"' not in show
    token = csrf_of(adviser, f"/fiches/{fiche_id}")
    adviser.post(f"/fiches/{fiche_id}/envoyer", data={"csrf_token": token})
    assert reread(app, Fiche, fiche_id).state == "draft"


def test_a_bilaterale_fiche_from_sending_to_decision(
    app: Flask, fw: FicheWorld, client_for: Clients, smtp: SmtpSink
) -> None:
    adviser = client_for(fw.adviser)
    fiche_id = _send_on_the_web(adviser, fw)
    fiche = reread(app, Fiche, fiche_id)
    assert fiche.state == "sent" and fiche.due_at is not None
    assert (fiche.due_at - fiche.sent_at).days == 21  # type: ignore[operator]
    # The SLAI is told, without anything of the person.
    [mail] = [m for m in smtp.messages if fw.slai62.email in m["To"]]
    assert NOM not in mail.as_string() and CAF not in mail.as_string()
    # The SLAI sees it in its inbox (name and birth date), opens it: "reçue".
    slai = client_for(fw.slai62)
    inbox = slai.get("/fiches").get_data(as_text=True)
    assert NOM.upper() in inbox and "12/04/1990" in inbox
    found = post_form(slai, "/fiches", {"nom": NOM.lower()}).get_data(as_text=True)
    assert found.count(fiche_id) == 1
    page = slai.get(f"/fiches/{fiche_id}").get_data(as_text=True)
    assert CAF in page and "Logement" not in page  # choice labels, not values
    assert "Faire face à des difficultés de logement" in page
    assert ECO in page
    assert reread(app, Fiche, fiche_id).state == "received"
    # Forwarded to the provider the département mandates; another provider sees nothing.
    token = csrf_of(slai, f"/fiches/{fiche_id}")
    forwarded = slai.post(
        f"/fiches/{fiche_id}/transmettre",
        data={"csrf_token": token, "transmission-provider": fw.provider62},
    )
    assert forwarded.status_code == 302
    referent = client_for(fw.referent62)
    assert referent.get(f"/fiches/{fiche_id}").status_code == 200
    assert fiche_id in referent.get("/fiches").get_data(as_text=True)
    # The decision: OUI, the prescriber is told and sees "Acceptée".
    smtp.clear()
    token = csrf_of(slai, f"/fiches/{fiche_id}")
    decided = slai.post(
        f"/fiches/{fiche_id}/decision",
        data={
            "csrf_token": token,
            "decision-entree_accompagnement": "oui",
            "decision-date_decision": "08/12/2026",
        },
    )
    assert decided.status_code == 302
    assert reread(app, Fiche, fiche_id).state == "accepted"
    [told] = [m for m in smtp.messages if fw.adviser.email in m["To"]]
    assert NOM not in told.as_string()
    page = adviser.get(f"/fiches/{fiche_id}").get_data(as_text=True)
    assert "Acceptée" in page and "Transmise à Asso Insertion 62" in page
    # Every look at the fiche is in the trail, without its values.
    with app.app_context():
        rows = db.session.execute(
            sa.select(AuditEvent.action, AuditEvent.details).where(AuditEvent.target_id == fiche_id)
        ).all()
    actions = [r.action for r in rows]
    assert actions.count("fiche:viewed") >= 4
    assert {"fiche:sent", "fiche:forwarded", "fiche:decided"} <= set(actions)
    assert NOM not in str(rows) and CAF not in str(rows)


def test_outside_the_fiche_every_route_answers_404(
    app: Flask, fw: FicheWorld, client_for: Clients, api_for: Callable[..., Api]
) -> None:
    adviser = client_for(fw.adviser)
    fiche_id = _send_on_the_web(adviser, fw)
    routes = [
        ("get", f"/fiches/{fiche_id}"),
        ("get", f"/fiches/{fiche_id}/modifier"),
        ("post", f"/fiches/{fiche_id}/modifier"),
        ("post", f"/fiches/{fiche_id}/envoyer"),
        ("post", f"/fiches/{fiche_id}/decision"),
        ("post", f"/fiches/{fiche_id}/transmettre"),
        ("post", f"/fiches/{fiche_id}/corriger"),
    ]
    unknown = "0" * 32
    for account in (fw.referent59, fw.slai59, fw.other_referent62):
        client = client_for(account)
        token = csrf_of(client, "/fiches")
        for method, path in routes:
            for target in (path, path.replace(fiche_id, unknown)):
                response = getattr(client, method)(target, data={"csrf_token": token})
                assert response.status_code == 404, (account.email, method, target)
        assert fiche_id not in client.get("/fiches").get_data(as_text=True)
        api = api_for(account)
        assert_problem(api.get(f"/api/v1/fiches/{fiche_id}"), 404, "not_found")
        listed = api.get("/api/v1/fiches?box=received").get_json()
        assert all(item["id"] != fiche_id for item in listed["items"])


def test_the_api_takes_the_same_data_and_says_which_field_is_wrong(
    app: Flask, fw: FicheWorld, api_for: Callable[..., Api], smtp: SmtpSink
) -> None:
    api = api_for(fw.adviser)
    body = {
        "form": "liaison-bilaterale",
        "departement": "62",
        "recipient": fw.cd62,
        "values": bilaterale_values(fw, identifiant_caf="12", commentaire="texte libre"),
    }
    refused = assert_problem(api.post("/api/v1/fiches", json=body), 422, "invalid")
    assert {e["field"]: e["detail"] for e in refused["errors"]} == {
        "identifiant_caf": "Le numéro allocataire CAF compte 7 chiffres.",
        "commentaire": "Ce champ n'existe pas dans ce formulaire.",
    }
    with app.app_context():
        assert db.session.execute(sa.select(sa.func.count()).select_from(Fiche)).scalar() == 0
    body["values"] = bilaterale_values(fw)
    created = api.post("/api/v1/fiches", json=body)
    assert created.status_code == 201, created.get_json()
    fiche = created.get_json()
    assert fiche["state"] == "sent" and fiche["form"] == "liaison-bilaterale@1"
    slai = api_for(fw.slai62)
    [item] = slai.get("/api/v1/fiches?box=received").get_json()["items"]
    assert item["id"] == fiche["id"] and item["person"] == f"{NOM.upper()} {PRENOM}"
    detail = slai.get(f"/api/v1/fiches/{fiche['id']}").get_json()
    assert detail["values"]["identifiant_caf"] == CAF and detail["state"] == "received"
    # A recipient outside the form's kinds, or outside the space, is refused.
    body["recipient"] = fw.provider62
    refused = assert_problem(api.post("/api/v1/fiches", json=body), 422, "invalid")
    assert refused["errors"][0]["field"] == "recipient"


def test_a_form_defined_only_in_a_data_file_works_end_to_end(
    make_app: Callable[..., Flask], fw: FicheWorld, api_for: Callable[..., Api]
) -> None:
    data = Path(__file__).parent / "data"
    app = make_app(fiches_catalogue_dirs=(data,))
    from tests.api.conftest import bare_client, make_token

    api = Api(bare_client(app), make_token(app, fw.adviser))
    doc = api.get("/api/v1/openapi.json").get_json()
    assert "FicheValues_essai_fiche_rose_v1" in doc["components"]["schemas"]
    body = {
        "form": "essai-fiche-rose",
        "departement": "62",
        "recipient": fw.cd62,
        "values": {
            "personne": {"nom": NOM, "prenom": PRENOM},
            "naissance": "1990-04-12",
            "caf": CAF,
            "couleur": "vif",
        },
    }
    created = api.post("/api/v1/fiches", json=body)
    assert created.status_code == 201, created.get_json()
    slai = Api(bare_client(app), make_token(app, fw.slai62))
    detail = slai.get(f"/api/v1/fiches/{created.get_json()['id']}").get_json()
    assert detail["form_name"] == "Fiche rose (essai)" and detail["values"]["couleur"] == "vif"
    # Not enabled in 59.
    body["departement"] = "59"
    assert api.post("/api/v1/fiches", json=body).status_code == 422


def test_nothing_of_the_person_in_clear_in_the_database_the_store_the_logs_or_the_mails(
    app: Flask,
    fw: FicheWorld,
    client_for: Clients,
    smtp: SmtpSink,
    backend: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    adviser = client_for(fw.adviser)
    fiche_id = _send_on_the_web(adviser, fw)
    client_for(fw.slai62).get(f"/fiches/{fiche_id}")
    secrets = [NOM.encode(), NOM.upper().encode(), CAF.encode(), b"zoe.zebre"]
    # The logs and the mails
    assert NOM not in caplog.text and CAF not in caplog.text
    for raw in smtp.raw:
        assert not any(s in raw for s in secrets)
    # The database: every text column of every table (a dump, read through the driver).
    with app.app_context():
        engine = db.engine
        inspector = sa.inspect(engine)
        with engine.connect() as conn:
            for table in inspector.get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608
                    text = repr(tuple(row)).encode()
                    assert not any(s in text for s in secrets), table
    if backend == "sqlite":
        database_file = Path(str(engine.url.database))
        content = database_file.read_bytes()
        wal = database_file.with_name(database_file.name + "-wal")
        if wal.exists():
            content += wal.read_bytes()
        assert not any(s in content for s in secrets)
    # The object store (a directory, or S3 on SeaweedFS): every object, as stored.
    with app.app_context():
        inner = services().store.inner
        keys = list(inner.list(""))
        assert any(k.startswith("fiches/") for k in keys)
        for key in keys:
            raw = b"".join(inner.get(key))
            assert not any(s in raw for s in secrets), key
    assert re.search(r"[0-9a-f]{32}", fiche_id)


def test_the_sql_twin_agrees_with_the_predicate(
    app: Flask, fw: FicheWorld, api_for: Callable[..., Api], client_for: Clients
) -> None:
    from portal.accounts.models import User
    from portal.fiches.permissions import can_see_fiche, visible_fiches

    api = api_for(fw.adviser)
    body = {"form": "liaison-bilaterale", "departement": "62", "recipient": fw.cd62}
    sent = api.post("/api/v1/fiches", json={**body, "values": bilaterale_values(fw)})
    assert sent.status_code == 201
    forwarded = api.post("/api/v1/fiches", json={**body, "values": bilaterale_values(fw)})
    forwarded_id = forwarded.get_json()["id"]
    slai = client_for(fw.slai62)
    token = csrf_of(slai, f"/fiches/{forwarded_id}")
    slai.post(
        f"/fiches/{forwarded_id}/transmettre",
        data={"csrf_token": token, "transmission-provider": fw.provider62},
    )
    post_form(client_for(fw.adviser), NEW, {"destinataire": fw.cd62})  # a draft
    accounts = [
        fw.adviser, fw.slai62, fw.slai59, fw.referent62, fw.other_referent62, fw.referent59,
    ]  # fmt: skip
    with app.app_context():
        all_fiches = list(db.session.execute(sa.select(Fiche)).scalars())
        assert len(all_fiches) == 3
        for account in accounts:
            user = db.session.get(User, account.id)
            assert user is not None
            by_sql = set(
                db.session.execute(sa.select(Fiche.id).where(visible_fiches(user))).scalars()
            )
            by_predicate = {f.id for f in all_fiches if can_see_fiche(user, f)}
            assert by_sql == by_predicate, account.email
        seen = {
            a.email: len(
                db.session.execute(
                    sa.select(Fiche.id).where(visible_fiches(db.session.get(User, a.id)))  # type: ignore[arg-type]
                ).all()
            )
            for a in accounts
        }
    assert seen == {
        fw.adviser.email: 3,
        fw.slai62.email: 2,
        fw.slai59.email: 0,
        fw.referent62.email: 1,
        fw.other_referent62.email: 0,
        fw.referent59.email: 0,
    }
