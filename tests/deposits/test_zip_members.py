"""Archives through the real upload routes (the page and the API, on both stacks): a ZIP is
refused when one of its files would be refused on its own, and a refused archive leaves
nothing behind."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from audit import AuditAction
from portal.container import services
from portal.db import db
from portal.deposits.models import Deposit, DepositFile
from tests.api.conftest import assert_problem, bare_client, make_token, new_deposit
from tests.conftest import audit_rows
from tests.deposits.conftest import create_deposit, upload
from tests.factories import Account, Api, World
from tests.filecheck.samples import (
    CSV_UTF8,
    HTML_SCRIPT,
    MZ_PE,
    PDF,
    SVG_SCRIPT,
    XML_LATIN1,
    docx,
    odf,
    streamed_zip,
    with_hidden_member,
    xlsx,
    zip_of,
)

Clients = Callable[[Account], FlaskClient]
Send = Callable[[str, bytes], TestResponse]

# Folder and file names carry a person's name, as real ones do: it must never come back.
FOLDER = "Dupont Jean"
BAD_MEMBERS = {
    "setup.pdf made of MZ/PE bytes": ("setup.pdf", MZ_PE),
    "page.txt holding HTML with a script": ("page.txt", HTML_SCRIPT),
    "page.pdf holding HTML with a script": ("page.pdf", HTML_SCRIPT),
    "i.xml holding an SVG with a script": ("i.xml", SVG_SCRIPT),
    "a nested ZIP with a bad member, named .docx": ("annexe.docx", zip_of(("setup.pdf", MZ_PE))),
    "a nested ZIP with a bad member, named .pdf": ("annexe.pdf", zip_of(("page.txt", HTML_SCRIPT))),
}


def sender(channel: str, app: Flask, world: World, client_for: Clients) -> tuple[str, Send]:
    """A draft of agent 62 and a way to upload to it, through the page or through the API."""
    if channel == "page":
        client = client_for(world.agent62)
        deposit_id = create_deposit(client, [world.ft62])
        return deposit_id, lambda name, data: upload(client, deposit_id, name, data)
    api = Api(bare_client(app), make_token(app, world.agent62))
    deposit_id = new_deposit(api, [world.ft62])
    return deposit_id, lambda name, data: api.upload(deposit_id, name, data)


def refusal_of(channel: str, response: TestResponse) -> str:
    """The French message of a 422, from the page's JSON or the API's problem document."""
    if channel == "page":
        assert response.status_code == 422, response.get_data(as_text=True)
        assert response.json is not None
        message: str = response.json["error"]
        return message
    return str(assert_problem(response, 422, "file_refused")["detail"])


def stored_files(app: Flask) -> tuple[list[DepositFile], list[str]]:
    """The file rows and the objects of every deposit."""
    with app.app_context():
        rows = list(db.session.execute(sa.select(DepositFile)).scalars())
        db.session.expunge_all()
        db.session.commit()
        return rows, list(services().store.inner.list("deposits/"))


@pytest.mark.parametrize("channel", ["page", "api"])
def test_zip_holding_a_file_refused_on_its_own_is_422_and_leaves_nothing(
    app: Flask, world: World, client_for: Clients, channel: str
) -> None:
    deposit_id, send = sender(channel, app, world, client_for)
    for case, (name, data) in BAD_MEMBERS.items():
        # Given bytes that the portal refuses as a file on their own
        alone = refusal_of(channel, send(name, data))

        # When they are the second file of an archive, after a good one
        archive = zip_of((f"{FOLDER}/lettre.pdf", PDF), (f"{FOLDER}/{name}", data))
        message = refusal_of(channel, send("pieces.zip", archive))

        # Then the archive is refused, saying which file by its position, and why
        assert message == (
            f"Archive ZIP refusée : le fichier n° 2 qu'elle contient est refusé. {alone}"
        ), case
        assert "Dupont" not in message, case

    # And nothing was stored
    assert stored_files(app) == ([], [])
    assert_draft_without_files(app, deposit_id)


@pytest.mark.parametrize("channel", ["page", "api"])
def test_refused_archive_leaves_nothing_whether_refused_midway_or_at_its_end(
    app: Flask, world: World, client_for: Clients, channel: str
) -> None:
    deposit_id, send = sender(channel, app, world, client_for)
    # Given an archive whose bad file comes after 3 MiB already sent to the store
    big = PDF + random.Random(4).randbytes(3 * 1024 * 1024)
    late = zip_of(("annexe.pdf", big), ("page.txt", HTML_SCRIPT), stored=True)
    # And one whose files are all good, with a file hidden from its central directory
    hidden = with_hidden_member(zip_of(("lettre.pdf", PDF)), "page.txt", b"bonjour")

    # When they are sent, Then both are refused
    assert "fichier n° 2" in refusal_of(channel, send("pieces.zip", late))
    assert refusal_of(channel, send("pieces.zip", hidden)) == (
        "Archive ZIP refusée : elle est endommagée ou mal formée."
    )

    # And no row, no object is left, and the trail has the reason without any name
    assert stored_files(app) == ([], [])
    refused = audit_rows(app, AuditAction.DEPOSIT_FILE_REFUSED)
    assert "zip_invalid" in [json.loads(row.details)["reason"] for row in refused]
    assert not any("page" in row.details for row in refused)
    assert_draft_without_files(app, deposit_id)


@pytest.mark.parametrize("channel", ["page", "api"])
def test_zip_of_checked_files_and_office_documents_are_still_accepted(
    app: Flask, world: World, client_for: Clients, channel: str
) -> None:
    _, send = sender(channel, app, world, client_for)
    files = {
        "pieces.zip": zip_of(
            (f"{FOLDER}/", b""),
            (f"{FOLDER}/lettre.pdf", PDF),
            (f"{FOLDER}/suivi.csv", CSV_UTF8),
            (f"{FOLDER}/flux.xml", XML_LATIN1),
            (f"{FOLDER}/courrier.docx", docx()),
            (f"{FOLDER}/budget.xlsx", xlsx()),
            (f"{FOLDER}/vide.txt", b""),
        ),
        "export.zip": streamed_zip(("suivi.csv", CSV_UTF8), ("lettre.pdf", PDF)),
        "courrier.docx": docx(),
        "budget.xlsx": xlsx(),
        "courrier.odt": odf("text"),
    }

    for name, data in files.items():
        response = send(name, data)
        assert response.status_code == 201, (name, response.get_data(as_text=True))

    rows, objects = stored_files(app)
    assert sorted(row.filename for row in rows) == sorted(files)
    assert {row.content_type for row in rows if row.filename.endswith(".zip")} == {
        "application/zip"
    }
    assert len(objects) == len(files)


def assert_draft_without_files(app: Flask, deposit_id: str) -> None:
    with app.app_context():
        deposit = db.session.get(Deposit, deposit_id)
        assert deposit is not None and deposit.files == [] and deposit.status == "draft"
        db.session.commit()
