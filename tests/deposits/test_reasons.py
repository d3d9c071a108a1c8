"""Deposits without free text (issue 15, item 7): a reason from a closed list instead of the
message, titles dated by the portal for fiches de liaison and weekly experimentation files, and
the weekly files' own category with its short life (7 days by default, and at most)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.container import services
from portal.db import db, new_id, utcnow
from portal.deposits.models import (
    REASON_LABELS,
    Category,
    Deposit,
    DepositStatus,
    Reason,
)
from portal.deposits.permissions import categories_of
from portal.deposits.purge import purge_expired_deposits
from portal.settings import Settings, SettingsError
from tests.api.conftest import assert_problem, make_token
from tests.conftest import csrf_of, https
from tests.deposits.conftest import create_deposit, download, file_ids, sent_deposit
from tests.factories import Account, Api, World
from tests.support.services import SmtpSink, body_of

Clients = Callable[[Account], FlaskClient]
NIR = "2850762123456"


def _deposit(app: Flask, deposit_id: str) -> Deposit:
    with app.app_context():
        deposit = db.session.get(Deposit, deposit_id)
        assert deposit is not None
        db.session.expunge(deposit)
        return deposit


def _post_new(client: FlaskClient, **fields: object) -> tuple[int, str]:
    data = {
        "csrf_token": csrf_of(client, "/depots/nouveau"),
        "departement": "62",
        "category": "document",
        "title": "",
        "reason": "",
        "lifetime_days": "",
        **fields,
    }
    response = client.post("/depots/nouveau", data=data)
    return response.status_code, response.get_data(as_text=True)


def _api(app: Flask, account: Account) -> Api:
    client = app.test_client(use_cookies=False)
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    return Api(https(client), make_token(app, account))


# --- the web form -----------------------------------------------------------------------------


def test_the_form_offers_reasons_and_no_message_and_the_page_and_mail_show_the_reason(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    sender, recipient = client_for(world.adviser_ft), client_for(world.agent62)
    # Given the new deposit form
    form = sender.get("/depots/nouveau").get_data(as_text=True)
    # Then it has no free-text message, a closed list of reasons, and says what the title is for
    assert "<textarea" not in form and 'name="message"' not in form
    for reason, label in REASON_LABELS.items():
        assert f'value="{reason}"' in form and label.replace("'", "&#39;") in form
    assert "aucune donnée personnelle" in form and "Pas de message libre" in form
    # When a document is sent with a reason
    smtp.clear()
    deposit_id = sent_deposit(
        sender, [world.cd62], title="Tableau de suivi — novembre", reason="complement_demande"
    )
    # Then the reason is kept, and the page and the mail name it
    assert _deposit(app, deposit_id).reason == Reason.COMPLEMENT_DEMANDE
    page = recipient.get(f"/depots/{deposit_id}").get_data(as_text=True)
    assert re.search(r"<dt>Motif</dt><dd[^>]*>Complément demandé</dd>", page)
    assert "Motif : Complément demandé" in body_of(smtp.last_to(world.agent62.email))
    # And a "message" posted by an old page is stored nowhere (there is no column for it)
    status, _ = _post_new(sender, title="T", message=f"Mme LEFEBVRE {NIR}", recipients=[world.cd62])
    assert status == 302 and not hasattr(Deposit, "message")
    with app.app_context():
        rows = db.session.execute(sa.select(Deposit.__table__)).all()
        assert rows and NIR not in repr(rows)
    # And an unknown reason is refused next to the field
    status, page = _post_new(sender, title="T", reason="parce-que", recipients=[world.cd62])
    assert status == 200 and 'id="reason-error"' in page


def test_fiches_and_weekly_files_get_a_dated_title_and_refuse_a_typed_one(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender = client_for(world.agent62)
    # When a fiche de liaison and a weekly file are sent with no title
    fiche = create_deposit(sender, [world.ft62], category="fiche_liaison", title="")
    weekly = create_deposit(
        sender, [world.ft62], category="hebdo_experimentation", title="", lifetime=None
    )
    # Then the portal titled them with their category and date
    dated = r" du \d\d/\d\d/\d{4} à \d\d:\d\d"
    assert re.fullmatch("Fiche de liaison" + dated, _deposit(app, fiche).title)
    assert re.fullmatch(
        "Fichier hebdomadaire d'expérimentation" + dated, _deposit(app, weekly).title
    )
    # And a typed title is refused for them, next to the title field, nothing created
    with app.app_context():
        before = db.session.execute(sa.select(sa.func.count()).select_from(Deposit)).scalar()
    status, page = _post_new(
        sender, category="fiche_liaison", title=f"LEFEBVRE {NIR}", recipients=[world.ft62]
    )
    assert status == 200 and 'id="title-error"' in page and "Pas de titre libre" in page
    # While a document still needs its title
    status, page = _post_new(sender, recipients=[world.ft62])
    assert status == 200 and 'id="title-error"' in page and "Le titre est obligatoire" in page
    with app.app_context():
        after = db.session.execute(sa.select(sa.func.count()).select_from(Deposit)).scalar()
    assert after == before


def test_weekly_experimentation_files_live_seven_days_and_no_longer_and_are_purged(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    # Given a weekly experimentation file sent with the default life, and a document
    weekly = sent_deposit(
        sender, [world.ft62], category="hebdo_experimentation", title="", lifetime=None
    )
    document = sent_deposit(sender, [world.ft62], lifetime=None)
    # Then the weekly file lives 7 days, the document 90 (each category's default)
    for deposit_id, days in ((weekly, 7), (document, 90)):
        deposit = _deposit(app, deposit_id)
        assert deposit.expires_at - deposit.created_at == timedelta(days=days)
    # And a longer life is refused for a weekly file, next to the field
    status, page = _post_new(
        sender,
        category="hebdo_experimentation",
        lifetime_days="8",
        recipients=[world.ft62],
    )
    assert status == 200 and 'id="lifetime_days-error"' in page
    assert "7 jours au plus" in page
    # And the recipients see and filter the new category
    listed = recipient.get("/depots?categorie=hebdo_experimentation").get_data(as_text=True)
    assert "Fichier hebdomadaire d&#39;expérimentation du" in listed
    assert download(recipient, weekly, file_ids(app, weekly)[0]).status_code == 200
    # When the purge runs on the eighth day
    with app.app_context():
        report = purge_expired_deposits(
            db.session, services().store, now=utcnow() + timedelta(days=7, minutes=1)
        )
        assert report.expired == 1
    # Then the weekly file is destroyed, the document untouched
    assert _deposit(app, weekly).status == DepositStatus.DESTROYED
    assert _deposit(app, document).status == DepositStatus.AVAILABLE


def test_the_weekly_category_is_for_agents_only(world: World, app: Flask) -> None:
    from portal.accounts.models import User

    with app.app_context():
        agent = db.session.get(User, world.agent62.id)
        technician = db.session.get(User, world.technicien_ft.id)
        assert agent is not None and technician is not None
        assert Category.HEBDO_EXPERIMENTATION in categories_of(agent)
        assert Category.HEBDO_EXPERIMENTATION not in categories_of(technician)


# --- the API ----------------------------------------------------------------------------------


def test_the_api_refuses_a_message_and_takes_a_reason(app: Flask, world: World) -> None:
    api = _api(app, world.adviser_ft)
    base = {"departement": "62", "category": "document", "title": "T", "recipients": [world.cd62]}
    # A message is refused, pointing at it and naming what replaced it
    refused = api.post("/api/v1/deposits", json={**base, "message": f"Mme LEFEBVRE {NIR}"})
    body = assert_problem(refused, 422, "invalid")
    assert body["errors"] == [{"pointer": "#/message", "detail": body["detail"]}]
    assert "message libre n'existe plus" in body["detail"] and "reason" in body["detail"]
    assert NIR not in refused.get_data(as_text=True)
    # An unknown reason too
    unknown = api.post("/api/v1/deposits", json={**base, "reason": "urgent"})
    assert assert_problem(unknown, 422, "invalid")["errors"][0]["pointer"] == "#/reason"
    # An empty message (an older client) and a known reason are taken
    created = api.post(
        "/api/v1/deposits", json={**base, "message": "", "reason": "pour_information"}
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    shown = created.get_json()
    assert shown["reason"] == "pour_information"
    assert shown["reason_label"] == "Pour information"
    assert "message" not in shown


def test_the_api_dates_titles_and_bounds_the_weekly_life(app: Flask, world: World) -> None:
    api = _api(app, world.agent62)
    base = {"departement": "62", "recipients": [world.ft62]}
    # A fiche de liaison with a title: refused, pointing at the title
    titled = api.post(
        "/api/v1/deposits", json={**base, "category": "fiche_liaison", "title": "LEFEBVRE"}
    )
    problem = assert_problem(titled, 422, "invalid")
    assert problem["errors"][0]["pointer"] == "#/title"
    # A document without one: refused the same way
    untitled = api.post("/api/v1/deposits", json={**base, "category": "document"})
    assert assert_problem(untitled, 422, "invalid")["errors"][0]["pointer"] == "#/title"
    # A weekly file beyond 7 days: refused, pointing at the life
    long = api.post(
        "/api/v1/deposits",
        json={**base, "category": "hebdo_experimentation", "lifetime_days": 30},
    )
    assert assert_problem(long, 422, "invalid")["errors"][0]["pointer"] == "#/lifetime_days"
    # A weekly file with no title nor life: dated, 7 days
    weekly = api.post("/api/v1/deposits", json={**base, "category": "hebdo_experimentation"})
    assert weekly.status_code == 201, weekly.get_data(as_text=True)
    shown = weekly.get_json()
    assert shown["title"].startswith("Fichier hebdomadaire d'expérimentation du ")
    assert shown["category_label"] == "Fichier hebdomadaire d'expérimentation"
    deposit = _deposit(app, shown["id"])
    assert deposit.expires_at - deposit.created_at == timedelta(days=7)


def test_the_openapi_document_lists_the_reasons_and_the_new_category(
    app: Flask, world: World
) -> None:
    document = _api(app, world.agent62).get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert schemas["Reason"]["enum"] == [str(r) for r in Reason]
    assert "hebdo_experimentation" in schemas["Category"]["enum"]
    new = schemas["NewDeposit"]
    assert new["required"] == ["departement", "category", "recipients"]
    assert new["properties"]["message"]["deprecated"] is True
    assert new["properties"]["message"]["maxLength"] == 0


# --- the setting --------------------------------------------------------------------------------


def test_the_weekly_life_is_a_setting_between_1_and_90_days(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FILR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FILR_SECRET_KEY", "k" * 40)
    assert Settings.from_env().weekly_file_lifetime_days == 7
    monkeypatch.setenv("FILR_WEEKLY_FILE_LIFETIME_DAYS", "3")
    assert Settings.from_env().weekly_file_lifetime_days == 3
    monkeypatch.setenv("FILR_WEEKLY_FILE_LIFETIME_DAYS", "91")
    with pytest.raises(SettingsError, match="WEEKLY_FILE_LIFETIME_DAYS"):
        Settings.from_env()


# --- migration 0017 -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def database_at_0015(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database migrated up to the revision before the reasons."""
    from portal.migrate import upgrade
    from tests.support.services import postgres_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
        upgrade(url, "0015")
        yield url
        return
    request.applymarker(pytest.mark.postgres)
    with postgres_database("filr_migr") as url:
        upgrade(url, "0015")
        yield url


