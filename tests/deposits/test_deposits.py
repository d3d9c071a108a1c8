"""Deposits end to end through the HTTP surface, on both stacks."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.container import services
from portal.db import db
from portal.deposits.models import Deposit, DepositFile, DownloadReceipt
from tests.conftest import audit_rows, csrf_of
from tests.deposits.conftest import (
    PDF,
    create_deposit,
    download,
    file_ids,
    publish,
    sent_deposit,
    sha256,
    upload,
)
from tests.factories import Account, World
from tests.support.services import SmtpSink, body_of

Clients = Callable[[Account], FlaskClient]


def test_deposit_travels_from_sender_to_recipient_with_receipt(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    sender, recipient = client_for(world.adviser_ft), client_for(world.agent62)
    scan = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4000
    deposit_id = sent_deposit(sender, [world.cd62], files={"fiche.pdf": PDF, "scan.png": scan})
    # The recipient sees it in the inbox of its organisation
    inbox = recipient.get("/depots").get_data(as_text=True)
    assert "Documents semaine 47" in inbox
    # And downloads both files, byte for byte
    ids = file_ids(app, deposit_id)
    got = [download(recipient, deposit_id, fid) for fid in ids]
    assert [r.status_code for r in got] == [200, 200]
    assert {sha256(r.data) for r in got} == {sha256(PDF), sha256(scan)}
    for r in got:
        assert r.headers["Content-Disposition"].startswith("attachment;")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["Content-Security-Policy"] == "sandbox"
    # The sender sees the acknowledgement of receipt
    page = sender.get(f"/depots/{deposit_id}").get_data(as_text=True)
    assert "Agnès Soixantedeux" in page and "scan.png" in page
    # The recipient organisation's agent got an e-mail with a link and no personal data
    mail = body_of(smtp.last_to(world.agent62.email))
    assert f"https://filr.test/depots/{deposit_id}" in mail
    assert "Documents semaine 47" not in mail


def test_ids_are_random_not_sequential(world: World, client_for: Clients) -> None:
    sender = client_for(world.agent62)
    ids = [create_deposit(sender, [world.ft62]) for _ in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len({int(i, 16) - int(ids[0], 16) for i in ids}) == 3
    assert sorted(ids) != ids or sorted(ids, reverse=True) != ids or len(set(ids)) == 3


def test_user_of_59_gets_404_everywhere_on_a_deposit_of_62_and_the_store_is_not_asked(
    app: Flask, world: World, client_for: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.ft62])
    file_id = file_ids(app, deposit_id)[0]
    draft_id = create_deposit(sender, [world.ft62])
    intruder = client_for(world.agent59)
    # Given the store raises if anybody touches it
    with app.app_context():
        store = services().store

    def forbidden(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the store was asked")

    for name in ("put", "open", "get", "delete", "shred", "stat", "exists"):
        monkeypatch.setattr(store, name, forbidden)
    token = csrf_of(intruder, "/")
    attempts = [
        ("get", f"/depots/{deposit_id}", None),
        ("post", f"/depots/{deposit_id}/fichiers/{file_id}/lien", {"csrf_token": token}),
        ("post", f"/depots/{deposit_id}/retirer", {"csrf_token": token}),
        ("post", f"/depots/{deposit_id}/prendre-en-charge", {"csrf_token": token}),
        ("post", f"/depots/{deposit_id}/envoyer", {"csrf_token": token}),
        ("get", f"/depots/{draft_id}/fichiers", None),
        ("post", f"/depots/{draft_id}/envoyer", {"csrf_token": token}),
    ]
    for method, path, data in attempts:
        response = getattr(intruder, method)(path, data=data)
        assert response.status_code == 404, (method, path, response.status_code)
    upload_attempt = intruder.post(
        f"/depots/{draft_id}/fichiers",
        data=PDF,
        headers={
            "X-CSRFToken": token,
            "X-Filename": "x.pdf",
            "Content-Type": "application/octet-stream",
        },
    )
    assert upload_attempt.status_code == 404
    # The lists do not show it either
    for box in ("recus", "envoyes", "tous"):
        assert deposit_id not in intruder.get(f"/depots?boite={box}").get_data(as_text=True)
    # And each attempt is in the audit trail as a refused access
    denied = audit_rows(app, AuditAction.ACCESS_DENIED)
    assert len(denied) >= len(attempts) and all(r.actor_id == world.agent59.id for r in denied)


def test_a_link_for_someone_else_or_tampered_or_expired_is_refused(
    app: Flask, world: World, client_for: Clients
) -> None:
    from itsdangerous import URLSafeTimedSerializer

    sender, recipient, colleague = (
        client_for(world.adviser_ft),
        client_for(world.agent62),
        client_for(world.agent62b),
    )
    deposit_id = sent_deposit(sender, [world.cd62])
    file_id = file_ids(app, deposit_id)[0]
    token = csrf_of(recipient, f"/depots/{deposit_id}")
    link = recipient.post(
        f"/depots/{deposit_id}/fichiers/{file_id}/lien", data={"csrf_token": token}
    )
    path = link.headers["Location"]
    # Another user of the same organisation cannot use it
    assert colleague.get(path).status_code == 404
    # A tampered link is refused
    assert (
        recipient.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")).status_code == 404
    )
    # A link signed for another purpose (same key, other salt) is refused
    secret = app.config["SECRET_KEY"]
    payload = {"u": world.agent62.id, "f": file_id, "d": "62", "p": "download"}
    other = URLSafeTimedSerializer(secret, salt="another-purpose").dumps(payload)
    assert recipient.get(f"/telechargement/{other}").status_code == 404
    wrong_purpose = URLSafeTimedSerializer(secret, salt="filr.download-link.v1").dumps(
        {**payload, "p": "preview"}
    )
    assert recipient.get(f"/telechargement/{wrong_purpose}").status_code == 404
    # An expired link (older than five minutes) is refused
    import time

    real = time.time
    try:
        time.time = lambda: real() - 600  # type: ignore[assignment]
        old = URLSafeTimedSerializer(secret, salt="filr.download-link.v1").dumps(payload)
    finally:
        time.time = real  # type: ignore[assignment]
    assert recipient.get(f"/telechargement/{old}").status_code == 404
    # The genuine link still works for its owner
    assert recipient.get(path).status_code == 200
    reasons = [r.details for r in audit_rows(app, AuditAction.DEPOSIT_LINK_REFUSED)]
    for reason in ("other_user", "invalid", "wrong_purpose", "expired"):
        assert any(reason in d for d in reasons), (reason, reasons)


def test_a_deposit_past_its_expiry_cannot_be_downloaded_before_the_purge(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender, recipient = client_for(world.adviser_ft), client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.cd62])
    file_id = file_ids(app, deposit_id)[0]
    token = csrf_of(recipient, f"/depots/{deposit_id}")
    link = recipient.post(
        f"/depots/{deposit_id}/fichiers/{file_id}/lien", data={"csrf_token": token}
    )
    from datetime import timedelta

    from portal.db import utcnow

    with app.app_context():
        db.session.execute(
            sa.update(Deposit)
            .where(Deposit.id == deposit_id)
            .values(
                created_at=utcnow() - timedelta(days=91), expires_at=utcnow() - timedelta(minutes=1)
            )
        )
        db.session.commit()
    assert recipient.get(link.headers["Location"]).status_code == 404
    assert "Expiré" in recipient.get(f"/depots/{deposit_id}").get_data(as_text=True)


def test_two_uploads_of_the_same_name_give_two_files(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    results: list[int] = []

    def send(content: bytes) -> None:
        results.append(upload(sender, deposit_id, "fiche.pdf", content).status_code)

    threads = [threading.Thread(target=send, args=(PDF + bytes([i]) * 10,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201, 201]
    with app.app_context():
        files = (
            db.session.execute(sa.select(DepositFile).where(DepositFile.deposit_id == deposit_id))
            .scalars()
            .all()
        )
        assert len(files) == 2 and len({f.object_key for f in files}) == 2
        assert {f.filename for f in files} == {"fiche.pdf"}


def test_refused_types_get_a_french_message_and_leave_nothing(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    html = upload(sender, deposit_id, "page.html", b"<html><script>alert(1)</script></html>")
    svg = upload(sender, deposit_id, "image.png", b'<svg xmlns="http://www.w3.org/2000/svg"/>')
    empty = upload(sender, deposit_id, "vide.pdf", b"")
    for response in (html, svg, empty):
        assert response.status_code == 422
        assert response.json and response.json["error"]
    with app.app_context():
        assert db.session.execute(sa.select(DepositFile)).first() is None
        db.session.commit()
        assert list(services().store.inner.list("deposits/")) == []
    assert publish(sender, deposit_id).status_code == 302  # refused: no file
    assert "Ajoutez au moins un fichier" in sender.get(f"/depots/{deposit_id}/fichiers").get_data(
        as_text=True
    )


def test_mails_carry_no_personal_data_even_when_the_title_holds_some(
    world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    sender = client_for(world.adviser_ft)
    nir_title = "Fiche 2850762123456 LEFEBVRE Hélène"
    sent_deposit(
        sender,
        [world.cd62],
        files={"LEFEBVRE_2850762123456.pdf": PDF},
        title=nir_title,
    )
    messages = smtp.to(world.agent62.email)
    assert messages
    for raw in smtp.raw:
        text = raw.decode("utf-8", "replace")
        assert "2850762123456" not in text and "LEFEBVRE" not in text and "Hélène" not in text


def test_withdrawal_destroys_the_content_at_once(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id = sent_deposit(sender, [world.ft62])
    file_id = file_ids(app, deposit_id)[0]
    token = csrf_of(sender, f"/depots/{deposit_id}")
    assert (
        sender.post(f"/depots/{deposit_id}/retirer", data={"csrf_token": token}).status_code == 302
    )
    with app.app_context():
        key = db.session.get(DepositFile, file_id).object_key  # type: ignore[union-attr]
        db.session.commit()  # no transaction held while the key store is asked (SQLite)
        assert not services().store.exists(key)
        assert key not in set(services().store.inner.list("deposits/"))
    page = recipient.get(f"/depots/{deposit_id}")
    assert page.status_code == 200 and "Détruit" in page.get_data(as_text=True)
    assert audit_rows(app, AuditAction.DEPOSIT_WITHDRAWN)
    assert audit_rows(app, AuditAction.DEPOSIT_DESTROYED)


def test_recipient_cannot_withdraw_but_sender_manager_can(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender, recipient, manager = (
        client_for(world.agent62),
        client_for(world.adviser_ft),
        client_for(world.manager62),
    )
    deposit_id = sent_deposit(sender, [world.ft62])
    token = csrf_of(recipient, f"/depots/{deposit_id}")
    recipient.post(f"/depots/{deposit_id}/retirer", data={"csrf_token": token})
    with app.app_context():
        assert db.session.get(Deposit, deposit_id).status == "available"  # type: ignore[union-attr]
    assert manager.get(f"/depots/{deposit_id}").status_code == 404  # a manager reads no document


def test_provider_never_exchanges_directly_with_france_travail(
    world: World, client_for: Clients
) -> None:
    referent = client_for(world.referent62)
    form = referent.get("/depots/nouveau").get_data(as_text=True)
    assert "CD 62" in form and "FT 62" not in form
    token = csrf_of(referent, "/depots/nouveau")
    response = referent.post(
        "/depots/nouveau",
        data={
            "csrf_token": token,
            "departement": "62",
            "category": "document",
            "title": "x",
            "recipients": [world.ft62],
            "lifetime_days": "7",
        },
    )
    assert response.status_code == 200  # refused with the form again


def test_provider_cannot_address_a_deposit_to_its_own_organisation(
    app: Flask, world: World, client_for: Clients
) -> None:
    # Given the referent of the provider of 62 on the new-deposit form
    referent = client_for(world.referent62)
    form = referent.get("/depots/nouveau").get_data(as_text=True)
    # Then its own organisation is not offered as a recipient
    assert f'value="{world.provider62}"' not in form
    # And a forged request addressing it is refused, nothing created
    response = referent.post(
        "/depots/nouveau",
        data={
            "csrf_token": csrf_of(referent, "/depots/nouveau"),
            "departement": "62",
            "category": "document",
            "title": "x",
            "recipients": [world.provider62],
            "lifetime_days": "7",
        },
    )
    assert response.status_code == 200
    with app.app_context():
        assert db.session.execute(sa.select(Deposit)).first() is None


def test_maximum_downloads_counter_is_atomic(app: Flask, world: World, client_for: Clients) -> None:
    sender, recipient = client_for(world.adviser_ft), client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.cd62], max_downloads=1)
    file_id = file_ids(app, deposit_id)[0]
    links = []
    for _ in range(2):
        token = csrf_of(recipient, f"/depots/{deposit_id}")
        links.append(
            recipient.post(
                f"/depots/{deposit_id}/fichiers/{file_id}/lien", data={"csrf_token": token}
            ).headers["Location"]
        )
    codes: list[int] = []

    def go(path: str) -> None:
        c = app.test_client()
        c.environ_base.update(recipient.environ_base)
        c._cookies = recipient._cookies  # type: ignore[attr-defined]
        response = c.get(path)
        response.get_data()  # the receipt is written once the whole file was sent
        codes.append(response.status_code)

    threads = [threading.Thread(target=go, args=(p,)) for p in links]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 404]
    with app.app_context():
        assert (
            db.session.execute(sa.select(sa.func.count()).select_from(DownloadReceipt)).scalar_one()
            == 1
        )


def test_take_in_charge_shows_colleagues_who_handles_it(world: World, client_for: Clients) -> None:
    sender = client_for(world.adviser_ft)
    deposit_id = sent_deposit(sender, [world.cd62])
    agent, colleague = client_for(world.agent62), client_for(world.agent62b)
    token = csrf_of(agent, f"/depots/{deposit_id}")
    agent.post(f"/depots/{deposit_id}/prendre-en-charge", data={"csrf_token": token})
    assert "Agnès Soixantedeux" in colleague.get(f"/depots/{deposit_id}").get_data(as_text=True)
    assert "Pris en charge" in colleague.get("/depots").get_data(as_text=True)


def test_a_deposit_for_a_named_person_reaches_that_person_only(
    app: Flask, world: World, client_for: Clients, smtp: SmtpSink
) -> None:
    sender = client_for(world.adviser_ft)
    token = csrf_of(sender, "/depots/nouveau")
    response = sender.post(
        "/depots/nouveau",
        data={
            "csrf_token": token,
            "departement": "62",
            "category": "document",
            "title": "Pour Agnès seulement",
            "recipient_users": [world.agent62.id],
            "lifetime_days": "7",
        },
    )
    assert response.status_code == 302
    deposit_id = response.headers["Location"].split("/")[2]
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201
    assert publish(sender, deposit_id).status_code == 302
    assert smtp.to(world.agent62.email) and not smtp.to(world.agent62b.email)
    assert client_for(world.agent62).get(f"/depots/{deposit_id}").status_code == 200
    assert client_for(world.agent62b).get(f"/depots/{deposit_id}").status_code == 404


def test_the_sql_visibility_condition_agrees_with_the_isolation_predicate(
    app: Flask, world: World, client_for: Clients
) -> None:
    from portal.accounts.models import User
    from portal.deposits.permissions import can_see_deposit, visible_deposits

    ft, cd = client_for(world.adviser_ft), client_for(world.agent62)
    ids = {
        sent_deposit(ft, [world.cd62]),
        sent_deposit(cd, [world.ft62]),
        sent_deposit(cd, [world.provider62]),
        create_deposit(cd, [world.ft62]),  # a draft: its sender only
    }
    people = [world.agent62, world.agent62b, world.manager62, world.agent59, world.adviser_ft,
              world.technicien_ft, world.referent62]  # fmt: skip
    seen: dict[str, int] = {}
    with app.app_context():
        deposits_all = db.session.execute(sa.select(Deposit)).scalars().all()
        assert {d.id for d in deposits_all} == ids
        for account in people:
            user = db.session.get(User, account.id)
            assert user is not None
            by_sql = set(
                db.session.execute(sa.select(Deposit.id).where(visible_deposits(user))).scalars()
            )
            by_predicate = {d.id for d in deposits_all if can_see_deposit(user, d)}
            assert by_sql == by_predicate, account.email
            seen[account.email] = len(by_sql)
    # The comparison is not vacuous: some see several deposits, the foreign user none
    assert seen[world.agent62.email] >= 3 and seen[world.agent59.email] == 0
    assert seen[world.referent62.email] == 1 and seen[world.manager62.email] == 0
