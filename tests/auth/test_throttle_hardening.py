"""The log-in throttle holds against parallel bursts and slow second-factor guessing."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction
from portal.accounts.models import TokenPurpose, User
from portal.auth import services as auth_services
from portal.auth.services import issue_token
from portal.auth.throttle import Throttle
from portal.db import db
from portal.settings import Settings, SettingsError
from tests.conftest import audit_rows, csrf_of, https, login, reset_totp_step
from tests.factories import Account, Factory
from tests.support.services import REDIS_URL, body_of, port_open, unavailable
from tests.support.throttle import MemoryFailureStore

GENERIC = "Adresse électronique, mot de passe ou code incorrect."
LIMIT = 5
BURST = 4 * LIMIT
LINK = re.compile(r"https://filr\.test(/\S+)")


def _ip() -> str:
    # A fresh address per test: the Redis counters outlive a test (they expire in an hour).
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def _client(app: Flask, ip: str) -> FlaskClient:
    c = app.test_client()
    c.environ_base.update({"HTTP_REFERER": "https://localhost/", "REMOTE_ADDR": ip})
    return c


@pytest.fixture(params=["database", "redis"])
def slow_app(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Flask:
    """An app whose password hash takes real time (the race window), on either throttle store."""
    overrides: dict[str, Any] = {
        "argon2_time_cost": 2,
        "argon2_memory_kib": 32768,
        "throttle_account_per_minute": LIMIT,
        "throttle_ip_per_minute": LIMIT,
    }
    if request.param == "redis":
        if not port_open("127.0.0.1", 6379):
            unavailable("Redis on 127.0.0.1:6379")
        overrides["redis_url"] = REDIS_URL
    return make_app(**overrides)


def _burst(clients: list[FlaskClient], path: str, forms: list[dict[str, str]]) -> list[int]:
    """Post *forms* at once, one per client (each with its own CSRF token); the status codes."""
    tokens = [csrf_of(c, path) for c in clients]
    start = threading.Barrier(len(clients))

    def post(i: int) -> int:
        start.wait()
        return clients[i].post(path, data={"csrf_token": tokens[i], **forms[i]}).status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(post, range(len(clients))))


# --- 1. a burst of parallel attempts gets at most the limit evaluated -------------------
# The race shows on PostgreSQL (READ COMMITTED, one connection per request); on SQLite every
# transaction takes the write lock at BEGIN, which already serialises log-ins: the SQLite runs
# prove the fix does not break it.


def test_a_burst_evaluates_at_most_the_limit_and_later_entries_count_too() -> None:
    # Given attempts still running (counted, not yet answered), one of them stamped later
    # than the next by another server's clock
    throttle = Throttle(MemoryFailureStore())
    now = 1_000_000.0
    verdicts = [
        throttle.attempt("k", LIMIT, now + (0.5 if i == 0 else i * 0.001)) for i in range(9)
    ]
    # Then only the first LIMIT may be evaluated, and the refused ones are withdrawn
    assert [v.allowed for v in verdicts] == [True] * LIMIT + [False] * (9 - LIMIT)
    assert len(throttle.store.recent("k", 0)) == LIMIT


def test_parallel_wrong_passwords_on_one_account_evaluate_at_most_the_limit(
    slow_app: Flask, backend: str
) -> None:
    # Given an account (a fresh address: Redis counters outlive a test), and an attacker with
    # BURST connections from as many addresses
    factory = Factory(slow_app)
    account = factory.user(factory.org(), email=f"burst-{uuid.uuid4().hex[:8]}@example.org")
    clients = [_client(slow_app, _ip()) for _ in range(BURST)]
    forms = [
        {"email": account.email, "password": f"wrong password number {i}", "code": "123456"}
        for i in range(BURST)
    ]
    # When they all post a wrong password at the same moment
    codes = _burst(clients, "/connexion", forms)
    # Then at most LIMIT passwords were checked; the others waited without being evaluated
    assert codes.count(200) <= LIMIT, codes
    assert codes.count(200) + codes.count(429) == BURST
    assert len(audit_rows(slow_app, AuditAction.AUTH_LOGIN_FAILURE)) == codes.count(200)
    assert len(audit_rows(slow_app, AuditAction.AUTH_LOGIN_THROTTLED)) == codes.count(429)


def test_parallel_attempts_from_one_address_evaluate_at_most_its_limit(
    slow_app: Flask, backend: str
) -> None:
    # Given BURST log-in attempts from one address at as many unknown accounts (spraying)
    ip = _ip()
    clients = [_client(slow_app, ip) for _ in range(BURST)]
    forms = [
        {"email": f"spray{i}-{uuid.uuid4().hex[:6]}@example.org", "password": "Printemps2026!!"}
        | {"code": "123456"}
        for i in range(BURST)
    ]
    # When they arrive at the same moment
    codes = _burst(clients, "/connexion", forms)
    # Then the address had at most its limit evaluated
    assert codes.count(200) <= LIMIT, codes
    assert len(audit_rows(slow_app, AuditAction.AUTH_LOGIN_FAILURE)) == codes.count(200)


def test_parallel_wrong_passwords_on_an_mfa_enrolment_link_evaluate_at_most_the_limit(
    slow_app: Flask, backend: str
) -> None:
    # Given an MFA enrolment link in the wrong hands
    factory = Factory(slow_app)
    account = factory.user(factory.org())
    with slow_app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        raw = issue_token(db.session, user, TokenPurpose.MFA_ENROLMENT)
        db.session.commit()
    path = f"/mfa/enrolement/{raw}"
    clients = [_client(slow_app, _ip()) for _ in range(BURST)]
    # When BURST wrong passwords are posted to it at once
    codes = _burst(clients, path, [{"password": f"wrong guess {i}"} for i in range(BURST)])
    # Then at most LIMIT were checked against the password
    assert codes.count(200) <= LIMIT, codes
    checked = [
        r
        for r in audit_rows(slow_app, AuditAction.AUTH_REAUTH_FAILURE)
        if '"reason":"bad_password"' in (r.details or "")
    ]
    assert len(checked) == codes.count(200)


# --- 2. slow second-factor guessing meets a cumulative cap --------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[float], None]]:
    """The log-in's clock, moved forward by hand (the TOTP codes keep the real time)."""
    now = [time.time()]
    monkeypatch.setattr(auth_services, "time", SimpleNamespace(time=lambda: now[0]))

    def advance(seconds: float) -> None:
        now[0] += seconds

    yield advance


