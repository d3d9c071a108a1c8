"""`filr demo`: idempotent demo accounts whose TOTP codes log in."""

from __future__ import annotations

import json

import pyotp
import sqlalchemy as sa
from flask.testing import FlaskClient

from portal.cli.demo import DEMO_NATIONAL
from portal.db import db
from portal.orgs.models import Organisation
from portal.settings import Settings
from tests.cli.conftest import filr
from tests.conftest import login
from tests.factories import Account


def test_demo_is_idempotent_and_its_codes_log_in(cli_env: Settings, client: FlaskClient) -> None:
    first = filr(["demo"]).output
    second = filr(["demo"]).output
    assert first.count("@demo.filr.localhost") == second.count("@demo.filr.localhost") == 15
    creds = json.loads((cli_env.data_dir / "secrets/demo-accounts.json").read_text())
    email = "gestionnaire.62@demo.filr.localhost"
    code = filr(["demo", "code", email]).output.strip()
    assert code == pyotp.TOTP(creds[email]["totp_secret"]).now()
    account = Account("", email, creds[email]["password"], creds[email]["totp_secret"], "")
    assert login(client, account, code=code).status_code == 302
    # And the national France Travail structure of the demo has the national scope
    with client.application.app_context():
        national = db.session.execute(
            sa.select(Organisation).where(Organisation.name == DEMO_NATIONAL)
        ).scalar_one()
        others = db.session.execute(
            sa.select(Organisation).where(Organisation.name != DEMO_NATIONAL)
        ).scalars()
        assert national.is_national and not any(o.is_national for o in others)
