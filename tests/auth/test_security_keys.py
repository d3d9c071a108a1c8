"""Security keys through the HTTP surface: the log-in's key step, TOTP and recovery codes as the
fallback, enrolment's proofs, removal, the manager's reset and the per-role policy. The
ceremonies themselves (real signatures) run in Chromium: tests/browser/test_security_key_journey.py.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import secrets
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import cbor2
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from flask import Flask
from flask.testing import FlaskClient
from webauthn.helpers import bytes_to_base64url

from audit import AuditAction
from portal.accounts.models import Role, User
from portal.auth import services as auth
from portal.auth.models import SecurityKey
from portal.db import db, utcnow
from portal.settings import Settings, SettingsError
from tests.conftest import audit_rows, csrf_of, https, login, reread, reset_totp_step
from tests.factories import Account, Factory

GENERIC_LOGIN_ERROR = "Adresse électronique, mot de passe ou code incorrect."
OPTIONS_RE = re.compile(r'data-options="([^"]+)"')


def _credential_id(account: Account, name: str) -> str:
    return bytes_to_base64url(f"credential of {account.id} {name}".encode())


def _give_key(app: Flask, account: Account, name: str = "Clé bleue") -> str:
    """A stored key row (its public key is never checked by these tests)."""
    with app.app_context():
        key = SecurityKey(
            user_id=account.id,
            credential_id=_credential_id(account, name),
            public_key=b"not a real COSE key",
            sign_count=0,
            name=name,
            created_at=utcnow(),
        )
        db.session.add(key)
        db.session.commit()
        return key.id


def _keys_of(app: Flask, account: Account) -> list[str]:
    with app.app_context():
        return list(
            db.session.execute(
                sa.select(SecurityKey.id).where(SecurityKey.user_id == account.id)
            ).scalars()
        )


def _details(row: object) -> dict[str, object]:
    details: dict[str, object] = json.loads(row.details)  # type: ignore[attr-defined]
    return details


def _options(page: str) -> dict[str, object]:
    match = OPTIONS_RE.search(page)
    assert match, page[:500]
    options: dict[str, object] = json.loads(html.unescape(match.group(1)))
    return options


def test_account_with_a_key_and_no_code_is_sent_to_the_key_step(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    # Given an account with a key
    account = factory.user(factory.org())
    _give_key(app, account)
    # When the password is right and the code left empty
    r = login(client, account, code="")
    # Then the log-in continues with the key, asking only for this account's key, with user
    # verification required, for the RP id of FILR_BASE_URL
    assert r.status_code == 302 and r.headers["Location"].endswith("/connexion/cle")
    options = _options(client.get("/connexion/cle").get_data(as_text=True))
    assert options["rpId"] == "filr.test"
    assert options["userVerification"] == "required"
    allowed = options["allowCredentials"]
    assert isinstance(allowed, list)
    assert [c["id"] for c in allowed] == [_credential_id(account, "Clé bleue")]
    # And nobody is logged in yet
    assert client.get("/").status_code == 302


def test_account_without_a_key_and_no_code_gets_the_generic_error(
    client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    r = login(client, account, code="")
    assert r.status_code == 200 and GENERIC_LOGIN_ERROR in r.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_a_wrong_password_never_reaches_the_key_step(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    _give_key(app, account)
    r = login(client, account, code="", password="not the password at all")
    assert r.status_code == 200 and GENERIC_LOGIN_ERROR in r.get_data(as_text=True)
    assert client.get("/connexion/cle").status_code == 302  # back to the log-in page


def test_totp_and_recovery_codes_still_log_in_an_account_with_a_key(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    _give_key(app, account)
    # The TOTP code is the fallback
    r = login(client, account)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    client.post("/deconnexion", data={"csrf_token": csrf_of(client, "/compte")})
    # And so is a recovery code
    with app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        codes = auth.replace_recovery_codes(db.session, user)
        db.session.commit()
    r = login(client, account, code=codes[0])
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_an_assertion_of_a_key_the_account_does_not_hold_is_refused_and_audited(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    # Given the key step of an account with a key
    account = factory.user(factory.org())
    _give_key(app, account)
    login(client, account, code="")
    page = client.get("/connexion/cle").get_data(as_text=True)
    token = re.search(r'data-csrf="([^"]+)"', page)
    assert token
    # When an assertion of another credential is posted
    forged = {"id": "c29tZS1vdGhlci1rZXk", "rawId": "c29tZS1vdGhlci1rZXk", "type": "public-key"}
    r = client.post(
        "/connexion/cle",
        data=json.dumps(forged),
        headers={"Content-Type": "application/json", "X-CSRFToken": token.group(1)},
    )
    # Then it is refused, counted as a second-factor failure, and nobody is logged in
    assert r.status_code == 400 and "n'a pas été acceptée" in r.get_json()["error"]
    failures = audit_rows(app, AuditAction.AUTH_MFA_FAILURE)
    assert failures[-1].actor_id == account.id
    assert _details(failures[-1])["reason"] == "unknown_key"
    assert client.get("/").status_code == 302


def test_the_key_step_without_a_password_step_is_refused(client: FlaskClient) -> None:
    token = csrf_of(client)
    r = client.post(
        "/connexion/cle",
        data="{}",
        headers={"Content-Type": "application/json", "X-CSRFToken": token},
    )
    assert r.status_code == 400
    r = client.get("/connexion/cle")
    assert r.status_code == 302 and r.headers["Location"].endswith("/connexion")


def test_enrolment_asks_for_the_password_and_a_current_code(
    app: Flask,
    client: FlaskClient,
    factory: Factory,
    login_as: Callable[[Account], FlaskClient],
) -> None:
    account = factory.user(factory.org())
    existing = _give_key(app, account)
    login_as(account)
    token = csrf_of(client, "/compte/cles")
    form = {"csrf_token": token, "current": account.password, "name": "Clé USB"}
    next_code = account.code(1)  # the log-in spent the current step
    # A wrong code: no ceremony, a failure counted
    r = client.post("/compte/cles", data={**form, "code": "000000"})
    assert "data-options" not in r.get_data(as_text=True)
    assert _details(audit_rows(app, AuditAction.AUTH_MFA_FAILURE)[-1])["purpose"] == "key_enrolment"
    # A wrong password: no ceremony
    r = client.post("/compte/cles", data={**form, "current": "wrong password", "code": next_code})
    assert "data-options" not in r.get_data(as_text=True)
    # Both right: the creation options, user verification required, the held key excluded
    r = client.post("/compte/cles", data={**form, "code": next_code})
    options = _options(r.get_data(as_text=True))
    assert options["rp"] == {"name": "Fil'R", "id": "filr.test"}
    selection = options["authenticatorSelection"]
    assert isinstance(selection, dict) and selection["userVerification"] == "required"
    excluded = options["excludeCredentials"]
    assert isinstance(excluded, list) and len(excluded) == 1
    assert existing  # the stored row excluded above
    # The same code cannot open a second ceremony (spent)
    r = client.post("/compte/cles", data={**form, "code": next_code})
    assert "data-options" not in r.get_data(as_text=True)


def test_a_user_removes_their_own_key_but_not_anothers(
    app: Flask,
    client: FlaskClient,
    factory: Factory,
    login_as: Callable[[Account], FlaskClient],
) -> None:
    org = factory.org()
    account, other = factory.user(org), factory.user(org)
    mine, theirs = _give_key(app, account), _give_key(app, other)
    login_as(account)
    token = csrf_of(client, "/compte/cles")
    # Another account's key: the same 404 as an unknown one, and it stays
    r = client.post(
        f"/compte/cles/{theirs}/supprimer", data={"csrf_token": token, "current": account.password}
    )
    assert r.status_code == 404 and _keys_of(app, other) == [theirs]
    # A wrong password removes nothing
    client.post(f"/compte/cles/{mine}/supprimer", data={"csrf_token": token, "current": "nope"})
    assert _keys_of(app, account) == [mine]
    # Own key with the password: removed and audited
    r = client.post(
        f"/compte/cles/{mine}/supprimer", data={"csrf_token": token, "current": account.password}
    )
    assert r.status_code == 302 and _keys_of(app, account) == []
    removed = audit_rows(app, AuditAction.AUTH_KEY_REMOVED)
    assert [(e.actor_id, e.target_id) for e in removed] == [(account.id, mine)]


def test_the_managers_second_factor_reset_removes_the_keys(
    app: Flask,
    client: FlaskClient,
    factory: Factory,
    login_as: Callable[[Account], FlaskClient],
) -> None:
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    account = factory.user(org)
    _give_key(app, account)
    _give_key(app, account, "Clé de secours")
    login_as(manager)
    token = csrf_of(client, f"/gestion/comptes/{account.id}")
    r = client.post(f"/gestion/comptes/{account.id}/reinitialiser-mfa", data={"csrf_token": token})
    assert r.status_code == 302
    assert _keys_of(app, account) == []
    reset = audit_rows(app, AuditAction.AUTH_MFA_RESET)[-1]
    assert _details(reset)["security_keys_removed"] == 2


def _officer_app(make_app: Callable[..., Flask], deadline: date) -> tuple[Flask, FlaskClient]:
    app = make_app(
        webauthn_required_roles=frozenset({"securite", "admin"}), webauthn_enrol_deadline=deadline
    )
    return app, https(app.test_client())


def test_officer_without_a_key_is_sent_to_enrolment_before_the_deadline(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    # Given the policy for security officers, ten days before its deadline
    app, officer_client = _officer_app(make_app, date.today() + timedelta(days=10))
    officer = factory.user(factory.org(), roles=(Role.SECURITE,))
    # When the officer logs in with password and TOTP
    r = login(officer_client, officer)
    # Then the policy's page comes first, tells the deadline, and the portal stays open
    assert r.status_code == 302 and r.headers["Location"].endswith("/compte/cle-obligatoire")
    page = officer_client.get("/compte/cle-obligatoire").get_data(as_text=True)
    assert "key-required-soon" in page
    assert (date.today() + timedelta(days=10)).strftime("%d/%m/%Y") in page
    assert officer_client.get("/").status_code == 200
    assert _details(audit_rows(app, AuditAction.AUTH_KEY_REQUIRED)[-1])["policy"] == "enrol-soon"


def test_after_the_deadline_an_officer_without_a_key_reaches_only_enrolment(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    # Given the policy's deadline passed yesterday
    app, officer_client = _officer_app(make_app, date.today() - timedelta(days=1))
    org = factory.org()
    officer = factory.user(org, roles=(Role.SECURITE,))
    agent = factory.user(org)
    # When the officer logs in with password and TOTP
    r = login(officer_client, officer)
    assert r.headers["Location"].endswith("/compte/cle-obligatoire")
    # Then every page but enrolment and log-out is refused (sent back to the policy's page)
    for path in ("/", "/compte", "/securite/journal"):
        r = officer_client.get(path)
        assert r.status_code == 302 and r.headers["Location"].endswith("/compte/cle-obligatoire")
    assert "key-required-refused" in officer_client.get("/compte/cle-obligatoire").get_data(
        as_text=True
    )
    assert officer_client.get("/compte/cles").status_code == 200
    assert _details(audit_rows(app, AuditAction.AUTH_KEY_REQUIRED)[-1])["policy"] == "enrol-now"
    # And an agent (a role the policy does not name) is not concerned
    agent_client = https(app.test_client())
    r = login(agent_client, agent)
    assert r.headers["Location"] == "/" and agent_client.get("/").status_code == 200


def test_an_officer_holding_a_key_passes_the_policy(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    app, officer_client = _officer_app(make_app, date.today() - timedelta(days=1))
    officer = factory.user(factory.org(), roles=(Role.SECURITE,))
    _give_key(app, officer)
    reset_totp_step(app, officer)
    r = login(officer_client, officer)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert officer_client.get("/").status_code == 200


def test_keys_are_not_offered_when_the_base_url_is_an_ip_address(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    app = make_app(base_url="https://192.0.2.10")
    account = factory.user(factory.org())
    c = https(app.test_client())
    assert login(c, account).status_code == 302
    assert c.get("/compte/cles").status_code == 404


def test_the_required_roles_setting_refuses_an_unknown_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FILR_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("FILR_WEBAUTHN_REQUIRED_ROLES", "securite,chef")
    with pytest.raises(SettingsError, match="chef"):
        Settings.from_env()
    monkeypatch.setenv("FILR_WEBAUTHN_REQUIRED_ROLES", "securite, admin")
    monkeypatch.setenv("FILR_WEBAUTHN_ENROL_DEADLINE", "2027-03-01")
    settings = Settings.from_env()
    assert settings.webauthn_required_roles == {"securite", "admin"}
    assert settings.webauthn_enrol_deadline == date(2027, 3, 1)


# --- assertions signed by a software key: the server's checks, one by one ------------------


class SoftwareKey:
    """A P-256 credential held in the test: what an authenticator (or a thief of its private
    key) would sign."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        numbers = self.private.public_key().public_numbers()
        self.cose = cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        self.raw_id = secrets.token_bytes(16)

    def store_for(self, app: Flask, account: Account, sign_count: int = 5) -> str:
        with app.app_context():
            key = SecurityKey(
                user_id=account.id,
                credential_id=bytes_to_base64url(self.raw_id),
                public_key=self.cose,
                sign_count=sign_count,
                name="Clé logicielle",
                created_at=utcnow(),
            )
            db.session.add(key)
            db.session.commit()
            return key.id

    def assertion(
        self,
        challenge: str,
        *,
        origin: str = "https://filr.test",
        rp_id: str = "filr.test",
        count: int = 6,
        verified: bool = True,
    ) -> str:
        client_data = json.dumps(
            {"type": "webauthn.get", "challenge": challenge, "origin": origin}
        ).encode()
        flags = 0x01 | (0x04 if verified else 0)
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + count.to_bytes(4, "big")
        )
        signature = self.private.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(SHA256())
        )
        raw = bytes_to_base64url(self.raw_id)
        return json.dumps(
            {
                "id": raw,
                "rawId": raw,
                "type": "public-key",
                "response": {
                    "clientDataJSON": bytes_to_base64url(client_data),
                    "authenticatorData": bytes_to_base64url(auth_data),
                    "signature": bytes_to_base64url(signature),
                },
                "clientExtensionResults": {},
            }
        )

    def attestation(self, challenge: str, *, origin: str = "https://filr.test") -> str:
        """The browser's answer to the creation options ("none" attestation)."""
        client_data = json.dumps(
            {"type": "webauthn.create", "challenge": challenge, "origin": origin}
        ).encode()
        auth_data = (
            hashlib.sha256(b"filr.test").digest()
            + bytes([0x01 | 0x04 | 0x40])  # user present, verified, attested credential data
            + (0).to_bytes(4, "big")
            + bytes(16)  # AAGUID
            + len(self.raw_id).to_bytes(2, "big")
            + self.raw_id
            + self.cose
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        raw = bytes_to_base64url(self.raw_id)
        return json.dumps(
            {
                "id": raw,
                "rawId": raw,
                "type": "public-key",
                "response": {
                    "clientDataJSON": bytes_to_base64url(client_data),
                    "attestationObject": bytes_to_base64url(attestation),
                },
                "clientExtensionResults": {},
            }
        )


def _key_step(client: FlaskClient, account: Account) -> tuple[str, str]:
    """Password step, then the key page: (challenge, CSRF token)."""
    assert login(client, account, code="").status_code == 302
    page = client.get("/connexion/cle").get_data(as_text=True)
    token = re.search(r'data-csrf="([^"]+)"', page)
    assert token
    return str(_options(page)["challenge"]), token.group(1)


def _post_assertion(client: FlaskClient, token: str, body: str) -> Any:
    return client.post(
        "/connexion/cle",
        data=body,
        headers={"Content-Type": "application/json", "X-CSRFToken": token},
    )


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"origin": "https://filr-test.example"}, "bad_assertion"),
        ({"rp_id": "filr-test.example"}, "bad_assertion"),
        ({"verified": False}, "bad_assertion"),
        ({"count": 5}, "sign_count_not_increasing"),
        ({"count": 2}, "sign_count_not_increasing"),
    ],
)
def test_a_validly_signed_assertion_is_refused_for_origin_rp_id_verification_or_counter(
    app: Flask, client: FlaskClient, factory: Factory, tamper: dict[str, Any], reason: str
) -> None:
    # Given an account whose key was last seen at counter 5
    account = factory.user(factory.org())
    key = SoftwareKey()
    key.store_for(app, account, sign_count=5)
    challenge, token = _key_step(client, account)
    # When an assertion signed by the right key has one property wrong
    r = _post_assertion(client, token, key.assertion(challenge, **tamper))
    # Then it is refused, audited with the reason, and nobody is logged in
    assert r.status_code == 400
    assert client.get("/").status_code == 302
    rows = audit_rows(app)
    assert _details(rows[-1])["reason"] == reason
    if reason == "sign_count_not_increasing":
        assert rows[-1].action == AuditAction.AUTH_KEY_CLONE_WARNING


