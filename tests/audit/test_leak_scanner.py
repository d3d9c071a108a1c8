"""The session-wide leak scanner (tests/support/leaks.py) fires on planted secrets and NIRs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

import audit
from audit import AuditAction
from portal.db import db, make_engine
from tests.factories import Factory
from tests.support.leaks import LEAKS, NIR, LeakScanner


@pytest.fixture
def scanner() -> Iterator[LeakScanner]:
    """A scanner of its own, fed by a private logger (the session's one is left alone)."""
    own = LeakScanner()
    logger = logging.getLogger("tests.leaks.planted")
    logger.addHandler(own.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the planted values must not reach the session's scanner
    yield own
    logger.removeHandler(own.handler)
    logger.propagate = True


@pytest.mark.parametrize(
    "text",
    [
        "beneficiary 185057800608436 registered",
        "NIR=2 85 05 2A 006 084",
        "nir:1850578006084",
    ],
)
def test_nir_pattern_matches_the_usual_spellings(text: str) -> None:
    assert NIR.search(text)


@pytest.mark.parametrize(
    "text",
    [
        "a4f1850578006084369b2c0e7d",  # digits inside a hexadecimal hash
        "seq 1234567 size 4096",
        "2026-11-23T12:30:00.000000+00:00",
        "request 8c38b61de5dc2ff9",
    ],
)
def test_nir_pattern_ignores_hashes_ids_and_times(text: str) -> None:
    assert not NIR.search(text)


def test_planted_nir_totp_secret_cookie_and_link_token_in_logs_are_found(
    scanner: LeakScanner,
) -> None:
    log = logging.getLogger("tests.leaks.planted")
    scanner.remember("TOTP secret", "JBSWY3DPEHPK3PXPJBSWY3DP")
    scanner.remember_response(
        ["__Host-filr=s3cr3t-session-value-123; Secure; HttpOnly; Path=/"],
        "https://filr.test/telechargement/eyJ1IjoiYWJjIn0.Zx1.link-token-signature",
    )
    # Given log lines carrying each kind of secret
    log.info("user %s imported", "185057800608436")
    log.warning("setup: secret JBSWY3DPEHPK3PXPJBSWY3DP")
    log.info("cookie was %s", "s3cr3t-session-value-123")
    log.error("link /telechargement/eyJ1IjoiYWJjIn0.Zx1.link-token-signature failed")
    log.info("nothing to see here")
    # When the test ends
    scanner.end_test()
    # Then each is reported, with the secret masked in the report
    kinds = sorted(f.kind for f in scanner.findings)
    assert kinds == ["NIR", "TOTP secret", "URL token", "cookie __Host-filr"]
    report = scanner.report()
    assert "JBSWY3DPEHPK3PXPJBSWY3DP" not in report and "s3cr3t-session" not in report
    # And a test's own secrets are forgotten once it ended
    log.warning("later: JBSWY3DPEHPK3PXPJBSWY3DP")
    scanner.end_test()
    assert len(scanner.findings) == 4


def test_planted_password_in_an_audit_row_is_found(database_url: str) -> None:
    scanner = LeakScanner()
    scanner.remember("factory password", "correct horse battery staple 42", lasting=True)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            audit.record(
                session, AuditAction.AUTH_LOGIN_FAILURE, details={"reason": "bad_password"}
            )
            audit.record(
                session,
                AuditAction.AUTH_LOGIN_FAILURE,
                details={"typed": "correct horse battery staple 42"},
            )
            session.commit()
        scanner.collect_audit(engine, "planted")
    finally:
        engine.dispose()
    scanner.end_test()
    assert [(f.kind, f.where) for f in scanner.findings] == [
        ("factory password", "planted, audit row 2")
    ]


def test_the_session_scanner_is_watching_this_functional_test(
    app: Flask,
    client: FlaskClient,
    factory: Factory,
    login_as: Callable[..., FlaskClient],
) -> None:
    # Given a user logged in through the portal
    account = factory.user(factory.org())
    login_as(account)
    # Then the session's scanner knows its TOTP secret and its session cookie
    known = {**LEAKS._lasting, **LEAKS._current}
    assert known.get(account.totp_secret) == "TOTP secret"
    assert any(kind.startswith("cookie __Host-filr") for kind in known.values())
    # And the audit rows of this app are read at its teardown (none contains them)
    with app.app_context():
        rows = db.session.execute(sa.select(sa.func.count()).select_from(audit.AuditEvent))
        assert rows.scalar_one() >= 2
