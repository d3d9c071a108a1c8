"""tus 1.0.0 resumable uploads through the API, on a real HTTP server, on both stacks.

SQLite + directory and PostgreSQL + S3 on a real SeaweedFS (the `backend` parametrisation);
the client connection is cut mid-PATCH and the server restarted (a new app on the same
database and store), and the file still ends with the right SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

import audit
from portal.container import services
from portal.db import db, utcnow
from portal.deposits.models import ResumableUpload
from portal.deposits.rescan import rescan_pending
from portal.deposits.resumable import expire_uploads
from portal.settings import Settings
from storage.resumable import PARTS_PREFIX
from tests.api.conftest import make_token, new_deposit
from tests.api.test_api import Apis
from tests.factories import World

MiB = 1024 * 1024
CHUNK = 8 * MiB


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Resumable uploads on (they are off by default)."""
    return settings.with_overrides(resumable_uploads=True)


def text_file(size: int) -> bytes:
    """*size* bytes of random hexadecimal text (a .txt the content checks accept)."""
    return os.urandom(size // 2 + 1).hex().encode()[:size]


@contextmanager
def serving(app: Flask) -> Iterator[int]:
    """Serve *app* on a real socket in a thread; yield its port; stop it (a server restart)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class Tus:
    """A minimal tus client over http.client, able to cut its connection mid-PATCH."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        all_headers = {
            "Authorization": f"Bearer {self.token}",
            "Tus-Resumable": "1.0.0",
            **(headers or {}),
        }
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response

    def create(self, deposit_id: str, name: str, length: int) -> str:
        metadata = "filename " + base64.b64encode(name.encode()).decode()
        response = self.request(
            "POST",
            f"/api/v1/deposits/{deposit_id}/uploads",
            {"Upload-Length": str(length), "Upload-Metadata": metadata},
        )
        assert response.status == 201, response.status
        assert response.headers["Tus-Resumable"] == "1.0.0"
        assert response.headers["Upload-Expires"]
        return str(response.headers["Location"])

    def offset(self, location: str) -> int:
        response = self.request("HEAD", location)
        assert response.status == 200, response.status
        assert response.headers["Cache-Control"] == "no-store"
        return int(response.headers["Upload-Offset"])

    def patch(self, location: str, offset: int, data: bytes) -> http.client.HTTPResponse:
        return self.request(
            "PATCH",
            location,
            {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
            data,
        )

    def cut_patch(self, location: str, offset: int, data: bytes) -> None:
        """Send the headers and half the piece, then drop the connection."""
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.sendall(head + data[: len(data) // 2])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset: the network is gone


def _upload_with_cuts(
    make_app: Callable[..., Flask], app: Flask, api_for: Apis, world: World, size: int
) -> None:
    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    data = text_file(size)
    token = api.token
    pieces = [(o, data[o : o + CHUNK]) for o in range(0, len(data), CHUNK)]
    cut_at = {1, len(pieces) // 2, len(pieces) - 1}  # three cuts, the last on the last piece
    restart_after = len(pieces) // 2 - 1
    server_app = app
    done_file: str | None = None
    with serving(server_app) as port:
        tus = Tus(port, token)
        location = tus.create(deposit_id, "mesures.txt", len(data))
        for index, (offset, piece) in enumerate(pieces[: restart_after + 1]):
            if index in cut_at:
                tus.cut_patch(location, offset, piece)
                offset = tus.offset(location)  # the client resumes: HEAD, then PATCH
                assert offset == pieces[index][0]
            response = tus.patch(location, offset, piece)
            assert response.status == 204, response.status
    # The server is restarted: a new process would only have the database and the store.
    with serving(make_app()) as port:
        tus = Tus(port, token)
        resumed = tus.offset(location)
        assert resumed == pieces[restart_after + 1][0]
        for index in range(restart_after + 1, len(pieces)):
            offset, piece = pieces[index]
            if index in cut_at:
                tus.cut_patch(location, offset, piece)
                assert tus.offset(location) == offset
            response = tus.patch(location, offset, piece)
            assert response.status == 204, response.status
        done_file = response.headers["Filr-File-Id"]
        assert int(response.headers["Upload-Offset"]) == len(data)
        # The upload is over: it is gone, its file is in the deposit.
        assert tus.request("HEAD", location).status == 404
    expected = hashlib.sha256(data).hexdigest()
    (shown,) = api.get(f"/api/v1/deposits/{deposit_id}").json["files"]  # type: ignore[index]
    assert shown["id"] == done_file
    assert shown["sha256"] == expected and shown["size"] == len(data)
    # Above the inline limit the antivirus scans it right after (the job of `rescan`).
    with app.app_context():
        report = rescan_pending(db.session, services(), audit.Context())
    assert report.clean == 1
    assert api.post(f"/api/v1/deposits/{deposit_id}/publish").status_code == 200
    content = api_for(world.adviser_ft).get(shown["content_url"])
    assert content.status_code == 200, content.get_data(as_text=True)
    assert hashlib.sha256(content.get_data()).hexdigest() == expected
    with app.app_context():
        inner = services().store.inner
        assert list(inner.list(PARTS_PREFIX)) == []
        assert db.session.query(ResumableUpload).count() == 0


def test_an_upload_cut_three_times_and_a_server_restart_ends_with_the_right_sha256(
    make_app: Callable[..., Flask], app: Flask, api_for: Apis, world: World
) -> None:
    _upload_with_cuts(make_app, app, api_for, world, 64 * MiB)


@pytest.mark.slow
def test_a_300_mib_upload_cut_three_times_and_a_server_restart(
    make_app: Callable[..., Flask], app: Flask, api_for: Apis, world: World
) -> None:
    _upload_with_cuts(make_app, app, api_for, world, 300 * MiB)


def _tus(api: Any, method: str, path: str, **headers: str) -> Any:
    return getattr(api.client, method)(
        path,
        headers={"Authorization": f"Bearer {api.token}", "Tus-Resumable": "1.0.0", **headers},
        **({"data": headers.pop("_data")} if "_data" in headers else {}),
    )


def _create(api: Any, deposit_id: str, length: int, name: str = "notes.txt") -> str:
    response = api.client.post(
        f"/api/v1/deposits/{deposit_id}/uploads",
        headers={
            "Authorization": f"Bearer {api.token}",
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(length),
            "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode(),
        },
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return str(response.headers["Location"])


def _patch(api: Any, location: str, offset: int, data: bytes, **headers: str) -> Any:
    return api.client.patch(
        location,
        data=data,
        headers={
            "Authorization": f"Bearer {api.token}",
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        },
    )


def test_options_announce_the_protocol_and_the_piece_rules(world: World, api_for: Apis) -> None:
    api = api_for(world.agent62)
    response = api.client.options(
        "/api/v1/uploads", headers={"Authorization": f"Bearer {api.token}"}
    )
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation",
        "termination",
        "expiration",
    }
    granularity = int(response.headers["Filr-Chunk-Granularity"])
    assert int(response.headers["Filr-Min-Chunk-Size"]) % granularity == 0
    assert int(response.headers["Tus-Max-Size"]) > 0


def test_protocol_errors(world: World, api_for: Apis) -> None:
    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    # Another version of the protocol: 412 with the version spoken here.
    wrong = api.client.post(
        f"/api/v1/deposits/{deposit_id}/uploads",
        headers={"Authorization": f"Bearer {api.token}", "Tus-Resumable": "0.2.2",
                 "Upload-Length": "10", "Upload-Metadata": "filename YS50eHQ="},
    )  # fmt: skip
    assert wrong.status_code == 412 and wrong.headers["Tus-Version"] == "1.0.0"
    location = _create(api, deposit_id, 6 * MiB + 3)
    # A piece at another offset: 409, and nothing moves.
    assert _patch(api, location, 5, b"x" * 10).status_code == 409
    # A piece that is not the last must hold whole segments, at least 5 MiB.
    assert _patch(api, location, 0, b"a" * (MiB + 1)).status_code == 400
    assert _patch(api, location, 0, b"a" * MiB).status_code == 400
    # The wrong content type.
    assert _patch(api, location, 0, b"a", **{"Content-Type": "text/plain"}).status_code == 415
    head = _tus(api, "head", location)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "0"
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Upload-Length"] == str(6 * MiB + 3)
    # Two pieces: 5 MiB, then the last 1 MiB + 3 bytes.
    data = text_file(6 * MiB + 3)
    first = _patch(api, location, 0, data[: 5 * MiB])
    assert first.status_code == 204 and first.headers["Upload-Offset"] == str(5 * MiB)
    last = _patch(api, location, 5 * MiB, data[5 * MiB :])
    assert last.status_code == 204, last.get_data(as_text=True)
    assert last.headers["Filr-File-Sha256"] == hashlib.sha256(data).hexdigest()


def test_another_departement_gets_404_on_every_request(
    app: Flask, world: World, api_for: Apis
) -> None:
    owner = api_for(world.agent62)
    deposit_id = new_deposit(owner, [world.ft62])
    location = _create(owner, deposit_id, 6 * MiB)
    first = _patch(owner, location, 0, text_file(5 * MiB))
    assert first.status_code == 204
    for intruder in (api_for(world.agent59), api_for(world.agent62b)):
        assert _tus(intruder, "head", location).status_code == 404
        assert _patch(intruder, location, 5 * MiB, b"a" * MiB).status_code == 404
        assert _tus(intruder, "delete", location).status_code == 404
        # Nor may it start an upload into the deposit.
        assert intruder.client.post(
            f"/api/v1/deposits/{deposit_id}/uploads",
            headers={"Authorization": f"Bearer {intruder.token}", "Tus-Resumable": "1.0.0",
                     "Upload-Length": "10", "Upload-Metadata": "filename YS50eHQ="},
        ).status_code == 404  # fmt: skip
    # An unknown id looks the same.
    assert _tus(owner, "head", "/api/v1/uploads/" + "0" * 32).status_code == 404
    # The owner's upload is untouched.
    assert _tus(owner, "head", location).headers["Upload-Offset"] == str(5 * MiB)
    # Termination by its owner: gone, parts and all.
    assert _tus(owner, "delete", location).status_code == 204
    assert _tus(owner, "head", location).status_code == 404
    with app.app_context():
        assert list(services().store.inner.list(PARTS_PREFIX)) == []


def test_unfinished_uploads_expire_and_the_purge_removes_their_parts(
    app: Flask, world: World, api_for: Apis
) -> None:
    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    location = _create(api, deposit_id, 11 * MiB)
    head = _tus(api, "head", location)
    expires = head.headers["Upload-Expires"]
    assert expires.endswith("GMT")
    assert _patch(api, location, 0, text_file(5 * MiB)).status_code == 204
    with app.app_context():
        store = services().store
        assert expire_uploads(db.session, store, utcnow()) == 0  # not yet
        later = utcnow() + timedelta(hours=24, minutes=1)
        assert expire_uploads(db.session, store, later) == 1
        assert list(store.inner.list(PARTS_PREFIX)) == []
        incomplete = getattr(store.inner, "incomplete_uploads", None)
        if incomplete is not None:
            assert list(incomplete()) == []
    assert _tus(api, "head", location).status_code == 404


def test_off_by_default(make_app: Callable[..., Flask], world: World) -> None:
    app = make_app(resumable_uploads=False)
    from tests.api.conftest import bare_client

    token = make_token(app, world.agent62)
    response = bare_client(app).options(
        "/api/v1/uploads", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 404


def test_the_checks_run_when_the_last_piece_is_in_and_a_refused_file_is_destroyed(
    app: Flask, world: World, api_for: Apis
) -> None:
    from tests.support.clamd import EICAR, EICAR_SIGNATURE

    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    # The antivirus: EICAR in one (last) piece is refused with its signature.
    location = _create(api, deposit_id, len(EICAR), "notes.txt")
    refused = _patch(api, location, 0, EICAR)
    assert refused.status_code == 422
    assert refused.json["code"] == "file_infected"  # type: ignore[index]
    assert EICAR_SIGNATURE in refused.json["detail"]  # type: ignore[index]
    # The content check on the decrypted stream: a .txt that is a web page.
    page = b"<html><script>alert(1)</script></html>\n" * 10
    location = _create(api, deposit_id, len(page), "page.txt")
    assert _patch(api, location, 0, page).status_code == 422
    # Neither joined the deposit, and nothing of them is left in the store.
    assert api.get(f"/api/v1/deposits/{deposit_id}").json["files"] == []  # type: ignore[index]
    with app.app_context():
        store = services().store
        assert [k for k in store.inner.list(f"deposits/{deposit_id}/") if store.exists(k)] == []
        assert db.session.query(ResumableUpload).count() == 0


def test_a_second_patch_while_one_works_gets_409(app: Flask, world: World, api_for: Apis) -> None:
    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    location = _create(api, deposit_id, 10 * MiB)
    upload_id = location.rsplit("/", 1)[1]
    with app.app_context():
        # A PATCH at work holds the claim (as one in another worker would).
        db.session.query(ResumableUpload).filter_by(id=upload_id).update(
            {"busy_until": utcnow() + timedelta(minutes=5)}
        )
        db.session.commit()
    assert _patch(api, location, 0, text_file(5 * MiB)).status_code == 409
    assert _tus(api, "delete", location).status_code == 409
    with app.app_context():
        db.session.query(ResumableUpload).filter_by(id=upload_id).update({"busy_until": None})
        db.session.commit()
    assert _patch(api, location, 0, text_file(5 * MiB)).status_code == 204
