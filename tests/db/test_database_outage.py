"""A database out of reach: 503 in French with Retry-After, `database_unavailable` for the API and
the uploads (never blamed on the storage), and one line from `filr serve` at start."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal import Settings, create_app
from portal.accounts.models import Role
from portal.db import DATABASE_RETRY_AFTER_SECONDS, db
from portal.migrate import upgrade
from portal.orgs.models import OrgKind
from tests.api.conftest import make_token
from tests.conftest import csrf_of, https, login
from tests.factories import Factory
from tests.support.pdf import make_pdf
from tests.support.services import PG_ADMIN_URL, postgres_database

# Above the uploads' read size (1 MiB), so the database goes away between two reads of the body.
BIG_PDF = make_pdf(padding=120_000)
FILR = Path(sys.executable).with_name("filr")


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        secret_key="test-secret-key-" + "x" * 40,
        database_url=database_url,
        data_dir=tmp_path / "data",
        storage_url=f"file://{tmp_path / 'objects'}",
        master_key_file=tmp_path / "data" / "secrets" / "master.key",
        base_url="https://filr.test",
        secure_cookies=True,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        testing=True,
    )


@pytest.fixture(params=["postgres", "sqlite"])
def unreachable_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """A running portal whose database cannot be reached: a closed port, a missing directory."""
    if request.param == "postgres":
        url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/filr"
    else:
        url = f"sqlite:///{tmp_path / 'gone' / 'filr.db'}"
    app = create_app(_settings(url, tmp_path))
    yield app
    db.bound(app).engine.dispose()


def assert_database_problem(response: TestResponse) -> None:
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body is not None
    assert body["code"] == "database_unavailable" and body["status"] == 503
    assert body["title"] == "Service momentanément indisponible"
    assert "base de données" in body["detail"]


def test_login_page_is_a_french_503_with_retry_after_when_the_database_is_out_of_reach(
    unreachable_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = https(unreachable_app.test_client())
    # Given a visitor, and one who still holds a session cookie (read from the database)
    client.set_cookie("__Host-filr", "a" * 43, domain="localhost", path="/", secure=True)
    for response in (https(unreachable_app.test_client()).get("/connexion"), client.get("/")):
        # Then the page says, in French, that the service is momentarily unavailable
        assert response.status_code == 503
        assert response.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
        html = response.get_data(as_text=True)
        assert "Service momentanément indisponible" in html
        assert "ne peut pas joindre sa base de données" in html
        assert "Erreur inattendue" not in html
        assert "Set-Cookie" not in response.headers  # nothing could be stored
    # And the log holds one line per request, no traceback
    outage = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(outage) == 2 and all(r.exc_info is None for r in outage)


def test_api_answers_a_database_unavailable_problem_when_the_database_is_out_of_reach(
    unreachable_app: Flask,
) -> None:
    client = unreachable_app.test_client(use_cookies=False)
    token = "filr_" + "A" * 43  # well formed: it must be looked up in the database
    response = client.get("/api/v1/deposits", headers={"Authorization": f"Bearer {token}"})
    assert_database_problem(response)


# --- the database goes away while a file streams in -------------------------------------------


class BodyThatOutlivesTheDatabase(io.BytesIO):
    """A request body that cuts the database off once its first chunk has been read."""

    def __init__(self, payload: bytes, cut: Callable[[], None]) -> None:
        super().__init__(payload)
        self.payload, self.cut, self.reads = payload, cut, 0

    def _count(self) -> None:
        self.reads += 1
        if self.reads == 2:
            self.cut()

    def read(self, size: int | None = -1) -> bytes:
        self._count()
        return super().read(size)

    def readinto(self, buffer: Any) -> int:
        self._count()
        return super().readinto(buffer)


@dataclass
class Outage:
    app: Flask
    factory: Factory
    cut: Callable[[], None]


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    """A portal on a throw-away PostgreSQL database that `cut()` makes unreachable for real.

    `cut` refuses every new connection to the database (ALLOW_CONNECTIONS false) and ends the
    open ones, as a stopped server or a lost network would.
    """
    with postgres_database("filr_outage") as url:
        upgrade(url)
        name = url.rsplit("/", 1)[1]
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

        def cut() -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

        app = create_app(_settings(url, tmp_path))
        try:
            yield Outage(app, Factory(app), cut)
        finally:
            db.bound(app).engine.dispose()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.dispose()


def _post_body(client: FlaskClient, path: str, body: BodyThatOutlivesTheDatabase,
               headers: dict[str, str]) -> TestResponse:  # fmt: skip
    return client.post(
        path,
        input_stream=body,
        content_length=len(body.payload),
        content_type="application/octet-stream",
        headers={"X-Filename": quote("fiche.pdf"), **headers},
    )


@pytest.mark.postgres
def test_an_api_upload_in_flight_is_told_database_unavailable_not_storage_unavailable(
    outage: Outage,
) -> None:
    # Given a script with a draft deposit
    cd62 = outage.factory.org(OrgKind.DEPARTEMENT, "62", name="CD 62")
    ft62 = outage.factory.org(OrgKind.FRANCE_TRAVAIL, None, ("62",), name="FT 62")
    sender = outage.factory.user(ft62, (Role.AGENT,))
    token = make_token(outage.app, sender)
    client = outage.app.test_client(use_cookies=False)
    auth = {"Authorization": f"Bearer {token}"}
    created = client.post(
        "/api/v1/deposits",
        headers=auth,
        json={"departement": "62", "category": "document", "title": "T", "recipients": [cd62]},
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    deposit_id = created.json["id"]  # type: ignore[index]
    # When the database goes away while the file streams in
    body = BodyThatOutlivesTheDatabase(BIG_PDF, outage.cut)
    response = _post_body(client, f"/api/v1/deposits/{deposit_id}/files", body, auth)
    # Then the script is told the database is unavailable (retry later), not the storage
    assert body.reads > 2  # the whole body was read: the cut came in flight
    assert_database_problem(response)


@pytest.mark.postgres
def test_a_page_upload_in_flight_is_told_database_unavailable_in_french(outage: Outage) -> None:
    # Given an agent on the upload page of a draft
    cd62 = outage.factory.org(OrgKind.DEPARTEMENT, "62", name="CD 62")
    ft62 = outage.factory.org(OrgKind.FRANCE_TRAVAIL, None, ("62",), name="FT 62")
    agent = outage.factory.user(ft62, (Role.AGENT,))
    client = https(outage.app.test_client())
    assert login(client, agent).status_code == 302
    token = csrf_of(client, "/depots/nouveau")
    created = client.post(
        "/depots/nouveau",
        data={"csrf_token": token, "departement": "62", "category": "document", "title": "T",
              "recipients": [cd62], "lifetime_days": "90"},
    )  # fmt: skip
    assert created.status_code == 302, created.get_data(as_text=True)[:500]
    deposit_id = created.headers["Location"].split("/")[2]
    upload_token = csrf_of(client, f"/depots/{deposit_id}/fichiers")
    # When the database goes away while the file streams in
    body = BodyThatOutlivesTheDatabase(BIG_PDF, outage.cut)
    response = _post_body(
        client, f"/depots/{deposit_id}/fichiers", body, {"X-CSRFToken": upload_token}
    )
    # Then the page's script gets the French message it shows next to the file
    assert body.reads > 2
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_SECONDS)
    assert response.json is not None
    assert response.json["code"] == "database_unavailable"
    assert "base de données" in response.json["error"]
    assert "stockage" not in response.json["error"]


# --- filr serve at start ----------------------------------------------------------------------


def _serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `filr serve`, in its own process; it must give up quickly."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FILR_")}
    base.update(FILR_DATA_DIR=str(tmp_path / "data"), **env)
    return subprocess.run(
        [str(FILR), "serve", "--port", str(closed_port())],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://postgres:hunter2-secret@127.0.0.1:{port}/filr",
            "Connection refused",
        ),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/filr_no_such_database", "does not exist"),
        ("postgres://postgres:hunter2-secret@127.0.0.1/filr", "pas une adresse"),
    ],
    ids=["closed-port", "no-such-database", "unusable-url"],
)
def test_filr_serve_on_a_wrong_database_prints_one_line_and_exits_1(
    tmp_path: Path, url: str, expected: str
) -> None:
    result = _serve(tmp_path, FILR_DATABASE_URL=url.format(port=closed_port()))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "FILR_DATABASE_URL" in lines[0] and expected in lines[0]
    assert "hunter2-secret" not in lines[0]  # never the URL, which may hold a password
    assert "Traceback" not in result.stderr and "écoute" not in result.stdout
