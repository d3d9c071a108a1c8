"""An unfinished upload past its expiry date is gone for its sender at once (tus expiration),
not only once the purge has run: no piece is taken any more."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.db import db, utcnow
from portal.deposits.models import ResumableUpload
from portal.settings import Settings
from tests.deposits.conftest import create_deposit
from tests.deposits.test_resumable_web import TUS, MiB, _create, _offset, _patch, _text, _token
from tests.factories import Account, World


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(resumable_uploads=True)


def test_an_expired_upload_answers_404_and_takes_no_piece(
    app: Flask, world: World, client_for: Callable[[Account], FlaskClient]
) -> None:
    client = client_for(world.agent62)
    deposit_id = create_deposit(client, [world.ft62])
    token = _token(client, deposit_id)
    content = _text(6 * MiB)
    location = _create(client, deposit_id, len(content), token)
    assert _offset(client, location) == "0"
    with app.app_context():
        db.session.execute(
            sa.update(ResumableUpload).values(
                created_at=utcnow() - timedelta(hours=25),
                expires_at=utcnow() - timedelta(seconds=1),
            )
        )
        db.session.commit()
    assert client.head(location, headers=TUS).status_code == 404
    assert _patch(client, location, 0, content, token) == 404
    with app.app_context():
        upload = db.session.execute(sa.select(ResumableUpload)).scalar_one()
        assert upload.offset == 0
