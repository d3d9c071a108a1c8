"""Deposits through the REST API, end to end, on both stacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from audit import AuditAction
from portal.container import services
from portal.db import db
from portal.deposits.models import Deposit, DepositFile, DownloadReceipt
from tests.api.conftest import (
    PDF,
    assert_problem,
    bare_client,
    make_token,
    new_deposit,
    sent_deposit,
)
from tests.conftest import audit_rows
from tests.deposits.conftest import sha256
from tests.factories import Api, World
from tests.support.services import SmtpSink, body_of

Apis = Callable[..., Api]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4000


def test_a_deposit_travels_through_the_api_with_receipts(
    app: Flask, world: World, api_for: Apis, smtp: SmtpSink
) -> None:
    sender, recipient = api_for(world.adviser_ft), api_for(world.agent62)
    # The sender finds whom it may address in the space of 62
    orgs = sender.get("/api/v1/organisations?departement=62")
    assert orgs.status_code == 200
    org_ids = {o["id"] for o in orgs.json["items"]}  # type: ignore[index]
    assert world.cd62 in org_ids and world.provider62 not in org_ids  # never FT -> provider
    # Creates a draft, uploads two files, publishes it
    created = sender.post(
        "/api/v1/deposits",
        json={
            "departement": "62",
            "category": "document",
            "title": "Documents semaine 47",
            "recipients": [world.cd62],
            "lifetime_days": 7,
        },
    )
    assert created.status_code == 201
    deposit_id = created.json["id"]  # type: ignore[index]
    assert created.headers["Location"] == f"/api/v1/deposits/{deposit_id}"
    assert created.json["status"] == "draft"  # type: ignore[index]
    uploads = [sender.upload(deposit_id, n, c) for n, c in (("fiche.pdf", PDF), ("scan.png", PNG))]
    assert [u.status_code for u in uploads] == [201, 201]
    assert [u.json["sha256"] for u in uploads] == [sha256(PDF), sha256(PNG)]  # type: ignore[index]
    published = sender.post(f"/api/v1/deposits/{deposit_id}/publish")
    assert published.status_code == 200 and published.json["status"] == "available"  # type: ignore[index]
    # The recipient's mail has a link and no personal data
    mail = body_of(smtp.last_to(world.agent62.email))
    assert f"https://filr.test/depots/{deposit_id}" in mail and "Documents semaine 47" not in mail
    # The recipient lists its inbox and finds it
    inbox = recipient.get("/api/v1/deposits?box=received")
    assert inbox.status_code == 200
    assert [d["id"] for d in inbox.json["items"]] == [deposit_id]  # type: ignore[index]
    shown = recipient.get(f"/api/v1/deposits/{deposit_id}").json
    assert shown is not None and shown["receipts"] is None  # the receipts are the sender's
    # And downloads both files, byte for byte, with the web's headers
    got = [recipient.get(f["content_url"]) for f in shown["files"]]
    assert [r.status_code for r in got] == [200, 200]
    assert {sha256(r.data) for r in got} == {sha256(PDF), sha256(PNG)}
    for r in got:
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["Content-Security-Policy"] == "sandbox"
    # (a script never gets a cookie)
    assert all("Set-Cookie" not in r.headers for r in [created, *uploads, published, inbox, *got])
    # The sender sees the acknowledgement of receipt
    receipts = sender.get(f"/api/v1/deposits/{deposit_id}").json["receipts"]  # type: ignore[index]
    assert len(receipts) == 2
    assert {r["user"]["name"] for r in receipts} == {"Agnès Soixantedeux"}
    # And the trail has the same events as a web download: links issued, files downloaded
    assert len(audit_rows(app, AuditAction.DEPOSIT_LINK_ISSUED)) == 2
    assert len(audit_rows(app, AuditAction.DEPOSIT_DOWNLOADED)) == 2


def test_the_list_pages_with_a_keyset_cursor_and_filters(world: World, api_for: Apis) -> None:
    sender = api_for(world.agent62)
    drafts = [new_deposit(sender, [world.ft62], title=f"Brouillon {n}") for n in range(3)]
    first = sender.get("/api/v1/deposits?box=sent&status=draft&limit=2").json
    assert first is not None and len(first["items"]) == 2 and first["next"]
    second = sender.get(first["next_url"]).json
    assert second is not None and len(second["items"]) == 1 and second["next"] is None
    seen = [d["id"] for d in first["items"] + second["items"]]
    assert sorted(seen) == sorted(drafts)
    by_title = sender.get("/api/v1/deposits?sort=title&q=brouillon").json
    assert by_title is not None
    assert [d["title"] for d in by_title["items"]] == [f"Brouillon {n}" for n in range(3)]
    assert sender.get("/api/v1/deposits?box=received").json["items"] == []  # type: ignore[index]


def test_list_parameters_are_checked_not_ignored(world: World, api_for: Apis) -> None:
    sender = api_for(world.agent62)
    response = sender.get("/api/v1/deposits?box=inbox&limit=0&stauts=draft&after=garbage")
    body = assert_problem(response, 422, "invalid")
    assert {e["parameter"] for e in body["errors"]} == {"box", "limit", "stauts", "after"}


def test_validation_errors_are_422_with_the_french_message(world: World, api_for: Apis) -> None:
    sender = api_for(world.adviser_ft)
    base = {"departement": "62", "category": "document", "title": "t", "recipients": [world.cd62]}
    too_long = sender.post("/api/v1/deposits", json={**base, "lifetime_days": 91})
    body = assert_problem(too_long, 422, "invalid")
    assert body["detail"] == "La durée de conservation doit être comprise entre 1 et 90 jours."
    provider = sender.post("/api/v1/deposits", json={**base, "recipients": [world.provider62]})
    assert assert_problem(provider, 422, "invalid")["detail"] == (
        "Destinataire non autorisé pour cet espace."
    )
    wrong = sender.post(
        "/api/v1/deposits",
        json={"departement": 62, "category": "tract", "recipients": "x", "colour": "red"},
    )
    errors = assert_problem(wrong, 422, "invalid")["errors"]
    # (no "#/title": a title is required of a document only, and "tract" is no category)
    assert {e["pointer"] for e in errors} == {
        "#/departement", "#/category", "#/recipients", "#/colour"
    }  # fmt: skip
    not_json = sender.post("/api/v1/deposits", data="title=t", content_type="text/plain")
    assert_problem(not_json, 400, "invalid_json")
    assert audit_rows(sender.client.application, AuditAction.DEPOSIT_CREATED) == []


def test_a_refused_file_is_422_and_nothing_is_attached(
    app: Flask, world: World, api_for: Apis
) -> None:
    sender = api_for(world.agent62)
    deposit_id = new_deposit(sender, [world.ft62])
    html = sender.upload(deposit_id, "page.html", b"<html><script>alert(1)</script></html>")
    assert_problem(html, 422, "file_refused")
    nameless = sender.post(f"/api/v1/deposits/{deposit_id}/files", data=PDF)
    assert_problem(nameless, 422, "invalid")
    assert_problem(sender.post(f"/api/v1/deposits/{deposit_id}/publish"), 422, "invalid")
    with app.app_context():
        assert db.session.execute(sa.select(DepositFile)).first() is None
        db.session.commit()
        assert list(services().store.inner.list("deposits/")) == []


def test_an_upload_over_the_limit_is_413(
    make_app: Callable[..., Flask], world: World, app: Flask
) -> None:
    small = make_app(max_upload_bytes=64 * 1024)
    sender = Api(bare_client(small), make_token(app, world.agent62))
    deposit_id = new_deposit(sender, [world.ft62])
    assert_problem(
        sender.upload(deposit_id, "gros.pdf", PDF + b"0" * 128 * 1024), 413, "file_too_large"
    )
    with small.app_context():
        assert db.session.execute(sa.select(DepositFile)).first() is None


def test_withdrawal_through_the_api_destroys_the_content(
    app: Flask, world: World, api_for: Apis
) -> None:
    sender, recipient = api_for(world.agent62), api_for(world.adviser_ft)
    deposit_id = sent_deposit(sender, [world.ft62])
    content_url = recipient.get(f"/api/v1/deposits/{deposit_id}").json["files"][0]["content_url"]  # type: ignore[index]
    # The recipient may not withdraw it
    refused = recipient.post(f"/api/v1/deposits/{deposit_id}/withdraw")
    assert (
        assert_problem(refused, 422, "invalid")["detail"] == "Vous ne pouvez pas retirer ce dépôt."
    )
    # The sender does: the content is destroyed at once
    withdrawn = sender.post(f"/api/v1/deposits/{deposit_id}/withdraw")
    assert withdrawn.status_code == 200
    assert withdrawn.json["status"] == "destroyed"  # type: ignore[index]
    assert all(f["destroyed"] for f in withdrawn.json["files"])  # type: ignore[index]
    # And the recipient's download is gone
    assert_problem(recipient.get(content_url), 410, "link_refused")
    assert audit_rows(app, AuditAction.DEPOSIT_WITHDRAWN)
    assert audit_rows(app, AuditAction.DEPOSIT_DESTROYED)


def test_user_of_59_gets_404_through_the_api_and_the_store_is_not_asked(
    app: Flask, world: World, api_for: Apis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = api_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.ft62])
    file_id = sender.get(f"/api/v1/deposits/{deposit_id}").json["files"][0]["id"]  # type: ignore[index]
    draft_id = new_deposit(sender, [world.ft62])
    # Given a script of 59 with every scope, and a store that raises if anybody touches it
    intruder = api_for(world.agent59)
    with app.app_context():
        store = services().store

    def forbidden(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the store was asked")

    for name in ("put", "open", "get", "delete", "shred", "stat", "exists"):
        monkeypatch.setattr(store, name, forbidden)
    unknown = assert_problem(intruder.get(f"/api/v1/deposits/{'0' * 32}"), 404, "not_found")
    # When it tries every route and verb on the deposit and the draft of 62
    attempts: list[tuple[str, str, dict[str, Any]]] = []
    upload = {"X-Filename": "x.pdf"}
    for target in (deposit_id, draft_id):
        attempts += [
            ("get", f"/api/v1/deposits/{target}", {}),
            ("post", f"/api/v1/deposits/{target}/publish", {}),
            ("post", f"/api/v1/deposits/{target}/withdraw", {}),
            ("post", f"/api/v1/deposits/{target}/files", {"data": PDF, "headers": upload}),
        ]
    attempts.append(("get", f"/api/v1/deposits/{deposit_id}/files/{file_id}/content", {}))
    # Then each answer is the same 404 as for an unknown id
    for method, path, kwargs in attempts:
        body = assert_problem(getattr(intruder, method)(path, **kwargs), 404, "not_found")
        assert (body["title"], body["detail"]) == (unknown["title"], unknown["detail"]), path
    # And the lists do not show them; asking for the space of 62 is a 404 too
    for box in ("all", "received", "sent"):
        listed = intruder.get(f"/api/v1/deposits?box={box}").json
        assert listed is not None and listed["items"] == []
    assert_problem(intruder.get("/api/v1/deposits?departement=62"), 404, "not_found")
    assert_problem(intruder.get("/api/v1/organisations?departement=62"), 404, "not_found")
    # And every attempt on a deposit is in the trail as a refused access
    denied = [r for r in audit_rows(app, AuditAction.ACCESS_DENIED) if r.target_id != "0" * 32]
    assert len(denied) == len(attempts) and all(r.actor_id == world.agent59.id for r in denied)
    # And nothing changed for the parties
    monkeypatch.undo()
    with app.app_context():
        deposit = db.session.get(Deposit, deposit_id)
        assert deposit is not None and deposit.status == "available" and len(deposit.files) == 1
        assert db.session.execute(sa.select(DownloadReceipt)).first() is None
    assert api_for(world.adviser_ft).get(f"/api/v1/deposits/{deposit_id}").status_code == 200
