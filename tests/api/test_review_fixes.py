"""Defects found by review: inbox paging, receipts, multipart spooling, hostile inputs."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from portal.accounts.models import User
from tests.api.conftest import new_deposit
from tests.api.conftest import sent_deposit as api_sent
from tests.conftest import csrf_of, reread
from tests.deposits.conftest import PDF, create_deposit, download, file_ids, sent_deposit
from tests.factories import World


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_the_received_box_pages_past_a_draft_that_was_never_sent(
    world: World, api_for: Callable[..., Any]
) -> None:
    # Given France Travail sending A then C to 62, and withdrawing a draft B never sent
    france_travail, agent = api_for(world.adviser_ft), api_for(world.agent62)
    first = api_sent(france_travail, [world.cd62], title="A")
    second = api_sent(france_travail, [world.cd62], title="C")
    draft = new_deposit(france_travail, [world.cd62], title="B")
    assert france_travail.post(f"/api/v1/deposits/{draft}/withdraw").status_code in (200, 204)
    # When the agent pages through the received box one deposit at a time
    seen: list[str] = []
    after = ""
    for _ in range(5):
        page = agent.get(f"/api/v1/deposits?box=received&limit=1{after}").json
        seen += [item["id"] for item in page["items"]]
        if not page["next"]:
            break
        after = f"&after={page['next']}"
    # Then both deposits it received are reached, and the draft never is
    assert sorted(seen) == sorted([first, second])


def test_only_the_sending_side_sees_who_downloaded(
    app: Flask, world: World, client_for: Callable[..., Any]
) -> None:
    # Given a deposit of 62 for France Travail and a provider; the provider's referent downloads
    sender = client_for(world.agent62)
    deposit_id = sent_deposit(sender, [world.ft62, world.provider62])
    referent = client_for(world.referent62)
    assert download(referent, deposit_id, file_ids(app, deposit_id)[0]).status_code == 200
    # Then France Travail's adviser does not learn it, the sender does
    name = reread(app, User, world.referent62.id).full_name
    adviser_page = client_for(world.adviser_ft).get(f"/depots/{deposit_id}").get_data(as_text=True)
    assert "Accusés de réception" not in adviser_page and name not in adviser_page
    sender_page = sender.get(f"/depots/{deposit_id}").get_data(as_text=True)
    assert 'id="receipts"' in sender_page and name in sender_page


def test_a_multipart_file_is_refused_without_touching_the_disk(
    world: World, client_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    spooled: list[object] = []
    real = tempfile.TemporaryFile

    def spy(*args: Any, **kwargs: Any) -> Any:
        spooled.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    token = csrf_of(sender, f"/depots/{deposit_id}/fichiers")
    big = PDF + b"%" + b"x" * 1_000_000  # above Werkzeug's 500 KB in-memory limit
    # The body is built here: the test client would spool a large multipart body itself.
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="file"; filename="fiche.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n" + big + b"\r\n--b0undary--\r\n"
    )
    response = sender.post(
        f"/depots/{deposit_id}/fichiers",
        data=body,
        headers={"X-CSRFToken": token, "X-Filename": "fiche.pdf"},
        content_type="multipart/form-data; boundary=b0undary",
    )
    assert response.status_code == 415
    assert spooled == []  # no plaintext temporary file was ever created


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/deposits?q=a%00b", 400),
        ("/api/v1/deposits/" + "a" * 31 + "%00", 404),
        ("/api/v1/deposits?after=" + _cursor(["2024-01-01T00:00:00", "a"]), 200),
        ("/api/v1/deposits?sort=title&after=" + _cursor(["a\u0000", "b"]), 422),
    ],
)
def test_hostile_api_inputs_get_a_precise_error_not_a_500(
    world: World, api_for: Callable[..., Any], path: str, expected: int
) -> None:
    response = api_for(world.adviser_ft).get(path)
    assert response.status_code == expected, response.get_data(as_text=True)


def test_hostile_web_inputs_and_deep_json_get_an_error_page_not_a_500(
    world: World, client_for: Callable[..., Any], api_for: Callable[..., Any]
) -> None:
    web = client_for(world.agent62)
    assert web.get("/depots?q=DUPONT%20Jean%00").status_code == 400
    assert web.get("/depots/" + "a" * 31 + "%00").status_code == 404
    assert web.get("/depots?apres=" + _cursor(["2024-01-01T00:00:00", "a"])).status_code == 200
    deep = api_for(world.adviser_ft).post(
        "/api/v1/deposits", data="[" * 200_000, content_type="application/json"
    )
    assert deep.status_code == 400 and deep.get_json()["code"] == "invalid_json"
