"""A scripted scenario on PostgreSQL: exactly one audit row per event, every field filled.

Failed log-ins, log-in with MFA, deposit, link, download, expired link, a foreign département's
attempt, withdrawal, account suspension and the purge, behind a trusted reverse proxy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

import audit
from audit import AuditAction, AuditEvent
from portal.accounts.models import Role
from portal.cli import main
from portal.db import db, utcnow
from portal.deposits.models import Deposit
from portal.orgs.models import OrgKind
from portal.settings import Settings
from tests.conftest import csrf_of, login, reset_totp_step
from tests.deposits.conftest import file_ids, sent_deposit
from tests.factories import Account, Factory

pytestmark = pytest.mark.postgres

PROXY = "10.0.0.5"
NASTY_UA = "Mozilla/5.0\r\nX-Injected: 1\x1b[2J\x07" + "A" * 3000


@pytest.fixture
def backend() -> str:
    """The scenario is the PostgreSQL acceptance test of issue 5."""
    return "postgres"


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The portal behind one trusted reverse proxy."""
    return make_app(trusted_proxy_count=1)


class Trail:
    """Reads the rows added since the previous read."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.last = 0

    def new(self) -> list[AuditEvent]:
        with self.app.app_context():
            rows = list(
                db.session.execute(
                    sa.select(AuditEvent).where(AuditEvent.seq > self.last).order_by(AuditEvent.seq)
                ).scalars()
            )
            db.session.expunge_all()
        if rows:
            self.last = rows[-1].seq
        return rows


def browser(app: Flask, ip: str, user_agent: str = "Mozilla/5.0 (scenario)") -> FlaskClient:
    """A client behind the proxy: the proxy appends the real address to X-Forwarded-For."""
    client = app.test_client()
    client.environ_base.update(
        {
            "REMOTE_ADDR": PROXY,
            # A forged first entry sent by the browser itself, then the proxy's own entry.
            "HTTP_X_FORWARDED_FOR": f"6.6.6.6, {ip}",
            "HTTP_X_FORWARDED_PROTO": "https",
            "HTTP_USER_AGENT": user_agent,
            "HTTP_REFERER": "https://localhost/",
        }
    )
    return client


def log_in(app: Flask, client: FlaskClient, account: Account) -> None:
    reset_totp_step(app, account)
    response = login(client, account)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]


def check(
    row: AuditEvent,
    action: AuditAction,
    *,
    actor: Account | None,
    target: tuple[str, str | None, str | None] | None,
    outcome: str = "success",
    ip: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Every field of *row*: time, actor, target, outcome, IP, user agent, request id, details."""
    assert row.action == action
    assert abs(row.occurred_at - utcnow()) < timedelta(minutes=5)
    assert (row.actor_id, row.actor_org_id) == ((actor.id, actor.org_id) if actor else (None, None))
    if target is not None:
        assert (row.target_type, row.target_id, row.target_departement) == target
    assert row.outcome == outcome
    assert row.source_ip == ip
    assert row.user_agent and row.request_id
    assert len(row.hash) == 64 and len(row.prev_hash) == 64
    parsed = json.loads(row.details)
    if details is not None:
        assert details.items() <= parsed.items(), (details, parsed)


