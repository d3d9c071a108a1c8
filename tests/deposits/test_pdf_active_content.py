"""PDFs with active content are refused at upload, with a French message, and nothing is kept."""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask

from portal.container import services
from portal.db import db
from portal.deposits.models import DepositFile
from tests.api.conftest import api_for, new_deposit  # noqa: F401 - the API's script fixture
from tests.conftest import audit_rows
from tests.deposits.conftest import PDF, create_deposit, upload
from tests.factories import Api, World
from tests.flows.conftest import ClientFor
from tests.support.pdf import make_pdf


def test_a_pdf_running_javascript_at_opening_is_refused_on_the_web(
    app: Flask, world: World, client_for: ClientFor
) -> None:
    # Given a draft, and a PDF whose opening runs a script
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    scripted = make_pdf(catalog_extra=b" /OpenAction << /S /JavaScript /JS (app.alert(1)) >>")
    # When it is uploaded
    response = upload(sender, deposit_id, "fiche.pdf", scripted)
    # Then it is refused with a French message, nothing is stored, and the trail says why
    assert response.status_code == 422
    assert "PDF refusé : il contient du code JavaScript" in response.get_json()["error"]
    with app.app_context():
        assert db.session.execute(sa.select(DepositFile)).first() is None
        assert list(services().store.inner.list("deposits/")) == []
    (refused,) = audit_rows(app, "deposit:file-refused")
    assert json.loads(refused.details)["reason"] == "pdf_javascript"
    # while a plain PDF passes
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201


def test_a_pdf_with_a_launch_action_is_refused_through_the_api(
    app: Flask,
    world: World,
    api_for: Callable[..., Api],  # noqa: F811 - imported fixture
) -> None:
    api = api_for(world.agent62)
    deposit_id = new_deposit(api, [world.ft62])
    launching = make_pdf(catalog_extra=b" /OpenAction << /S /Launch /F (calc.exe) >>")
    response = api.upload(deposit_id, "fiche.pdf", launching)
    assert response.status_code == 422
    body = response.get_json(force=True)
    assert body["code"] == "file_refused" and "/Launch" in body["detail"]
