"""Sending a draft while a file is being attached to it: a file whose scan is pending never
reaches a recipient (review finding 1). The two requests are two database sessions on
PostgreSQL (READ COMMITTED), the orders that raced forced with threads. SQLite has no such
race: each transaction begins IMMEDIATE, so two requests that write never interleave."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

import audit
from portal.accounts.models import User
from portal.container import services
from portal.db import db
from portal.deposits import services as deposits
from portal.deposits.antivirus import Antivirus
from portal.deposits.models import Deposit, DepositFile, DepositStatus, ScanStatus
from portal.deposits.rescan import rescan_pending
from tests.conftest import reread
from tests.deposits.conftest import PDF, create_deposit, download, file_ids, upload
from tests.factories import World
from tests.flows.conftest import ClientFor

CTX = audit.NO_CONTEXT


@pytest.fixture
def sessions(app: Flask) -> Iterator[tuple[Session, Session]]:
    """Two sessions on the app's database, as two requests (two tabs) have."""
    engine = db.bound(app).engine
    first, second = Session(engine), Session(engine)
    yield first, second
    first.close()
    second.close()


def _draft_with_a_clean_file(world: World, client_for: ClientFor) -> str:
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201
    return deposit_id


def _attach_pending(app: Flask, session: Session, user_id: str, deposit_id: str) -> None:
    """`add_file` of a file declared too big to scan inline: stored, its scan pending."""
    with app.app_context():
        svc = services()
        user, deposit = session.get(User, user_id), session.get(Deposit, deposit_id)
        assert user is not None and deposit is not None
        deposits.add_file(session, svc.store, user, deposit, "annexe.pdf", [PDF],
                          size_limit=10**9, ctx=CTX, antivirus=Antivirus.of(svc),
                          declared_size=10**9)  # fmt: skip


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_pending_file_attached_after_send_read_the_draft_holds_it(
    app: Flask, world: World, client_for: ClientFor, sessions: tuple[Session, Session]
) -> None:
    deposit_id = _draft_with_a_clean_file(world, client_for)
    sending, uploading = sessions
    # Given "envoyer" has read the draft and its (clean) files
    user = sending.get(User, world.agent62.id)
    deposit = sending.get(Deposit, deposit_id)
    assert user is not None and deposit is not None
    assert [f.scan_status for f in deposit.files] == [ScanStatus.CLEAN]
    # When another tab commits a file whose scan is pending, then "envoyer" decides
    _attach_pending(app, uploading, world.agent62.id, deposit_id)
    assert deposits.publish(sending, user, deposit, CTX) is False
    sending.commit()
    # Then the deposit waits for the antivirus, unseen
    held = reread(app, Deposit, deposit_id)
    assert held.status == DepositStatus.DRAFT and held.held_for_scan_at is not None
    assert held.published_at is None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_an_upload_finishing_during_a_send_is_refused(
    app: Flask, world: World, client_for: ClientFor, sessions: tuple[Session, Session]
) -> None:
    deposit_id = _draft_with_a_clean_file(world, client_for)
    sending, uploading = sessions
    user = sending.get(User, world.agent62.id)
    deposit = sending.get(Deposit, deposit_id)
    assert user is not None and deposit is not None
    # Given "envoyer" has published the draft but not committed yet
    assert deposits.publish(sending, user, deposit, CTX) is True
    outcome: list[object] = []

    def upload_ends() -> None:
        try:
            _attach_pending(app, uploading, world.agent62.id, deposit_id)
            outcome.append("attached")
        except deposits.DepositError as e:
            outcome.append(e)

    # When an upload to the same draft finishes meanwhile
    worker = threading.Thread(target=upload_ends)
    worker.start()
    time.sleep(1.0)
    sending.commit()
    worker.join(timeout=30)
    # Then it waited for the send and was refused: nothing pending in the sent deposit
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], deposits.DepositError), outcome
    with app.app_context():
        statuses = db.session.execute(
            sa.select(DepositFile.scan_status).where(DepositFile.deposit_id == deposit_id)
        ).scalars()
        assert list(statuses) == [ScanStatus.CLEAN]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_send_during_an_upload_commit_sees_the_pending_file(
    app: Flask, world: World, client_for: ClientFor, sessions: tuple[Session, Session]
) -> None:
    deposit_id = _draft_with_a_clean_file(world, client_for)
    sending, uploading = sessions
    user = sending.get(User, world.agent62.id)
    deposit = sending.get(Deposit, deposit_id)
    assert user is not None and deposit is not None
    assert len(deposit.files) == 1  # "envoyer" read the files before the upload ends
    # Given an upload attaching a pending file, between its lock and its commit
    uploading.execute(sa.select(Deposit.id).where(Deposit.id == deposit_id).with_for_update()).one()
    first = deposit.files[0]
    uploading.add(
        DepositFile(
            id="f" * 32, deposit_id=deposit_id, object_key=f"deposits/{deposit_id}/{'f' * 32}",
            filename="annexe.pdf", content_type=first.content_type, size=first.size,
            sha256=first.sha256, created_at=first.created_at, scan_status=ScanStatus.PENDING,
        )
    )  # fmt: skip
    uploading.flush()
    outcome: list[bool] = []

    def send() -> None:
        outcome.append(deposits.publish(sending, user, deposit, CTX))
        sending.commit()

    # When "envoyer" runs meanwhile
    worker = threading.Thread(target=send)
    worker.start()
    time.sleep(1.0)
    uploading.commit()
    worker.join(timeout=30)
    # Then it waited for the upload and held the deposit
    assert not worker.is_alive()
    assert outcome == [False]
    assert reread(app, Deposit, deposit_id).status == DepositStatus.DRAFT


def test_a_file_whose_scan_is_pending_is_never_downloaded(
    app: Flask, world: World, client_for: ClientFor
) -> None:
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id = _draft_with_a_clean_file(world, client_for)
    from tests.deposits.conftest import publish

    assert publish(sender, deposit_id).status_code == 302
    (file_id,) = file_ids(app, deposit_id)
    assert download(recipient, deposit_id, file_id).data == PDF
    # Given a published file whose scan is pending (left by an older version)
    with app.app_context():
        db.session.execute(
            sa.update(DepositFile)
            .where(DepositFile.id == file_id)
            .values(scan_status=ScanStatus.PENDING)
        )
        db.session.commit()
    # Then neither side gets its bytes
    for client in (recipient, sender):
        response = download(client, deposit_id, file_id)
        assert response.status_code != 200 and PDF not in response.data
    # And the antivirus job scans it (published or not): served again once clean
    with app.app_context():
        assert rescan_pending(db.session, services(), CTX).clean == 1
    assert download(recipient, deposit_id, file_id).data == PDF
