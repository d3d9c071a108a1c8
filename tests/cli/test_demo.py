"""`filr demo`: idempotent demo accounts whose TOTP codes log in."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pyotp
import pytest
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


def test_demo_credentials_are_never_readable_by_others(
    cli_env: Settings, client: FlaskClient
) -> None:
    path = cli_env.data_dir / "secrets/demo-accounts.json"
    seen: list[int] = []
    real_chmod, real_fchmod = Path.chmod, os.fchmod

    # The mode the file had before any permission change: what it was created with.
    def spy_chmod(self: Path, mode: int, **kwargs: Any) -> None:
        if self == path:
            seen.append(stat.S_IMODE(path.stat().st_mode))
        real_chmod(self, mode, **kwargs)

    def spy_fchmod(fd: int, mode: int) -> None:
        if os.path.samestat(os.fstat(fd), path.stat()):
            seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fchmod(fd, mode)

    old_umask = os.umask(0)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Path, "chmod", spy_chmod)
            patch.setattr(os, "fchmod", spy_fchmod)
            filr(["demo"])
        assert seen and set(seen) == {0o600}
        # A file left readable by an older run is tightened as well.
        path.chmod(0o644)
        filr(["demo"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
