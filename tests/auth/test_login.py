"""Log-in with password and mandatory TOTP: enumeration, replay, drift, throttling."""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Literal

import pytest
from argon2 import Parameters, PasswordHasher, extract_parameters
from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.accounts.models import AccountStatus
from portal.db import db
from tests.conftest import audit_rows, csrf_of, https, login, reset_totp_step
from tests.factories import Account, Factory
from tests.support.statements import recorded_statements, without_session_upkeep
from tests.support.throttle import MemoryFailureStore

GENERIC = "Adresse électronique, mot de passe ou code incorrect."


def _normalised(html: str) -> str:
    # Only the CSRF token, the request id and the echoed e-mail may differ between two answers.
    html = re.sub(r'value="[^"]+"', "", html)
    return re.sub(r"[0-9a-f]{16}", "", html)


def test_good_password_and_code_log_in_and_land_on_home(
    client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    response = login(client, account)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "Bonjour Alex Test" in home.get_data(as_text=True)


def test_unknown_user_wrong_password_and_wrong_code_get_the_same_answer(
    client: FlaskClient, factory: Factory
) -> None:
    # Given an active account
    account = factory.user(factory.org())
    # When three different things are wrong
    unknown = login(
        client, Account("x", "nobody@example.org", "whatever pass 123", account.totp_secret, "")
    )
    bad_password = login(client, account, password="wrong password but long")
    wrong_code = login(client, account, code="000000" if account.code() != "000000" else "111111")
    # Then the answers cannot be told apart
    bodies = {_normalised(r.get_data(as_text=True)) for r in (unknown, bad_password, wrong_code)}
    assert len(bodies) == 1
    assert {r.status_code for r in (unknown, bad_password, wrong_code)} == {200}
    assert GENERIC in next(iter(bodies))


def _login_as_stranger(client: FlaskClient, token: str, email: str) -> None:
    """Post a wrong password (and any code) for *email*."""
    response = client.post(
        "/connexion",
        data={
            "csrf_token": token,
            "email": email,
            "password": "wrong password but long",
            "code": "123456",
        },
    )
    assert GENERIC in response.get_data(as_text=True)


def test_unknown_address_and_wrong_password_run_the_same_statements_and_argon2_verification(
    app: Flask, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an active account, and every SQL statement and argon2 verification watched
    account = factory.user(factory.org())
    client = https(app.test_client())
    token = csrf_of(client)
    verified: list[Parameters] = []
    real_verify = PasswordHasher.verify

    def counting_verify(hasher: PasswordHasher, stored: str, password: str) -> Literal[True]:
        verified.append(extract_parameters(stored))
        return real_verify(hasher, stored, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    work: dict[str, tuple[list[str], list[Parameters]]] = {}
    for name, email in (("known", account.email), ("unknown", "nobody@example.org")):
        verified.clear()
        # When a wrong password is posted for a known and for an unknown address
        with recorded_statements(db.bound(app).engine) as statements:
            _login_as_stranger(client, token, email)
        work[name] = (without_session_upkeep(statements), list(verified))
    (known_sql, known_hashes), (unknown_sql, unknown_hashes) = work["known"], work["unknown"]
    # Then both ran the very same statements, in the same order (reads, throttle and audit
    # writes alike): the number of round trips cannot tell that the account exists
    kinds = Counter(s.split(" ", 1)[0] for s in known_sql)
    assert kinds["INSERT"] >= 1 and kinds["SELECT"] >= 1
    assert Counter(s.split(" ", 1)[0] for s in unknown_sql) == kinds
    assert unknown_sql == known_sql
    # And each cost exactly one argon2 verification, with the same parameters
    assert len(known_hashes) == 1
    assert unknown_hashes == known_hashes


def test_unknown_user_costs_the_same_time_as_a_wrong_password(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    # Given argon2 parameters costly enough for the difference to show if a hash were skipped
    app = make_app(
        argon2_time_cost=2,
        argon2_memory_kib=32768,
        throttle_account_per_minute=1000,
        throttle_ip_per_minute=1000,
    )
    account = Factory(app).user(factory.org())
    client = https(app.test_client())
    token = csrf_of(client)

    def timed(email: str) -> float:
        start = time.perf_counter()
        _login_as_stranger(client, token, email)
        return time.perf_counter() - start

    # When both are timed many times, interleaved (a loaded machine slows neighbours alike)
    ratios = []
    for _ in range(31):
        known = timed(account.email)
        ratios.append(timed("nobody@example.org") / known)
    # Then the median pair is alike: a skipped hash would make it about 0.1, noise does not
    # move a median of 31 pairs by a factor of two (the structure is proved by the test above)
    assert 0.5 < statistics.median(ratios) < 2.0, sorted(ratios)


def test_a_code_already_used_is_refused_and_audited_as_replay(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    code = account.code()
    assert login(client, account, code=code).status_code == 302
    client.post("/deconnexion", data={"csrf_token": csrf_of(client, "/")})
    # When the same code is presented again (e.g. shoulder-surfed or phished)
    again = login(client, account, code=code)
    # Then it is refused with the generic message and recorded as a replay
    assert GENERIC in again.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert len(audit_rows(app, AuditAction.AUTH_MFA_REPLAY)) == 1


@pytest.mark.parametrize(("offset", "accepted"), [(-2, False), (-1, True), (1, True), (2, False)])
def test_totp_accepts_one_step_of_drift_and_no_more(
    app: Flask, client: FlaskClient, factory: Factory, offset: int, accepted: bool
) -> None:
    account = factory.user(factory.org())
    reset_totp_step(app, account)
    # The code is made for a step relative to now: leave the request time to be verified within
    # the same 30-second step (a loaded machine crossing the boundary would shift the offset).
    while 30 - time.time() % 30 < 8:
        time.sleep(0.25)
    response = login(client, account, code=account.code(offset))
    assert (response.status_code == 302) is accepted


def test_password_alone_never_logs_in(client: FlaskClient, factory: Factory) -> None:
    account = factory.user(factory.org())
    response = login(client, account, code="")
    assert response.status_code == 200
    assert client.get("/").status_code == 302


def test_suspended_account_with_right_secrets_cannot_log_in(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org(), status=AccountStatus.SUSPENDED)
    response = login(client, account)
    assert GENERIC in response.get_data(as_text=True)
    row = audit_rows(app, AuditAction.AUTH_LOGIN_FAILURE)[-1]
    assert row.actor_id == account.id
    assert "account_suspended" in row.details


def test_recovery_code_logs_in_once(app: Flask, client: FlaskClient, factory: Factory) -> None:
    from portal.accounts.models import User
    from portal.auth.services import replace_recovery_codes
    from portal.db import db

    account = factory.user(factory.org())
    with app.app_context():
        codes = replace_recovery_codes(db.session, db.session.get(User, account.id))  # type: ignore[arg-type]
        db.session.commit()
    assert login(client, account, code=codes[0].lower()).status_code == 302
    client.post("/deconnexion", data={"csrf_token": csrf_of(client, "/")})
    assert login(client, account, code=codes[0]).status_code == 200
    assert len(audit_rows(app, AuditAction.AUTH_MFA_RECOVERY_CODE_USED)) == 1


def test_five_failures_throttle_that_account_but_not_another_one(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    org = factory.org()
    victim, other = factory.user(org), factory.user(org)
    for _ in range(5):
        assert login(client, victim, password="not the password at all").status_code == 200
    # Then the victim's account waits, even with the right secrets
    blocked = login(client, victim)
    assert blocked.status_code == 429
    assert "Trop de tentatives" in blocked.get_data(as_text=True)
    # And another account, from the same address, is not affected (no global lock)
    assert login(client, other).status_code == 302
    assert audit_rows(app, AuditAction.AUTH_LOGIN_THROTTLED)[0].actor_id == victim.id


def test_many_failures_from_one_address_throttle_that_address_only(
    app: Flask, factory: Factory
) -> None:
    org = factory.org()
    attacker = app.test_client()
    attacker.environ_base.update(
        {"HTTP_REFERER": "https://localhost/", "REMOTE_ADDR": "198.51.100.7"}
    )
    # Given 20 failures from one address, spread over many accounts (password spraying)
    for i in range(20):
        target = Account(
            "x", f"spray{i}@example.org", "Printemps2026!!", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", ""
        )
        login(attacker, target)
    account = factory.user(org)
    # Then that address waits, even for a real account
    assert login(attacker, account).status_code == 429
    # And the same account logs in from another address
    elsewhere = app.test_client()
    elsewhere.environ_base.update(
        {"HTTP_REFERER": "https://localhost/", "REMOTE_ADDR": "192.0.2.44"}
    )
    assert login(elsewhere, account).status_code == 302


def test_throttle_delay_grows_with_each_further_failure() -> None:
    from portal.auth.throttle import Throttle

    throttle = Throttle(MemoryFailureStore(), max_delay=900)
    now = 1_000_000.0
    for i in range(5):
        assert throttle.attempt("k", 5, now + i).allowed  # evaluated, and failed
    first = throttle.attempt("k", 5, now + 5)
    assert not first.allowed and 50 <= first.retry_after <= 60
    assert throttle.attempt("k", 5, now + 70).allowed  # the wait is over: a sixth failure
    second = throttle.attempt("k", 5, now + 71)
    assert not second.allowed and second.retry_after > 100
    assert throttle.attempt("k", 5, now + 70 + 901).allowed