def test_scripted_scenario_writes_exactly_one_complete_row_per_event(
    app: Flask, factory: Factory, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cd62 = factory.org(OrgKind.DEPARTEMENT, "62", name="CD 62")
    cd59 = factory.org(OrgKind.DEPARTEMENT, "59", name="CD 59")
    ft62 = factory.org(OrgKind.FRANCE_TRAVAIL, None, ("62",), name="FT 62")
    sender = factory.user(cd62, (Role.AGENT,))
    colleague = factory.user(cd62, (Role.AGENT,))
    manager = factory.user(cd62, (Role.GESTIONNAIRE,))
    adviser = factory.user(ft62, (Role.AGENT,))
    foreign = factory.user(cd59, (Role.AGENT,))
    trail = Trail(app)
    assert trail.new() == []  # the factories write straight to the database

    # 1. Failed log-ins: a bad password, an unknown account, a bad TOTP code
    s = browser(app, "203.0.113.21", NASTY_UA)
    reset_totp_step(app, sender)
    assert login(s, sender, password="not the password").status_code == 200
    unknown = Account("", "nobody@example.org", "whatever-password", sender.totp_secret, "")
    assert login(s, unknown).status_code == 200
    assert login(s, sender, code="000000" if sender.code() != "000000" else "111111").status_code
    rows = trail.new()
    assert [r.action for r in rows] == [
        AuditAction.AUTH_LOGIN_FAILURE,
        AuditAction.AUTH_LOGIN_FAILURE,
        AuditAction.AUTH_MFA_FAILURE,
    ]
    ip = "203.0.113.21"
    check(
        rows[0],
        AuditAction.AUTH_LOGIN_FAILURE,
        actor=sender,
        target=None,
        outcome="failure",
        ip=ip,
        details={"reason": "bad_password"},
    )
    check(
        rows[1],
        AuditAction.AUTH_LOGIN_FAILURE,
        actor=None,
        target=None,
        outcome="failure",
        ip=ip,
        details={"reason": "unknown_account"},
    )
    check(
        rows[2],
        AuditAction.AUTH_MFA_FAILURE,
        actor=sender,
        target=None,
        outcome="failure",
        ip=ip,
        details={"reason": "bad_code"},
    )
    # Injection characters are stored as data, the value bounded
    assert rows[0].user_agent is not None
    assert rows[0].user_agent.startswith("Mozilla/5.0\r\nX-Injected: 1\x1b[2J\x07AAA")
    assert len(rows[0].user_agent) == 512 and rows[0].user_agent.endswith("…")

    # 2. Log-in with password and TOTP: the second factor, then the log-in
    log_in(app, s, sender)
    rows = trail.new()
    assert [r.action for r in rows] == [
        AuditAction.AUTH_MFA_SUCCESS,
        AuditAction.AUTH_LOGIN_SUCCESS,
    ]
    for row in rows:
        check(row, AuditAction(row.action), actor=sender, target=None, ip=ip)

    # 3. A deposit of 62 for France Travail: created, one file, sent (and its notification)
    deposit_id = sent_deposit(s, [ft62])
    file_id = file_ids(app, deposit_id)[0]
    rows = trail.new()
    assert [r.action for r in rows] == [
        AuditAction.DEPOSIT_CREATED,
        AuditAction.DEPOSIT_FILE_UPLOADED,
        AuditAction.DEPOSIT_PUBLISHED,
        AuditAction.DEPOSIT_NOTIFICATION_SENT,
    ]
    check(
        rows[0],
        AuditAction.DEPOSIT_CREATED,
        actor=sender,
        target=("deposit", deposit_id, "62"),
        ip=ip,
        details={"category": "document", "recipients": 1},
    )
    check(
        rows[1],
        AuditAction.DEPOSIT_FILE_UPLOADED,
        actor=sender,
        target=("file", file_id, "62"),
        ip=ip,
        details={"deposit_id": deposit_id},
    )
    check(
        rows[2],
        AuditAction.DEPOSIT_PUBLISHED,
        actor=sender,
        target=("deposit", deposit_id, "62"),
        ip=ip,
        details={"files": 1},
    )
    check(
        rows[3],
        AuditAction.DEPOSIT_NOTIFICATION_SENT,
        actor=sender,
        target=("deposit", deposit_id, "62"),
        ip=ip,
    )

    # 4. The adviser logs in and asks for a link
    a_ip = "198.51.100.40"
    a = browser(app, a_ip)
    log_in(app, a, adviser)
    assert [r.action for r in trail.new()] == [
        AuditAction.AUTH_MFA_SUCCESS,
        AuditAction.AUTH_LOGIN_SUCCESS,
    ]
    token = csrf_of(a, f"/depots/{deposit_id}")
    link = a.post(f"/depots/{deposit_id}/fichiers/{file_id}/lien", data={"csrf_token": token})
    assert link.status_code == 302
    (row,) = trail.new()
    check(
        row,
        AuditAction.DEPOSIT_LINK_ISSUED,
        actor=adviser,
        target=("file", file_id, "62"),
        ip=a_ip,
        details={"deposit_id": deposit_id},
    )

    # 5. The download: one row before the first byte, then (the body read) the receipt's row
    response = a.get(link.headers["Location"])
    assert response.status_code == 200 and response.get_data()
    (started, row) = trail.new()
    check(
        started,
        AuditAction.DEPOSIT_DOWNLOAD_STARTED,
        actor=adviser,
        target=("file", file_id, "62"),
        ip=a_ip,
        details={"deposit_id": deposit_id},
    )
    check(
        row,
        AuditAction.DEPOSIT_DOWNLOADED,
        actor=adviser,
        target=("file", file_id, "62"),
        ip=a_ip,
        details={"deposit_id": deposit_id},
    )

    # 6. An expired link (signed ten minutes ago)
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 600

    old = URLSafeTimedSerializer(
        app.config["SECRET_KEY"], salt="filr.download-link.v1", signer=Past
    ).dumps({"u": adviser.id, "f": file_id, "d": "62", "p": "download"})
    assert a.get(f"/telechargement/{old}").status_code == 404
    (row,) = trail.new()
    check(
        row,
        AuditAction.DEPOSIT_LINK_REFUSED,
        actor=adviser,
        target=("file", file_id, "62"),
        outcome="denied",
        ip=a_ip,
        details={"reason": "expired"},
    )
    assert old not in row.details and old not in (row.target_id or "")

    # 7. A user of 59 tries the deposit of 62: 404, and one refusal row
    f_ip = "192.0.2.59"
    f = browser(app, f_ip)
    log_in(app, f, foreign)
    trail.new()
    assert f.get(f"/depots/{deposit_id}").status_code == 404
    (row,) = trail.new()
    check(
        row,
        AuditAction.ACCESS_DENIED,
        actor=foreign,
        target=("deposit", deposit_id, "62"),
        outcome="denied",
        ip=f_ip,
        details={"reason": "not_visible"},
    )

    # 8. The sender withdraws the deposit: withdrawn, then its content destroyed
    token = csrf_of(s, f"/depots/{deposit_id}")
    assert s.post(f"/depots/{deposit_id}/retirer", data={"csrf_token": token}).status_code == 302
    rows = trail.new()
    assert [r.action for r in rows] == [
        AuditAction.DEPOSIT_WITHDRAWN,
        AuditAction.DEPOSIT_DESTROYED,
    ]
    check(
        rows[0],
        AuditAction.DEPOSIT_WITHDRAWN,
        actor=sender,
        target=("deposit", deposit_id, "62"),
        ip=ip,
    )
    check(
        rows[1],
        AuditAction.DEPOSIT_DESTROYED,
        actor=sender,
        target=("deposit", deposit_id, "62"),
        ip=ip,
        details={"reason": "withdrawn", "files": 1},
    )

    # 9. The manager suspends the colleague
    m_ip = "203.0.113.62"
    m = browser(app, m_ip)
    log_in(app, m, manager)
    trail.new()
    token = csrf_of(m, f"/gestion/comptes/{colleague.id}")
    response = m.post(f"/gestion/comptes/{colleague.id}/suspendre", data={"csrf_token": token})
    assert response.status_code == 302
    (row,) = trail.new()
    check(
        row,
        AuditAction.ACCOUNT_SUSPENDED,
        actor=manager,
        target=("user", colleague.id, "62"),
        ip=m_ip,
    )

    # 10. The purge destroys an expired deposit, and the job records its run
    expiring = sent_deposit(s, [ft62], title="Second envoi")
    trail.new()
    with app.app_context():
        db.session.execute(
            sa.update(Deposit)
            .where(Deposit.id == expiring)
            .values(
                created_at=utcnow() - timedelta(days=2),
                published_at=utcnow() - timedelta(days=2),
                expires_at=utcnow() - timedelta(minutes=1),
            )
        )
        db.session.commit()
    for key, value in {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_STORAGE_URL": settings.storage_url,
        "FILR_MASTER_KEY_FILE": str(settings.master_key_file),
        "FILR_BASE_URL": settings.base_url,
    }.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["jobs", "purge"])
    assert result.exit_code == 0, result.output
    rows = trail.new()
    assert [r.action for r in rows] == [
        AuditAction.DEPOSIT_EXPIRED,
        AuditAction.DEPOSIT_DESTROYED,
        AuditAction.JOB_RUN,
    ]
    for row in rows:
        # Jobs run from the command line: no actor, no network address, but a request id
        assert row.actor_id is None and row.source_ip is None
        assert row.user_agent == "filr-cli" and row.request_id
    assert (rows[1].target_id, rows[1].target_departement) == (expiring, "62")
    assert json.loads(rows[1].details) == {"reason": "expired", "files": 1}
    assert json.loads(rows[2].details)["expired"] == 1

    # The forged X-Forwarded-For entry never reached the trail, and the chain verifies
    with app.app_context():
        ips = set(db.session.execute(sa.select(AuditEvent.source_ip)).scalars())
        assert "6.6.6.6" not in ips and PROXY not in ips
        assert audit.verify_chain(db.session).is_valid
