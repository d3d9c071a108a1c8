"""A stored file that fails its integrity check is never recorded as received.

On both stacks (SQLite + directory, PostgreSQL + S3 on a real SeaweedFS), the stored ciphertext
of a deposited file is damaged behind the portal's back; a download then answers a French 502
before the first byte, or is cut off mid-stream, and in every case the trail records
`storage:integrity-failed` (object and segment), the security officers are alerted at once, and
no receipt is written.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
import storage
from audit import AuditAction, Outcome
from portal.accounts.models import Role
from portal.container import services
from portal.db import db, utcnow
from portal.deposits.models import DownloadReceipt
from portal.securite.alerts import run_alert_job
from portal.securite.models import AlertKind, SecurityAlert
from portal.settings import Settings
from storage.stream import HEADER_SIZE, TAG_SIZE
from tests.api.conftest import bare_client, make_token
from tests.conftest import audit_rows, csrf_of
from tests.deposits.conftest import file_ids, sent_deposit
from tests.factories import Account, Factory, World
from tests.support.pdf import make_pdf
from tests.support.services import SmtpSink, body_of

Clients = Callable[[Account], FlaskClient]

SEGMENT = storage.DEFAULT_SEGMENT_SIZE  # what the portal's store writes
FRAME = SEGMENT + TAG_SIZE
# A PDF of three full segments and a short fourth one; each line differs from the others.
BIG_PDF = make_pdf(padding=int(3.5 * SEGMENT) // 20)


def at(segment: int) -> int:
    """Where *segment* starts in the stored ciphertext."""
    return HEADER_SIZE + segment * FRAME


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def swap(data: bytes, first: int) -> bytes:
    """Swap segment *first* with the next one."""
    a, b, c = at(first), at(first + 1), at(first + 2)
    return data[:a] + data[b:c] + data[a:b] + data[c:]


@dataclass(frozen=True)
class Damage:
    """A way of damaging the stored object, and the first segment that then fails."""

    apply: Callable[[bytes], bytes]
    segment: int

    @property
    def is_before_first_byte(self) -> bool:
        """The first segment is authenticated before the answer starts: a 502 page then."""
        return self.segment == 0


DAMAGES = {
    "truncated inside a later segment": Damage(lambda c: c[: at(2) + 1000], 2),
    "truncated at a segment boundary": Damage(lambda c: c[: at(3)], 3),
    "byte flipped in a later segment": Damage(lambda c: flip(c, at(2) + 7), 2),
    "byte flipped in the first segment": Damage(lambda c: flip(c, at(0) + 7), 0),
    "later segments swapped": Damage(lambda c: swap(c, 1), 1),
    "first segments swapped": Damage(lambda c: swap(c, 0), 0),
}


@pytest.fixture
def officer62(factory: Factory, world: World) -> Account:
    """The security officer of the département 62, who must hear of a damaged file of 62."""
    return factory.user(world.cd62, (Role.SECURITE,), name="Sécu Rité")


def damaged_deposit(
    app: Flask, sender: FlaskClient, world: World, damage: Damage
) -> tuple[str, str]:
    """A deposit of 62 for France Travail whose one stored file is then damaged; both ids."""
    deposit_id = sent_deposit(sender, [world.ft62], files={"gros.pdf": BIG_PDF})
    [file_id] = file_ids(app, deposit_id)
    with app.app_context():
        inner = services().store.inner
        key = f"deposits/{deposit_id}/{file_id}"
        stored = b"".join(inner.get(key))
        assert len(stored) == at(3) + len(BIG_PDF) - 3 * SEGMENT + TAG_SIZE  # 4 segments
        inner.put(key, [damage.apply(stored)])
    return deposit_id, file_id


def assert_reported_not_received(
    app: Flask, file_id: str, segment: int, officer: Account, smtp: SmtpSink
) -> None:
    """The failure is in the trail (object, segment), alerted and mailed; no receipt."""
    [failed] = audit_rows(app, AuditAction.STORAGE_INTEGRITY_FAILED)
    details = json.loads(failed.details)
    assert failed.outcome == Outcome.FAILURE
    assert (failed.target_type, failed.target_id, failed.target_departement) == (
        "file",
        file_id,
        "62",
    )
    assert details["object_key"].endswith(f"/{file_id}") and details["segment"] == segment
    assert details["bytes_sent"] == segment * SEGMENT  # the sound segments before it, only
    downloaded = audit_rows(app, AuditAction.DEPOSIT_DOWNLOADED)
    assert [r for r in downloaded if r.outcome == Outcome.SUCCESS] == []
    with app.app_context():
        assert db.session.execute(sa.select(DownloadReceipt)).first() is None
        [alert] = db.session.execute(sa.select(SecurityAlert)).scalars()
        assert (alert.kind, alert.subject_type, alert.subject_id) == (
            AlertKind.STORAGE_INTEGRITY,
            "file",
            file_id,
        )
        assert alert.departement_code == "62" and alert.first_event_seq == failed.seq
        # Mailed at once, by the request itself: no job has run
        assert alert.notified_at is not None
        alert_id = alert.id
    [mail] = smtp.to(officer.email)
    assert f"/securite/alertes/{alert_id}" in body_of(mail)


# --- the web --------------------------------------------------------------------------


def web_link(client: FlaskClient, deposit_id: str, file_id: str) -> str:
    token = csrf_of(client, f"/depots/{deposit_id}")
    link = client.post(f"/depots/{deposit_id}/fichiers/{file_id}/lien", data={"csrf_token": token})
    assert link.status_code == 302
    return link.headers["Location"]


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_a_damaged_file_is_never_recorded_as_received_on_the_web(
    app: Flask,
    world: World,
    client_for: Clients,
    officer62: Account,
    smtp: SmtpSink,
    damage: str,
) -> None:
    # Given a deposit for France Travail whose stored file was damaged behind the portal's back
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id, file_id = damaged_deposit(app, sender, world, DAMAGES[damage])
    smtp.clear()
    # When the recipient downloads it
    response = recipient.get(web_link(recipient, deposit_id, file_id))
    if DAMAGES[damage].is_before_first_byte:
        # Then, before any byte, a French page says the file is damaged
        assert response.status_code == 502
        page = response.get_data(as_text=True)
        assert "Fichier endommagé" in page and "ne peut pas être téléchargé" in page
        assert "expiré" not in page
    else:
        # Then the answer started with the full length, and the stream is aborted: the body
        # never ends cleanly short (the server drops the connection on this error)
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(len(BIG_PDF))
        with pytest.raises(storage.ObjectCorrupted):
            response.get_data()
    # And the trail, the alert and the absent receipt say so
    assert_reported_not_received(app, file_id, DAMAGES[damage].segment, officer62, smtp)
    assert audit_rows(app, AuditAction.DEPOSIT_LINK_REFUSED) == []
    # And the sender is not told the file was received
    assert "Conseil Ler" not in sender.get(f"/depots/{deposit_id}").get_data(as_text=True)


def test_the_alert_job_neither_raises_nor_mails_the_alert_again(
    app: Flask, world: World, client_for: Clients, officer62: Account, smtp: SmtpSink
) -> None:
    # Given a damaged file whose download was refused, alerted and mailed at once
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id, file_id = damaged_deposit(
        app, sender, world, DAMAGES["byte flipped in the first segment"]
    )
    for _ in range(2):
        assert recipient.get(web_link(recipient, deposit_id, file_id)).status_code == 502
    # When the alert job runs
    with app.app_context():
        svc = services()
        report = run_alert_job(db.session, svc.settings, svc.mailer, utcnow(), audit.NO_CONTEXT)
    # Then the second failure was folded into the one alert, and nobody is mailed twice
    assert report.raised == 0 and report.mails_sent == 0
    with app.app_context():
        [alert] = db.session.execute(sa.select(SecurityAlert)).scalars()
        assert alert.occurrences == 2
        alert_id = alert.id
    assert len(smtp.to(officer62.email)) == 1
    assert len(audit_rows(app, AuditAction.STORAGE_INTEGRITY_FAILED)) == 2
    # And the officer's page of the alert names the file, its deposit and the object
    page = client_for(officer62).get(f"/securite/alertes/{alert_id}").get_data(as_text=True)
    assert "Fichier stocké altéré ou endommagé" in page
    assert f"fichier stocké <code>{file_id}</code>" in page and deposit_id in page


def test_a_sound_download_writes_its_receipt_only_after_the_last_byte(
    app: Flask, world: World, client_for: Clients
) -> None:
    # Given a sound deposit of several segments, being downloaded
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id = sent_deposit(sender, [world.ft62], files={"gros.pdf": BIG_PDF})
    [file_id] = file_ids(app, deposit_id)
    response = recipient.get(web_link(recipient, deposit_id, file_id))
    body = iter(response.response)
    received = [next(body), next(body)]
    # While bytes are still to come, the sender is not told it was received
    assert audit_rows(app, AuditAction.DEPOSIT_DOWNLOADED) == []
    with app.app_context():
        assert db.session.execute(sa.select(DownloadReceipt)).first() is None
    # Once the last byte is sent, it is
    received.extend(body)
    assert b"".join(received) == BIG_PDF
    [row] = audit_rows(app, AuditAction.DEPOSIT_DOWNLOADED)
    assert row.outcome == Outcome.SUCCESS
    with app.app_context():
        assert len(db.session.execute(sa.select(DownloadReceipt)).all()) == 1


def test_a_download_cut_off_by_the_client_is_no_receipt(
    app: Flask, world: World, client_for: Clients
) -> None:
    # Given a sound deposit whose download the client abandons after the first segment
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id = sent_deposit(sender, [world.ft62], files={"gros.pdf": BIG_PDF})
    [file_id] = file_ids(app, deposit_id)
    response = recipient.get(web_link(recipient, deposit_id, file_id))
    first = next(iter(response.response))
    response.close()
    # Then the trail has a failed download with what was sent, and there is no receipt
    [row] = audit_rows(app, AuditAction.DEPOSIT_DOWNLOADED)
    assert row.outcome == Outcome.FAILURE
    assert json.loads(row.details)["reason"] == "interrupted"
    assert json.loads(row.details)["bytes_sent"] == len(first) < len(BIG_PDF)
    with app.app_context():
        assert db.session.execute(sa.select(DownloadReceipt)).first() is None


# --- the API --------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["byte flipped in a later segment", "first segments swapped"])
def test_a_damaged_file_is_never_recorded_as_received_on_the_api(
    app: Flask,
    world: World,
    client_for: Clients,
    officer62: Account,
    smtp: SmtpSink,
    damage: str,
) -> None:
    # Given a damaged stored file, and a script of France Travail with a read token
    deposit_id, file_id = damaged_deposit(app, client_for(world.agent62), world, DAMAGES[damage])
    script = bare_client(app)
    token = make_token(app, world.adviser_ft, ("read",))
    smtp.clear()
    # When the script downloads the file
    response = script.get(
        f"/api/v1/deposits/{deposit_id}/files/{file_id}/content",
        headers={"Authorization": f"Bearer {token}"},
    )
    if DAMAGES[damage].is_before_first_byte:
        # Then a problem document says the file is damaged
        assert response.status_code == 502
        assert response.mimetype == "application/problem+json"
        problem = response.get_json(force=True)
        assert problem["code"] == "file_corrupted" and "endommagé" in problem["detail"]
    else:
        assert response.status_code == 200
        with pytest.raises(storage.ObjectCorrupted):
            response.get_data()
    # And the trail, the alert and the absent receipt say so
    assert_reported_not_received(app, file_id, DAMAGES[damage].segment, officer62, smtp)


# --- a real server and a real HTTP client ---------------------------------------------

FILR = Path(sys.executable).with_name("filr")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def filr_serve(settings: Settings, app: Flask, tmp_path: Path) -> Iterator[str]:
    """`filr serve` (gunicorn, as in production) on the test's database and store."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILR_")}
    env.update(
        FILR_DATA_DIR=str(settings.data_dir),
        FILR_DATABASE_URL=settings.database_url,
        FILR_SECRET_KEY=settings.secret_key,
        FILR_STORAGE_URL=settings.storage_url,
        FILR_MASTER_KEY_FILE=str(settings.master_key_file),
        FILR_BASE_URL=settings.base_url,
        FILR_SMTP_HOST=settings.smtp_host or "",
        FILR_SMTP_PORT=str(settings.smtp_port),
        FILR_CLAMD_URL=settings.clamd_url,
        FILR_ALLOW_SUPERUSER="1",  # the test database's owner serves here
        XDG_RUNTIME_DIR=str(tmp_path),
        **{
            f"FILR_{name.upper()}": value
            for name in ("s3_endpoint_url", "s3_region", "s3_access_key", "s3_secret_key")
            if (value := getattr(settings, name))
        },
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(FILR), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/sante")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
            finally:
                connection.close()
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_a_real_client_of_gunicorn_sees_the_damaged_download_cut_off(
    app: Flask,
    world: World,
    client_for: Clients,
    officer62: Account,
    smtp: SmtpSink,
    filr_serve: str,
) -> None:
    # Given a file damaged in a later segment, served by gunicorn
    damage = DAMAGES["byte flipped in a later segment"]
    deposit_id, file_id = damaged_deposit(app, client_for(world.agent62), world, damage)
    token = make_token(app, world.adviser_ft, ("read",))
    smtp.clear()
    # When a real HTTP client downloads it
    address = urlsplit(filr_serve)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    try:
        connection.request(
            "GET",
            f"/api/v1/deposits/{deposit_id}/files/{file_id}/content",
            headers={"Authorization": f"Bearer {token}"},
        )
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Length") == str(len(BIG_PDF))
        # Then the transfer is cut off after the sound segments: never a clean short body
        with pytest.raises(http.client.IncompleteRead) as cut:
            response.read()
    finally:
        connection.close()
    assert cut.value.partial == BIG_PDF[: damage.segment * SEGMENT]
    # And the failure is audited, alerted at once and mailed, with no receipt
    assert_reported_not_received(app, file_id, damage.segment, officer62, smtp)


def test_a_real_client_of_gunicorn_gets_a_sound_file_whole_then_the_receipt(
    app: Flask, world: World, client_for: Clients, filr_serve: str
) -> None:
    # Given a sound file of several segments, served by gunicorn (which sends the plaintext from
    # a few reused buffers: portal.serving)
    sender = client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.ft62], files={"gros.pdf": BIG_PDF})
    [file_id] = file_ids(app, deposit_id)
    token = make_token(app, world.adviser_ft, ("read",))
    # When a real HTTP client downloads it twice on one connection
    address = urlsplit(filr_serve)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    try:
        for _ in range(2):
            connection.request(
                "GET",
                f"/api/v1/deposits/{deposit_id}/files/{file_id}/content",
                headers={"Authorization": f"Bearer {token}"},
            )
            response = connection.getresponse()
            # Then it gets every byte, exactly, and the connection stays usable
            assert response.status == 200
            assert response.read() == BIG_PDF
        # (the next request on the connection is answered once the last one was recorded)
        connection.request("GET", "/sante")
        assert connection.getresponse().read()
    finally:
        connection.close()
    # And each download is received, with its receipt
    rows = audit_rows(app, AuditAction.DEPOSIT_DOWNLOADED)
    assert [row.outcome for row in rows] == [Outcome.SUCCESS] * 2
    with app.app_context():
        assert len(db.session.execute(sa.select(DownloadReceipt)).all()) == 2
