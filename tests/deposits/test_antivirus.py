"""The antivirus at upload, on the session's real clamd: detections refused, clean files pass."""

from __future__ import annotations

import io
import json
import zipfile

import sqlalchemy as sa
from flask import Flask

from portal.container import services
from portal.db import db
from portal.deposits.models import Deposit, DepositFile, DepositStatus, ScanStatus
from portal.securite.models import AlertKind, SecurityAlert
from tests.conftest import audit_rows, reread
from tests.deposits.conftest import PDF, create_deposit, publish, upload
from tests.factories import World
from tests.flows.conftest import ClientFor
from tests.support.clamd import EICAR, EICAR_SIGNATURE, FILR_SIGNATURE, FILR_TEST_STRING
from tests.support.pdf import make_pdf


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _docx(extra: bytes) -> bytes:
    return _zip(
        {
            "[Content_Types].xml": b'<?xml version="1.0"?><Types/>',
            "_rels/.rels": b'<?xml version="1.0"?><Relationships/>',
            "word/document.xml": b'<?xml version="1.0"?><w:document/>',
            "word/media/image1.png": extra,
        }
    )


def _alerts(app: Flask) -> list[SecurityAlert]:
    with app.app_context():
        rows = list(db.session.execute(sa.select(SecurityAlert)).scalars())
        db.session.expunge_all()
        return rows


def _stored(app: Flask) -> list[str]:
    with app.app_context():
        return list(services().store.inner.list("deposits/"))


def test_eicar_uploaded_on_the_web_is_refused_by_name_destroyed_audited_and_alerted(
    app: Flask, world: World, client_for: ClientFor
) -> None:
    # Given a draft of agent 62 for France Travail
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    # When the EICAR test file is uploaded as a text file
    response = upload(sender, deposit_id, "notes.txt", EICAR)
    # Then it is refused with a French message naming the signature
    assert response.status_code == 422
    message = response.get_json()["error"]
    assert f"l'antivirus y a détecté « {EICAR_SIGNATURE} »" in message
    # and nothing of it is kept: no file row, no object in the store
    with app.app_context():
        assert db.session.execute(sa.select(DepositFile)).first() is None
    assert _stored(app) == []
    # and the trail says which signature, in which file, without the file's name
    (infected,) = audit_rows(app, "deposit:file-infected")
    details = json.loads(infected.details)
    assert details["signature"] == EICAR_SIGNATURE and details["deposit_id"] == deposit_id
    assert "notes.txt" not in infected.details and infected.target_departement == "62"
    # and the security officers have an alert at once
    (alert,) = _alerts(app)
    assert alert.kind == AlertKind.MALWARE_DETECTED and alert.departement_code == "62"
    assert json.loads(alert.details)["signature"] == EICAR_SIGNATURE
    # and the draft cannot be sent without a file
    publish(sender, deposit_id)
    assert reread(app, Deposit, deposit_id).status == DepositStatus.DRAFT


def test_eicar_inside_a_zip_and_inside_an_ooxml_document_is_refused(
    app: Flask, world: World, client_for: ClientFor
) -> None:
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    # The archive's members pass the type checks (a text file, an image part): clamd unpacks.
    archive = _zip({"lisez-moi.txt": b"Bonjour", "dossier/notes.txt": EICAR})
    refused = upload(sender, deposit_id, "pieces.zip", archive)
    assert refused.status_code == 422, refused.get_data(as_text=True)
    assert EICAR_SIGNATURE in refused.get_json()["error"]
    document = upload(sender, deposit_id, "courrier.docx", _docx(EICAR))
    assert document.status_code == 422, document.get_data(as_text=True)
    assert EICAR_SIGNATURE in document.get_json()["error"]
    # The project's own signature, deep inside a PDF, is found as well
    carrying = make_pdf([b"<< >>"], streams={4: b"x" * 100_000 + FILR_TEST_STRING})
    inside = upload(sender, deposit_id, "fiche.pdf", carrying)
    assert inside.status_code == 422 and FILR_SIGNATURE in inside.get_json()["error"]
    assert len(audit_rows(app, "deposit:file-infected")) == 3
    assert _stored(app) == []
    # while the same containers without it pass, scanned clean
    assert upload(sender, deposit_id, "pieces.zip", _zip({"a.txt": b"Bonjour"})).status_code == 201
    assert upload(sender, deposit_id, "courrier.docx", _docx(b"image")).status_code == 201
    with app.app_context():
        statuses = db.session.execute(sa.select(DepositFile.scan_status)).scalars().all()
    assert statuses == [ScanStatus.CLEAN, ScanStatus.CLEAN]


def test_a_clean_file_is_scanned_and_published_at_once(
    app: Flask, world: World, client_for: ClientFor
) -> None:
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201
    assert publish(sender, deposit_id).status_code == 302
    deposit = reread(app, Deposit, deposit_id)
    assert deposit.status == DepositStatus.AVAILABLE and deposit.held_for_scan_at is None
    assert [f.scan_status for f in deposit.files] == [ScanStatus.CLEAN]
    assert audit_rows(app, "deposit:scan-deferred") == []
    assert audit_rows(app, "deposit:held-for-scan") == []