def _wrong_code(account: Account) -> str:
    valid = {account.code(offset) for offset in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def _normalised(html: str) -> str:
    html = re.sub(r'value="[^"]+"', "", html)
    return re.sub(r"[0-9a-f]{16}", "", html)


def _guess_slowly(app: Flask, account: Account, advance: Callable[[float], None]) -> None:
    """MFA_FAILURES_MAX wrong second factors, one every 16 s: never throttled per minute."""
    attacker = _client(app, _ip())
    maximum = app.config["FILR_SETTINGS"].mfa_failures_max
    for i in range(maximum):
        advance(16)
        if i == 0:  # a wrong recovery code counts too
            response = login(attacker, account, code="ABCD-EFGH-JKLM-NPQR")
        elif i == 1:  # and so does a replayed code
            with app.app_context():
                db.session.execute(
                    sa.update(User).where(User.id == account.id).values(totp_last_step=2**40)
                )
                db.session.commit()
            response = login(attacker, account)
            reset_totp_step(app, account)
        else:
            response = login(attacker, account, code=_wrong_code(account))
        assert response.status_code == 200, f"attempt {i} was throttled per minute"


def test_after_too_many_wrong_codes_even_the_right_code_is_refused_until_a_password_reset(
    app: Flask, clock: Callable[[float], None], smtp: Any
) -> None:
    factory = Factory(app)
    account = factory.user(factory.org())
    # Given an attacker with the password who tries one code every 16 s (MFA_FAILURES_MAX times)
    _guess_slowly(app, account, clock)
    # When the right code is presented (a lucky guess, or the real user)
    clock(16)
    lucky = login(_client(app, _ip()), account)
    clock(16)
    wrong = login(_client(app, _ip()), account, code=_wrong_code(account))
    # Then it is refused with the same answer as a wrong code, and audited as such
    assert lucky.status_code == 200
    assert GENERIC in lucky.get_data(as_text=True)
    assert _normalised(lucky.get_data(as_text=True)) == _normalised(wrong.get_data(as_text=True))
    refused = audit_rows(app, AuditAction.AUTH_LOGIN_THROTTLED)
    assert refused and all('"scope":"mfa_failures"' in r.details for r in refused)
    assert refused[0].actor_id == account.id
    assert audit_rows(app, AuditAction.AUTH_LOGIN_SUCCESS) == []
    # And a wrong password is still just a wrong password (the cap comes after the password)
    clock(16)
    login(_client(app, _ip()), account, password="not the password at all")
    assert '"reason":"bad_password"' in audit_rows(app, AuditAction.AUTH_LOGIN_FAILURE)[-1].details

    # When the person resets the password by e-mail
    person = https(app.test_client())
    person.post(
        "/mot-de-passe/oubli",
        data={"csrf_token": csrf_of(person, "/mot-de-passe/oubli"), "email": account.email},
    )
    path = LINK.findall(body_of(smtp.messages[-1]))[-1]
    new_password = "a brand new passphrase for the reset 7"
    person.post(
        path,
        data={
            "csrf_token": csrf_of(person, path),
            "password": new_password,
            "confirmation": new_password,
        },
    )
    # Then the account logs in again with the new password and the right code
    clock(60)
    reset_totp_step(app, account)
    assert login(_client(app, _ip()), account, password=new_password).status_code == 302


def test_a_successful_log_in_or_enrolment_starts_the_count_again(
    app: Flask, clock: Callable[[float], None]
) -> None:
    factory = Factory(app)
    account = factory.user(factory.org())
    maximum = app.config["FILR_SETTINGS"].mfa_failures_max
    person = _client(app, _ip())
    # Given MFA_FAILURES_MAX - 1 wrong codes, then a successful log-in
    for _ in range(maximum - 1):
        clock(16)
        assert login(person, account, code=_wrong_code(account)).status_code == 200
    clock(16)
    assert login(person, account).status_code == 302
    # When as many wrong codes follow, and then a new authenticator is enrolled
    for _ in range(maximum - 1):
        clock(16)
        login(_client(app, _ip()), account, code=_wrong_code(account))
    with app.app_context():
        audit.record(db.session, AuditAction.AUTH_MFA_ENROLLED, actor=audit.Actor(account.id, None))
        db.session.commit()
    for _ in range(maximum - 1):
        clock(16)
        login(_client(app, _ip()), account, code=_wrong_code(account))
    # Then the right code still logs in: no count reached the cap
    clock(16)
    reset_totp_step(app, account)
    assert login(_client(app, _ip()), account).status_code == 302
    assert audit_rows(app, AuditAction.AUTH_LOGIN_THROTTLED) == []


@pytest.mark.parametrize("value", [2, 101])
def test_mfa_failures_max_out_of_bounds_is_refused(value: int, tmp_path: Any) -> None:
    with pytest.raises(SettingsError, match="MFA_FAILURES_MAX"):
        Settings(
            secret_key="k" * 40,
            database_url="sqlite://",
            data_dir=tmp_path,
            storage_url=f"file://{tmp_path}",
            master_key_file=tmp_path / "master.key",
            mfa_failures_max=value,
        )
