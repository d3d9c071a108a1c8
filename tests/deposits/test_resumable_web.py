"""Resumable uploads from the deposit page (tus through the session): CSRF, isolation, the key.

The browser side (tus-js-client, cuts and a restart) is in tests/browser/test_resumable_journey.py;
here the routes themselves, on both stacks (SQLite + directory, PostgreSQL + SeaweedFS).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.container import services
from portal.db import db
from portal.deposits.models import Deposit, ResumableUpload
from portal.settings import Settings
from storage.resumable import PARTS_PREFIX
from tests.conftest import csrf_of
from tests.deposits.conftest import create_deposit
from tests.factories import Account, World

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Resumable uploads on (they are off by default)."""
    return settings.with_overrides(resumable_uploads=True)


def _text(size: int) -> bytes:
    return os.urandom(size // 2 + 1).hex().encode()[:size]


def _token(client: FlaskClient, deposit_id: str) -> str:
    return csrf_of(client, f"/depots/{deposit_id}/fichiers")


def _create(client: FlaskClient, deposit_id: str, length: int, token: str) -> str:
    response = client.post(
        f"/depots/{deposit_id}/envois",
        headers={**TUS, "X-CSRFToken": token, "Upload-Length": str(length),
                 "Upload-Metadata": "filename " + base64.b64encode("relevé.txt".encode()).decode()},
    )  # fmt: skip
    assert response.status_code == 201, response.get_data(as_text=True)
    location: str = response.headers["Location"]
    assert location.startswith("/depots/envois/")
    return location


def _patch(client: FlaskClient, location: str, offset: int, data: bytes, token: str | None) -> int:
    headers = {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    }
    if token is not None:
        headers["X-CSRFToken"] = token
    status: int = client.patch(location, data=data, headers=headers).status_code
    return status


def _offset(client: FlaskClient, location: str) -> str | None:
    response = client.head(location, headers=TUS)
    return response.headers.get("Upload-Offset") if response.status_code == 200 else None


def test_the_page_uploads_in_pieces_with_the_session_and_its_csrf_token(
    app: Flask, world: World, client_for: Callable[[Account], FlaskClient]
) -> None:
    client = client_for(world.agent62)
    deposit_id = create_deposit(client, [world.ft62])
    page = client.get(f"/depots/{deposit_id}/fichiers").get_data(as_text=True)
    # The page hands tus-js-client its endpoint and piece size, and loads it from our origin.
    assert f'data-tus-url="/depots/{deposit_id}/envois"' in page
    assert f'data-chunk-bytes="{8 * MiB}"' in page
    assert '<script src="/vendor/tus.min.js" defer>' in page
    token = _token(client, deposit_id)
    content = _text(13 * MiB + 123)
    location = _create(client, deposit_id, len(content), token)

    # A piece without the CSRF token is refused and stores nothing.
    assert _patch(client, location, 0, content[: 8 * MiB], None) == 400
    assert _offset(client, location) == "0"

    assert _patch(client, location, 0, content[: 8 * MiB], token) == 204
    assert _offset(client, location) == str(8 * MiB)
    last = client.patch(
        location, data=content[8 * MiB :],
        headers={**TUS, "X-CSRFToken": token, "Upload-Offset": str(8 * MiB),
                 "Content-Type": "application/offset+octet-stream"},
    )  # fmt: skip
    assert last.status_code == 204, last.get_data(as_text=True)
    assert last.headers["Filr-File-Sha256"] == hashlib.sha256(content).hexdigest()
    with app.app_context():
        deposit = db.session.get(Deposit, deposit_id)
        assert deposit is not None
        [file] = deposit.files
        assert (file.filename, file.size) == ("relevé.txt", len(content))
        assert db.session.query(ResumableUpload).count() == 0
        object_key = file.object_key
        db.session.commit()  # SQLite: no read lock held while the key store is read
        # Encrypted under the deposit's département key, like every file.
        record = services().store.keyring.keystore.get_data_key(object_key)
        assert record is not None and record.departement == "62"


def test_another_user_gets_404_on_every_request_and_a_refusal_is_in_french(
    app: Flask, world: World, client_for: Callable[[Account], FlaskClient]
) -> None:
    owner = client_for(world.agent62)
    deposit_id = create_deposit(owner, [world.ft62])
    token = _token(owner, deposit_id)
    location = _create(owner, deposit_id, 6 * MiB, token)
    assert _patch(owner, location, 0, _text(5 * MiB), token) == 204
    for account in (world.agent59, world.agent62b):
        intruder = client_for(account)
        # A valid CSRF token of the intruder's own session: the isolation check must refuse.
        theirs = csrf_of(intruder, "/depots/nouveau")
        assert _offset(intruder, location) is None
        assert intruder.head(location, headers=TUS).status_code == 404
        assert _patch(intruder, location, 5 * MiB, b"a" * MiB, theirs) == 404
        assert intruder.delete(location, headers={**TUS, "X-CSRFToken": theirs}).status_code == 404
        started = intruder.post(
            f"/depots/{deposit_id}/envois",
            headers={**TUS, "X-CSRFToken": theirs, "Upload-Length": "10",
                     "Upload-Metadata": "filename YS50eHQ="},
        )  # fmt: skip
        assert started.status_code == 404
    assert owner.head("/depots/envois/" + "0" * 32, headers=TUS).status_code == 404
    assert _offset(owner, location) == str(5 * MiB)
    # A piece off the rules: the error is the page's JSON, in French.
    wrong = owner.patch(
        location, data=b"b" * 1000,
        headers={**TUS, "X-CSRFToken": token, "Upload-Offset": str(5 * MiB),
                 "Content-Type": "application/offset+octet-stream"},
    )  # fmt: skip
    assert wrong.status_code == 400
    assert "morceau" in wrong.get_json()["error"]
    # Termination by its owner (with the CSRF token): nothing left.
    assert owner.delete(location, headers=TUS).status_code == 400  # no CSRF token
    assert owner.delete(location, headers={**TUS, "X-CSRFToken": token}).status_code == 204
    assert owner.head(location, headers=TUS).status_code == 404
    with app.app_context():
        assert list(services().store.inner.list(PARTS_PREFIX)) == []


def test_off_by_default_and_the_client_is_served_from_our_origin(
    make_app: Callable[..., Flask], world: World, login_as: Callable[..., FlaskClient]
) -> None:
    from tests.conftest import https

    dist = Path(__file__).resolve().parents[2] / "node_modules" / "tus-js-client" / "dist"
    if not dist.is_dir():
        pytest.fail("tus-js-client is not installed: run npm install (scripts/setup)")
    app = make_app(resumable_uploads=False, tus_client_dir=dist)
    client = login_as(world.agent62, on=https(app.test_client()))
    deposit_id = create_deposit(client, [world.ft62])
    page = client.get(f"/depots/{deposit_id}/fichiers").get_data(as_text=True)
    assert "data-tus-url" not in page and "tus.min.js" not in page
    token = _token(client, deposit_id)
    response = client.post(
        f"/depots/{deposit_id}/envois",
        headers={**TUS, "X-CSRFToken": token, "Upload-Length": "10",
                 "Upload-Metadata": "filename YS50eHQ="},
    )  # fmt: skip
    assert response.status_code == 404
    with client.get("/vendor/tus.min.js") as script:
        assert script.status_code == 200
        assert script.mimetype in {"text/javascript", "application/javascript"}
        assert b"tus" in script.get_data()[:2000]
    # Behind the log-in like every page but the few public ones.
    anonymous = https(app.test_client()).get("/vendor/tus.min.js")
    assert anonymous.status_code == 302