# Dates bound through SQLAlchemy's type, never sqlite3's default adapter (deprecated in 3.12).
STAMP = sa.bindparam("now", type_=sa.DateTime())


def test_migration_0017_erases_the_messages_and_its_way_back_keeps_weekly_files(
    database_at_0015: str,
) -> None:
    from portal.migrate import downgrade, upgrade

    # Given a deposit whose message names a beneficiary
    now = utcnow().replace(tzinfo=None)
    ids = {name: new_id() for name in ("deposit", "org", "user")}
    engine = sa.create_engine(database_at_0015)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO organisation (id, kind, name, created_at) "
                "VALUES (:id, 'plateforme', 'Plateforme', :now)"
            ).bindparams(STAMP),
            {"id": ids["org"], "now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO user_account (id, organisation_id, email, full_name, status, "
                "created_at) VALUES (:id, :org, 'a@example.org', 'A', 'pending', :now)"
            ).bindparams(STAMP),
            {"id": ids["user"], "org": ids["org"], "now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO deposit (id, departement_code, category, title, title_sort, "
                "message, sender_id, sender_org_id, status, created_at, expires_at) VALUES "
                "(:id, '62', 'document', 'T', 't', :message, :user, :org, 'available', :now, "
                ":later)"
            ).bindparams(STAMP, sa.bindparam("later", type_=sa.DateTime())),
            {"id": ids["deposit"], "message": f"Mme LEFEBVRE {NIR}", "user": ids["user"],
             "org": ids["org"], "now": now, "later": now + timedelta(days=1)},
        )  # fmt: skip
    # When 0017 runs
    upgrade(database_at_0015, "0017")
    # Then the message is gone with its column, and a reason and the new category are allowed
    with engine.begin() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("deposit")}
        assert "message" not in columns and "reason" in columns
        assert NIR not in repr(conn.execute(sa.text("SELECT * FROM deposit")).all())
        conn.execute(
            sa.text("UPDATE deposit SET category = 'hebdo_experimentation', reason = 'correction'")
        )
    # And a reason off the list is refused by the database itself
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE deposit SET reason = 'Mme LEFEBVRE'"))
    # When it is undone, the weekly file becomes a document and the message stays empty
    downgrade(database_at_0015, "0015")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT category, message FROM deposit")).one()
    engine.dispose()
    assert (row.category, row.message) == ("document", None)
