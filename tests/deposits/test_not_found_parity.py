"""A 404 for a deposit of another département does the same work as one for an unknown id.

Wall-clock probes told them apart (≈ 0.9 ms: the refused deposit was read with its files and
recipients); equal work is proved here by the SQL statements each request runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.db import db, new_id
from tests.api.conftest import bare_client, make_token
from tests.conftest import audit_rows, csrf_of
from tests.deposits.conftest import PDF, file_ids, sent_deposit
from tests.factories import Account, Api, World
from tests.support.statements import recorded_statements, without_session_upkeep

Request = Callable[[str], Any]


@pytest.fixture
def script_for(app: Flask) -> Callable[[Account], Api]:
    """An API script authenticated as an account (as tests/api's `api_for`)."""
    return lambda account: Api(bare_client(app), make_token(app, account))


def statements_of(app: Flask, ask: Request, target: str) -> tuple[int, list[str]]:
    """Status and SQL statements of one request about *target*."""
    with recorded_statements(db.bound(app).engine) as seen:
        response = ask(target)
    return response.status_code, without_session_upkeep(seen)


def assert_same_work(app: Flask, routes: dict[str, Request], unknown: str, foreign: str) -> None:
    """Each route answers 404 to both ids with the same statements; the trail tells them apart."""
    for name, ask in routes.items():
        # When the intruder asks for an id that exists nowhere, then for the real one of 62
        status_unknown, unknown_work = statements_of(app, ask, unknown)
        status_foreign, foreign_work = statements_of(app, ask, foreign)
        # Then both are the same 404, reached through the same statements
        assert (status_unknown, status_foreign) == (404, 404), name
        assert unknown_work == foreign_work, name
        assert any("deposit" in s for s in foreign_work), name  # the lookup was recorded
        # And the trail, which the intruder never reads, still tells the officer which is which
        *_, refused_unknown, refused_foreign = audit_rows(app, "access:denied")
        assert refused_unknown.target_departement is None, name
        assert json.loads(refused_unknown.details) == {"reason": "unknown"}, name
        assert (refused_foreign.target_id, refused_foreign.target_departement) == (foreign, "62")
        assert json.loads(refused_foreign.details) == {"reason": "not_visible"}, name


def test_web_routes_answer_an_unknown_id_and_a_deposit_of_62_with_the_same_statements(
    app: Flask, world: World, client_for: Callable[[Account], FlaskClient]
) -> None:
    # Given a deposit and a draft of 62, and an agent of 59 who probes the web routes
    sender = client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.ft62])
    file_id = file_ids(app, deposit_id)[0]
    intruder = client_for(world.agent59)
    form = {"csrf_token": csrf_of(intruder, "/")}
    upload = {"X-CSRFToken": form["csrf_token"], "X-Filename": "x.pdf"}
    intruder.get(f"/depots/{new_id()}")  # what a session does once is done before measuring
    routes: dict[str, Request] = {
        "show": lambda i: intruder.get(f"/depots/{i}"),
        "files": lambda i: intruder.get(f"/depots/{i}/fichiers"),
        "upload": lambda i: intruder.post(f"/depots/{i}/fichiers", data=PDF, headers=upload),
        "send": lambda i: intruder.post(f"/depots/{i}/envoyer", data=form),
        "link": lambda i: intruder.post(f"/depots/{i}/fichiers/{file_id}/lien", data=form),
        "withdraw": lambda i: intruder.post(f"/depots/{i}/retirer", data=form),
        "take": lambda i: intruder.post(f"/depots/{i}/prendre-en-charge", data=form),
    }
    assert_same_work(app, routes, new_id(), deposit_id)


def test_api_routes_answer_an_unknown_id_and_a_deposit_of_62_with_the_same_statements(
    app: Flask,
    world: World,
    client_for: Callable[[Account], FlaskClient],
    script_for: Callable[[Account], Api],
) -> None:
    # Given a deposit of 62, and a script of an agent of 59 that probes the API
    deposit_id = sent_deposit(client_for(world.agent62), [world.ft62])
    file_id = file_ids(app, deposit_id)[0]
    intruder = script_for(world.agent59)
    intruder.get(f"/api/v1/deposits/{new_id()}")  # the token's first use is recorded once
    upload = {"X-Filename": "x.pdf", "Content-Type": "application/octet-stream"}
    routes: dict[str, Request] = {
        "show": lambda i: intruder.get(f"/api/v1/deposits/{i}"),
        "upload": lambda i: intruder.post(f"/api/v1/deposits/{i}/files", data=PDF, headers=upload),
        "publish": lambda i: intruder.post(f"/api/v1/deposits/{i}/publish"),
        "content": lambda i: intruder.get(f"/api/v1/deposits/{i}/files/{file_id}/content"),
        "withdraw": lambda i: intruder.post(f"/api/v1/deposits/{i}/withdraw"),
    }
    assert_same_work(app, routes, new_id(), deposit_id)
