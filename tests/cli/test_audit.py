"""`filr audit verify`: its exit code follows the chain."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask

from audit import AuditEvent
from portal.db import db
from portal.settings import Settings
from tests.cli.conftest import filr


def test_audit_verify_exit_code_follows_the_chain(cli_env: Settings, app: Flask) -> None:
    filr(["orgs", "create", "--kind", "departement", "--departement", "68", "--name", "CD 68"])
    assert "intègre" in filr(["audit", "verify"]).output
    with app.app_context():
        db.session.execute(sa.update(AuditEvent).values(details='{"forged": true}'))
        db.session.commit()
    result = filr(["audit", "verify"], code=1)
    assert "n° 1" in result.output