def test_a_right_assertion_logs_in_once_and_its_challenge_answers_once(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    key = SoftwareKey()
    key_id = key.store_for(app, account, sign_count=5)
    challenge, token = _key_step(client, account)
    # A wrong answer spends the challenge: the right one cannot follow on the same page
    assert (
        _post_assertion(client, token, key.assertion(challenge, verified=False)).status_code == 400
    )
    assert _post_assertion(client, token, key.assertion(challenge, count=6)).status_code == 400
    # A fresh page, a right answer: logged in, counter and last use stored, audited
    challenge, token = _key_step(client, account)
    r = _post_assertion(client, token, key.assertion(challenge, count=7))
    assert r.status_code == 200 and r.get_json() == {"redirect": "/"}
    assert client.get("/").status_code == 200
    stored = reread(app, SecurityKey, key_id)
    assert stored.sign_count == 7 and stored.last_used_at is not None
    used = audit_rows(app, AuditAction.AUTH_KEY_SUCCESS)
    assert [(e.actor_id, e.target_id) for e in used] == [(account.id, key_id)]
    success = audit_rows(app, AuditAction.AUTH_LOGIN_SUCCESS)[-1]
    assert _details(success) == {"via": "security_key"}


def test_enrolment_stores_the_key_under_its_name_and_audits_it_and_refuses_another_origin(
    app: Flask,
    client: FlaskClient,
    factory: Factory,
    login_as: Callable[[Account], FlaskClient],
) -> None:
    account = factory.user(factory.org())
    login_as(account)

    def ceremony(code: str) -> tuple[str, str]:
        token = csrf_of(client, "/compte/cles")
        form = {"csrf_token": token, "current": account.password, "name": "Clé USB", "code": code}
        page = client.post("/compte/cles", data=form).get_data(as_text=True)
        csrf = re.search(r'data-csrf="([^"]+)"', page)
        assert csrf
        return str(_options(page)["challenge"]), csrf.group(1)

    def post(token: str, body: str) -> Any:
        return client.post(
            "/compte/cles/enregistrer",
            data=body,
            headers={"Content-Type": "application/json", "X-CSRFToken": token},
        )

    key = SoftwareKey()
    # A credential created on a page of another origin is refused and audited
    challenge, token = ceremony(account.code(1))
    r = post(token, key.attestation(challenge, origin="https://filr-test.example"))
    assert r.status_code == 400 and _keys_of(app, account) == []
    failure = audit_rows(app, AuditAction.AUTH_KEY_FAILURE)[-1]
    assert _details(failure) == {"purpose": "enrolment", "reason": "bad_attestation"}
    # The portal's own origin: stored under its name, audited
    reset_totp_step(app, account)  # the next step is spent, the one after is not valid yet
    challenge, token = ceremony(account.code(1))
    r = post(token, key.attestation(challenge))
    assert r.status_code == 200 and r.get_json() == {"redirect": "/compte/cles"}
    (key_id,) = _keys_of(app, account)
    assert reread(app, SecurityKey, key_id).name == "Clé USB"
    enrolled = audit_rows(app, AuditAction.AUTH_KEY_ENROLLED)
    assert [(e.actor_id, e.target_id) for e in enrolled] == [(account.id, key_id)]
    # The challenge answers once
    assert post(token, key.attestation(challenge)).status_code == 400
