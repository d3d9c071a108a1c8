"""API tests run on both stacks, as the deposit tests do (SQLite + directory, PostgreSQL + S3)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import audit
from portal.accounts.models import User
from portal.api import services as tokens
from portal.db import db
from tests.deposits.conftest import (  # noqa: F401 - fixtures re-exported for this package
    PDF,
    client_for,
    deposits_seaweedfs,
    settings,
    world,
)
from tests.factories import Account, Api

BOTH = ("read", "deposit")


def bare_client(app: Flask) -> FlaskClient:
    """A client from the documentation's address range, with no cookie."""
    client = app.test_client(use_cookies=False)
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    return client


def make_token(app: Flask, account: Account, scopes: Iterable[str] = BOTH, days: int = 90) -> str:
    """A token created by the service directly (the pages are tested on their own)."""
    with app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        _, secret = tokens.create_token(
            db.session, user, name="Script de test", scopes=scopes, lifetime_days=days,
            ctx=audit.NO_CONTEXT,
        )  # fmt: skip
        db.session.commit()
    return secret


@pytest.fixture
def api_for(app: Flask) -> Callable[..., Api]:
    """A script authenticated as *account* with *scopes*."""

    def make(account: Account, scopes: Iterable[str] = BOTH) -> Api:
        return Api(bare_client(app), make_token(app, account, scopes))

    return make


def new_deposit(api: Api, recipients: list[str], **fields: Any) -> str:
    """Create a draft through the API; returns its id."""
    body = {
        "departement": "62",
        "category": "document",
        "title": "Documents semaine 47",
        "recipients": recipients,
        **fields,
    }
    response = api.post("/api/v1/deposits", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    deposit_id: str = response.json["id"]  # type: ignore[index]
    return deposit_id


def sent_deposit(api: Api, recipients: list[str], files: dict[str, bytes] | None = None,
                 **fields: Any) -> str:  # fmt: skip
    """Create, upload and publish through the API; returns the deposit id."""
    deposit_id = new_deposit(api, recipients, **fields)
    for name, content in (files or {"fiche.pdf": PDF}).items():
        response = api.upload(deposit_id, name, content)
        assert response.status_code == 201, response.get_data(as_text=True)
    response = api.post(f"/api/v1/deposits/{deposit_id}/publish")
    assert response.status_code == 200, response.get_data(as_text=True)
    return deposit_id


def assert_problem(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem document with *status* and *code*; returns its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status and body["code"] == code, body
    assert body["title"] and body["detail"] and body["type"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return dict(body)
