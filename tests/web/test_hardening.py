"""Web hardening: deny by default, CSRF, redirects, headers, cookies, error pages, isolation."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from audit import AuditAction
from portal.accounts.models import AccountStatus, RecoveryCode, Role, User, UserToken
from portal.auth.models import ServerSession
from portal.db import db, utcnow
from portal.gate import PUBLIC_ENDPOINTS
from portal.web import safe_next
from tests.conftest import audit_rows, csrf_of, https, login
from tests.factories import Account, Factory
from tests.support.services import SmtpSink

COOKIE = "__Host-filr"
NEW_PASSWORD = "lilac harbour compass 7319 !"
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{16}$")

LoginAs = Callable[..., FlaskClient]


# --- helpers ---------------------------------------------------------------------------


def fresh_client(app: Flask) -> FlaskClient:
    """Another browser, with the same (conftest) environment as `client`."""
    return https(app.test_client())


def token_of(client: FlaskClient, name: str = COOKIE) -> str | None:
    """The session token the browser holds (None: no cookie)."""
    cookie = client.get_cookie(name)
    return cookie.value if cookie else None


def user_row(app: Flask, user_id: str) -> User:
    """The account *user_id*, detached."""
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None
        db.session.expunge_all()
        return user


def assert_sent_to_login(response: TestResponse) -> None:
    """The response is the gate's redirect to the log-in page."""
    assert response.status_code == 302
    location = response.headers.get("Location", "")
    assert location.startswith("/connexion"), location


def assert_request_id_shown(response: TestResponse) -> str:
    """The response carries a request id, and the page shows the same one."""
    request_id = response.headers.get("X-Request-ID", "")
    assert REQUEST_ID_RE.match(request_id), f"bad X-Request-ID {request_id!r}"
    assert request_id in response.get_data(as_text=True)
    return request_id


def set_cookie_attributes(response: TestResponse, name: str) -> dict[str, str] | None:
    """The attributes (lower-case keys) of the Set-Cookie header for *name*, if any."""
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        cookie_name, _, value = first.partition("=")
        if cookie_name != name:
            continue
        parsed = {"value": value}
        for attribute in attributes:
            key, _, attr_value = attribute.partition("=")
            parsed[key.lower()] = attr_value
        return parsed
    return None


# --- deny by default: the url_map walk -------------------------------------------------

# The short explicit list; adding a public endpoint must come with a change here.
EXPECTED_PUBLIC_ENDPOINTS = {
    "static",
    "dsfr",
    "auth.login",
    "auth.forgot_password",
    "auth.reset_password",
    "auth.activate",
    "auth.activate_totp",
    "auth.mfa_enrol",
    "auth.login_key",  # the second step of a log-in whose password was right
    # ProConnect (404 unless configured): the start, the provider's answer (state, nonce,
    # PKCE), the local second factor when the provider asserted none, the end of session
    "auth.proconnect_start",
    "auth.proconnect_callback",
    "auth.proconnect_code",
    "auth.proconnect_logged_out",
    "home.health",
    "ops.ready",  # says only which component is down
    "ops.metrics",  # its own bearer token: tests/ops/test_health_metrics.py
    "home.accessibility",
}

# Endpoints that must be behind the gate; guards against a walk that silently walks nothing.
KNOWN_PROTECTED = {
    "home.index",
    "auth.logout",
    "accounts.my_account",
    "accounts.change_password",
    "accounts.regenerate_recovery_codes",
    "accounts.reenrol_totp",
    "accounts.close_session",
    "accounts.manage_list",
    "accounts.manage_create",
    "accounts.manage_detail",
    "accounts.manage_action",
    "deposits.inbox",
    "deposits.new",
    "deposits.files",
    "deposits.upload",
    "deposits.send",
    "deposits.show",
    "deposits.link",
    "deposits.download",
    "deposits.withdraw",
    "deposits.take",
    "api_tokens.index",
    "api_tokens.create",
    "api_tokens.revoke",
    "api.me",
    "api.organisations",
    "api.deposits_list",
    "api.deposit_create",
    "api.deposit_show",
    "api.file_upload",
    "api.deposit_publish",
    "api.file_content",
    "api.deposit_withdraw",
    "api.openapi",
    "preferences.notifications",
    "flows.index",
    "flows.follow_up_page",
    "flows.follow_up_export",
    "flows.new",
    "flows.upload",
    "flows.show",
    "flows.report_csv",
    "flows.flag",
    "api.flow_deposit",
    "api.flow_show",
    "securite.index",
    "securite.journal",
    "securite.export",
    "securite.user_timeline",
    "securite.deposit_timeline",
    "securite.alerts",
    "securite.alert",
    "securite.acknowledge",
}

_ARGUMENT_RE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


def _dummy_values(rule_text: str, known: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for match in _ARGUMENT_RE.finditer(rule_text):
        name, converter = match["name"], match["converter"] or "default"
        if name in known:
            values[name] = known[name]
        elif converter == "int":
            values[name] = 1
        elif converter == "float":
            values[name] = 1.0
        elif converter == "uuid":
            values[name] = uuid.UUID(int=1)
        elif converter == "path":
            values[name] = "dummy/file.txt"
        else:
            values[name] = "dummy"
    return values


def _walk(app: Flask, client: FlaskClient, known: dict[str, str]) -> tuple[set[str], list[str]]:
    """Request every method of every non-public rule; returns (endpoints walked, failures)."""
    adapter = app.url_map.bind("localhost")
    # A valid CSRF token of this very session, so that the gate, not CSRF, has to refuse.
    headers = {"X-CSRFToken": csrf_of(client)}
    walked: set[str] = set()
    failures: list[str] = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        values = _dummy_values(rule.rule, known)
        for method in sorted(rule.methods or ()):
            path = adapter.build(rule.endpoint, values, method=method)
            if method not in ("HEAD", "OPTIONS"):  # shared by the rules of one path
                assert adapter.match(path, method=method)[0] == rule.endpoint, path
            response = client.open(path, method=method, headers=headers)
            walked.add(rule.endpoint)
            where = f"{method} {path} ({rule.endpoint})"
            if path.startswith("/api/"):
                if response.status_code != 401 or response.mimetype != "application/problem+json":
                    failures.append(f"{where}: {response.status_code} {response.mimetype}")
            elif response.status_code != 302 or not response.headers.get("Location", "").startswith(
                "/connexion"
            ):
                failures.append(
                    f"{where}: {response.status_code} {response.headers.get('Location')}"
                )
    return walked, failures


def _insert_session(app: Flask, user_id: str, *, mfa_verified: bool) -> str:
    """A `server_session` row for *user_id* (password checked; TOTP only if *mfa_verified*)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with app.app_context():
        db.session.add(
            ServerSession(
                id=hashlib.sha256(token.encode()).hexdigest(),
                user_id=user_id,
                mfa_verified_at=now if mfa_verified else None,
                created_at=now,
                last_seen_at=now,
                data="{}",
            )
        )
        db.session.commit()
    return token


def test_public_endpoints_are_the_short_explicit_list(app: Flask) -> None:
    assert set(PUBLIC_ENDPOINTS) == EXPECTED_PUBLIC_ENDPOINTS
    # and none of them is a stale name
    stale = EXPECTED_PUBLIC_ENDPOINTS - {rule.endpoint for rule in app.url_map.iter_rules()}
    assert stale == set()


def test_every_non_public_endpoint_refuses_an_anonymous_visitor(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    # Given an anonymous visitor, with a valid CSRF token, and real ids in the URLs
    org = factory.org()
    member = factory.user(org)
    # When every method of every non-public rule is requested
    walked, failures = _walk(app, client, {"user_id": member.id, "action": "suspendre"})
    # Then every answer sends to the log-in page (401 for the API), never a page
    assert failures == []
    assert walked >= KNOWN_PROTECTED
    assert user_row(app, member.id).status == AccountStatus.ACTIVE


def test_every_non_public_endpoint_refuses_a_password_only_session(
    app: Flask, client: FlaskClient, factory: Factory
) -> None:
    # Given a session that passed the password but not the TOTP code, of an account manager
    # (the most powerful account of its organisation) and a member of the same organisation
    org = factory.org()
    manager = factory.user(org, roles=(Role.GESTIONNAIRE,))
    member = factory.user(org)
    token = _insert_session(app, manager.id, mfa_verified=False)
    client.set_cookie(COOKIE, token)
    # When every method of every non-public rule is requested
    walked, failures = _walk(app, client, {"user_id": member.id, "action": "suspendre"})
    # Then none of them serves anything
    assert failures == []
    assert walked >= KNOWN_PROTECTED
    assert user_row(app, member.id).status == AccountStatus.ACTIVE
    # (control: the same kind of row, MFA-verified, does open the home page)
    verified = fresh_client(app)
    verified.set_cookie(COOKIE, _insert_session(app, manager.id, mfa_verified=True))
    assert verified.get("/").status_code == 200


# --- CSRF ------------------------------------------------------------------------------

CSRF_VARIANTS = ["missing", "garbage", "another-sessions-token"]


def forged(app: Flask, variant: str) -> dict[str, str]:
    """The csrf_token field an attacker's page could send."""
    if variant == "missing":
        return {}
    if variant == "garbage":
        return {"csrf_token": "IjAxMjM0NTY3ODlhYmNkZWYi.aBcDeF.not-a-signature"}
    # The attacker's own valid token, from the attacker's own session
    return {"csrf_token": csrf_of(fresh_client(app))}


def assert_csrf_refused(response: TestResponse) -> None:
    """Refused by the CSRF check: 400, the French error page with a request id."""
    assert response.status_code == 400
    assert "Formulaire expiré" in response.get_data(as_text=True)
    assert_request_id_shown(response)


@pytest.mark.parametrize("variant", CSRF_VARIANTS)
def test_log_in_without_a_valid_csrf_token_is_refused(
    app: Flask, client: FlaskClient, factory: Factory, variant: str
) -> None:
    # Given a visitor with the right password and code
    account = factory.user(factory.org())
    client.get("/connexion")
    # When the log-in form is posted without a valid CSRF token (login CSRF)
    response = client.post(
        "/connexion",
        data={
            **forged(app, variant),
            "email": account.email,
            "password": account.password,
            "code": account.code(),
        },
    )
    # Then it is refused, and nobody is logged in
    assert_csrf_refused(response)
    assert_sent_to_login(client.get("/"))
    assert audit_rows(app, AuditAction.AUTH_LOGIN_SUCCESS) == []
    user = user_row(app, account.id)
    assert user.last_login_at is None and user.totp_last_step is None
    # (control: the same form with its token logs in)
    assert login(client, account).status_code == 302


@pytest.mark.parametrize("variant", CSRF_VARIANTS)
def test_log_out_without_a_valid_csrf_token_is_refused(
    app: Flask, login_as: LoginAs, factory: Factory, variant: str
) -> None:
    # Given a logged-in user
    account = factory.user(factory.org())
    client = login_as(account)
    before = token_of(client)
    # When a third-party page makes the browser post to /deconnexion
    response = client.post("/deconnexion", data=forged(app, variant))
    # Then it is refused and the session lives on
    assert_csrf_refused(response)
    assert token_of(client) == before
    assert client.get("/").status_code == 200
    assert audit_rows(app, AuditAction.AUTH_LOGOUT) == []
    # (control)
    assert client.post("/deconnexion", data={"csrf_token": csrf_of(client, "/")}).status_code == 302
    assert_sent_to_login(client.get("/"))


@pytest.mark.parametrize("variant", CSRF_VARIANTS)
def test_password_change_without_a_valid_csrf_token_is_refused(
    app: Flask, login_as: LoginAs, factory: Factory, smtp: SmtpSink, variant: str
) -> None:
    # Given a logged-in user
    account = factory.user(factory.org())
    client = login_as(account)
    before = token_of(client)
    hash_before = user_row(app, account.id).password_hash
    form = {"current": account.password, "password": NEW_PASSWORD, "confirmation": NEW_PASSWORD}
    # When the password form is posted without a valid CSRF token
    response = client.post("/compte/mot-de-passe", data={**forged(app, variant), **form})
    # Then nothing changed: password, session, audit trail, mail
    assert_csrf_refused(response)
    assert user_row(app, account.id).password_hash == hash_before
    assert token_of(client) == before
    assert client.get("/compte").status_code == 200
    assert audit_rows(app, AuditAction.AUTH_PASSWORD_CHANGED) == []
    assert smtp.to(account.email) == []
    # (control)
    ok = client.post(
        "/compte/mot-de-passe", data={"csrf_token": csrf_of(client, "/compte"), **form}
    )
    assert ok.status_code == 302
    assert user_row(app, account.id).password_hash != hash_before


@pytest.mark.parametrize("variant", CSRF_VARIANTS)
def test_account_creation_without_a_valid_csrf_token_is_refused(
    app: Flask, login_as: LoginAs, factory: Factory, smtp: SmtpSink, variant: str
) -> None:
    # Given a logged-in account manager
    manager = factory.user(factory.org(), roles=(Role.GESTIONNAIRE,))
    client = login_as(manager)
    form = {
        "full_name": "Camille Nouvelle",
        "email": "camille@example.org",
        "roles": "agent",
        "function": "instructeur_rsa",
        "granted_on": "2026-01-05",
    }
    # When the creation form is posted without a valid CSRF token
    response = client.post("/gestion/comptes/nouveau", data={**forged(app, variant), **form})
    # Then no account exists, no mail left, nothing audited
    assert_csrf_refused(response)
    with app.app_context():
        found = db.session.scalar(sa.select(User).where(User.email == "camille@example.org"))
        assert found is None
    assert smtp.to("camille@example.org") == []
    assert audit_rows(app, AuditAction.ACCOUNT_CREATED) == []
    # (control)
    token = csrf_of(client, "/gestion/comptes/nouveau")
    ok = client.post("/gestion/comptes/nouveau", data={"csrf_token": token, **form})
    assert ok.status_code == 302
    assert len(audit_rows(app, AuditAction.ACCOUNT_CREATED)) == 1


@pytest.mark.parametrize("variant", CSRF_VARIANTS)
def test_account_suspension_without_a_valid_csrf_token_is_refused(
    app: Flask, login_as: LoginAs, factory: Factory, variant: str
) -> None:
    org = factory.org()
    manager, member = factory.user(org, roles=(Role.GESTIONNAIRE,)), factory.user(org)
    client = login_as(manager)
    response = client.post(f"/gestion/comptes/{member.id}/suspendre", data=forged(app, variant))
    assert_csrf_refused(response)
    assert user_row(app, member.id).status == AccountStatus.ACTIVE
    assert audit_rows(app, AuditAction.ACCOUNT_SUSPENDED) == []


def test_over_https_a_post_from_another_site_is_refused_even_with_a_valid_token(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given a logged-in user and a valid token (e.g. leaked), requests made over real HTTPS
    account = factory.user(factory.org())
    client = login_as(account)
    token = csrf_of(client, "/")
    https_base = "https://localhost"
    # When the post comes from another origin, or says nothing of its origin
    foreign = client.post(
        "/deconnexion",
        data={"csrf_token": token},
        base_url=https_base,
        headers={"Referer": "https://evil.example/"},
    )
    silent = client.post(
        "/deconnexion",
        data={"csrf_token": token},
        base_url=https_base,
        environ_overrides={"HTTP_REFERER": ""},  # the shared clients send one by default
    )
    # Then it is refused (Flask-WTF's strict referrer check on HTTPS)
    assert foreign.status_code == 400
    assert silent.status_code == 400
    assert client.get("/").status_code == 200
    # (control: same origin)
    same = client.post(
        "/deconnexion",
        data={"csrf_token": token},
        base_url=https_base,
        headers={"Referer": "https://localhost/compte"},
    )
    assert same.status_code == 302


# --- open redirect ---------------------------------------------------------------------


def _post_login(client: FlaskClient, account: Account, query: str) -> TestResponse:
    """Log in through /connexion?<query> as a browser following a link would."""
    path = "/connexion?" + query
    return client.post(
        path,
        data={
            "csrf_token": csrf_of(client, path),
            "email": account.email,
            "password": account.password,
            "code": account.code(),
        },
    )


HOSTILE_NEXT_QUERIES = [
    pytest.param(urlencode({"next": "//evil.example"}), id="protocol-relative"),
    pytest.param("next=//evil.example", id="protocol-relative-raw"),
    pytest.param(urlencode({"next": "https://evil.example/"}), id="absolute"),
    pytest.param(urlencode({"next": "/\\evil.example"}), id="slash-backslash"),
    pytest.param("next=/%5Cevil.example", id="slash-backslash-encoded"),
    pytest.param(urlencode({"next": "\\\\evil.example"}), id="double-backslash"),
    pytest.param(urlencode({"next": "javascript:alert(1)"}), id="javascript"),
    pytest.param("next=%2F%2Fevil.example", id="encoded-slashes"),
    pytest.param(urlencode({"next": "%2F%2Fevil.example"}), id="double-encoded-slashes"),
    pytest.param(urlencode({"next": "/\t/evil.example"}), id="slash-tab-slash"),
    pytest.param(urlencode({"next": "/\\t/evil.example"}), id="slash-backslash-t"),
    pytest.param(urlencode({"next": "/\n/evil.example"}), id="slash-newline-slash"),
    pytest.param(urlencode({"next": "https:evil.example"}), id="scheme-without-slashes"),
    pytest.param(urlencode({"next": " //evil.example"}), id="leading-space"),
]


@pytest.mark.parametrize("query", HOSTILE_NEXT_QUERIES)
def test_log_in_never_redirects_to_another_site(
    client: FlaskClient, factory: Factory, query: str
) -> None:
    # Given a log-in link crafted by an attacker
    account = factory.user(factory.org())
    # When the victim logs in through it
    response = _post_login(client, account, query)
    # Then the portal's home page is where they land
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_log_in_honours_a_safe_next(client: FlaskClient, factory: Factory) -> None:
    account = factory.user(factory.org())
    response = _post_login(client, account, "next=/compte")
    assert response.status_code == 302
    assert response.headers["Location"] == "/compte"


def test_a_page_asked_before_log_in_is_shown_after_it(
    client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    gate = client.get("/compte")
    assert gate.status_code == 302
    path = gate.headers["Location"]
    assert path.startswith("/connexion?")
    response = _post_login(client, account, path.partition("?")[2])
    assert response.headers["Location"] == "/compte"


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "//evil.example",
        "///evil.example",
        "https://evil.example/",
        "http://evil.example",
        "https:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "\\/evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "/\x00/evil.example",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "%2F%2Fevil.example",
        "evil.example",
        " /compte",
        "/" + "a" * 600,
    ],
)
def test_safe_next_refuses_anything_but_a_local_path(target: str | None) -> None:
    assert safe_next(target) == "/"
    assert safe_next(target, default="/compte") == "/compte"


@pytest.mark.parametrize(
    "target", ["/", "/compte", "/gestion/comptes?statut=actif", "/compte#sessions", "/a/b/c"]
)
def test_safe_next_keeps_a_local_path(target: str) -> None:
    assert safe_next(target) == target


# --- security headers and cookies ------------------------------------------------------


def _csp(response: TestResponse) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in response.headers.get("Content-Security-Policy", "").split(";"):
        name, *sources = part.split()
        directives[name.lower()] = sources
    return directives


def _assert_page_headers(response: TestResponse) -> None:
    h = response.headers
    csp = _csp(response)
    script_src = csp.get("script-src", csp.get("default-src"))
    assert script_src is not None
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert "*" not in script_src and "data:" not in script_src
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "no-referrer"
    sts = h.get("Strict-Transport-Security", "")
    max_age = re.search(r"max-age=(\d+)", sts)
    assert max_age and int(max_age.group(1)) >= 31_536_000, sts


def test_the_log_in_page_carries_the_security_headers(client: FlaskClient) -> None:
    response = client.get("/connexion")
    assert response.status_code == 200
    _assert_page_headers(response)
    assert "no-store" in response.headers["Cache-Control"]


def test_authenticated_pages_carry_the_security_headers_and_are_not_stored(
    login_as: LoginAs, factory: Factory
) -> None:
    manager = factory.user(factory.org(), roles=(Role.GESTIONNAIRE,))
    client = login_as(manager)
    for path in ("/", "/compte", "/gestion/comptes", "/gestion/comptes/nouveau"):
        response = client.get(path)
        assert response.status_code == 200, path
        _assert_page_headers(response)
        assert "no-store" in response.headers["Cache-Control"], path


_INLINE_SCRIPT_RE = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
_EVENT_HANDLER_RE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def test_pages_hold_no_inline_script_that_the_csp_would_block(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    org = factory.org()
    manager, member = factory.user(org, roles=(Role.GESTIONNAIRE,)), factory.user(org)
    anonymous = fresh_client(app)
    pages = [anonymous.get(p) for p in ("/connexion", "/mot-de-passe/oubli", "/nexiste-pas")]
    client = login_as(manager)
    pages += [
        client.get(p)
        for p in (
            "/",
            "/compte",
            "/compte/authentification",
            "/gestion/comptes",
            "/gestion/comptes/nouveau",
            f"/gestion/comptes/{member.id}",
        )
    ]
    for page in pages:
        html = page.get_data(as_text=True)
        assert page.mimetype == "text/html"
        assert not _INLINE_SCRIPT_RE.search(html), page.request.path
        assert not _EVENT_HANDLER_RE.search(html), page.request.path
        assert "javascript:" not in html.lower(), page.request.path


def _assert_cookie_hardened(attributes: dict[str, str] | None) -> None:
    assert attributes is not None, "no session cookie set"
    assert "secure" in attributes
    assert "httponly" in attributes
    assert attributes.get("samesite") == "Lax"
    assert attributes.get("path") == "/"
    assert "domain" not in attributes  # __Host- forbids it; the cookie stays on this host


def test_the_session_cookie_is_a_host_only_secure_httponly_lax_cookie(
    client: FlaskClient, factory: Factory
) -> None:
    account = factory.user(factory.org())
    before, at_login = client.get("/connexion"), login(client, account)
    # Before log-in (the form's CSRF token needs a session), and the new one issued at log-in
    _assert_cookie_hardened(set_cookie_attributes(before, COOKIE))
    _assert_cookie_hardened(set_cookie_attributes(at_login, COOKIE))
    # And the portal sets no other cookie
    for response in (before, at_login):
        names = {h.partition("=")[0] for h in response.headers.getlist("Set-Cookie")}
        assert names == {COOKIE}


def test_plain_http_development_drops_only_the_host_prefix_and_secure(
    make_app: Callable[..., Flask], factory: Factory
) -> None:
    # Given the documented relaxation for the embedded default on http://127.0.0.1
    app = make_app(secure_cookies=False)
    client = app.test_client()
    account = factory.user(factory.org())
    # When a browser uses it over plain HTTP
    page = client.get("/connexion")
    # Then the cookie is called `filr` and is not Secure (a browser would drop it otherwise)
    attributes = set_cookie_attributes(page, "filr")
    assert attributes is not None
    assert set_cookie_attributes(page, COOKIE) is None
    assert "secure" not in attributes
    # But everything plain HTTP allows is kept
    assert "httponly" in attributes
    assert attributes.get("samesite") == "Lax"
    assert attributes.get("path") == "/"
    assert "domain" not in attributes
    csp = _csp(page)
    assert "'unsafe-inline'" not in csp["script-src"] and csp["frame-ancestors"] == ["'none'"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    # And log-in works there
    assert login(client, account).status_code == 302
    assert client.get("/").status_code == 200


# --- error pages -----------------------------------------------------------------------


def test_an_unknown_page_answers_a_french_404_with_its_request_id(
    login_as: LoginAs, factory: Factory, client: FlaskClient
) -> None:
    anonymous = client.get("/nexiste-pas")
    assert anonymous.status_code == 404
    logged_in = login_as(factory.user(factory.org())).get("/nexiste/toujours-pas")
    assert logged_in.status_code == 404
    for response in (anonymous, logged_in):
        html = response.get_data(as_text=True)
        assert '<html lang="fr"' in html
        assert "Page introuvable" in html
        assert_request_id_shown(response)
        _assert_page_headers(response)


def test_two_requests_get_two_request_ids(client: FlaskClient) -> None:
    first = client.get("/nexiste-pas").headers["X-Request-ID"]
    second = client.get("/nexiste-pas").headers["X-Request-ID"]
    assert first != second


def test_an_unexpected_error_shows_the_request_id_and_no_traceback(
    make_app: Callable[..., Flask], login_as: LoginAs, factory: Factory
) -> None:
    # Given a view that fails with details that must not leak
    app = make_app()

    def explode() -> str:
        raise RuntimeError("database password is hunter2 at /srv/secret/path.py")

    app.add_url_rule("/test-explosion", "test_explosion", explode)
    client = login_as(factory.user(factory.org()), on=app.test_client())
    # When it is requested
    response = client.get("/test-explosion")
    # Then a French 500 page with the request id, and nothing of the exception
    assert response.status_code == 500
    html = response.get_data(as_text=True)
    assert "Erreur inattendue" in html
    assert_request_id_shown(response)
    for leak in ("Traceback", "RuntimeError", "hunter2", "/srv/secret", "explode", 'File "'):
        assert leak not in html, leak
    _assert_page_headers(response)


def test_an_unknown_api_path_answers_problem_json(
    login_as: LoginAs, factory: Factory, client: FlaskClient
) -> None:
    anonymous = client.get("/api/nexiste-pas")
    assert anonymous.status_code == 401
    assert anonymous.mimetype == "application/problem+json"
    logged_in = login_as(factory.user(factory.org())).get("/api/nexiste-pas")
    assert logged_in.status_code == 404
    assert logged_in.mimetype == "application/problem+json"
    for response in (anonymous, logged_in):
        body = response.get_json(force=True)
        assert body["status"] == response.status_code
        assert body["request_id"] == response.headers["X-Request-ID"]
        assert REQUEST_ID_RE.match(body["request_id"])


# --- another organisation --------------------------------------------------------------


def _snapshot(app: Flask, user_id: str) -> tuple[Any, ...]:
    """Everything an account action could change about *user_id*."""
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user is not None

        def count(model: Any) -> int:
            return int(
                db.session.scalar(
                    sa.select(sa.func.count()).select_from(model).where(model.user_id == user_id)
                )
                or 0
            )

        return (
            user.status,
            user.password_hash,
            user.totp_secret,
            user.mfa_reset_at,
            count(UserToken),
            count(RecoveryCode),
            count(ServerSession),
        )


# The status in which each action would succeed on an account of one's own organisation.
ACTIONS = [
    ("suspendre", AccountStatus.ACTIVE),
    ("reactiver", AccountStatus.SUSPENDED),
    ("revoquer", AccountStatus.ACTIVE),
    ("reinitialiser-mfa", AccountStatus.ACTIVE),
    ("renvoyer-activation", AccountStatus.PENDING),
]


@pytest.mark.parametrize(("action", "status"), ACTIONS)
def test_account_manager_cannot_act_on_an_account_of_another_organisation(
    app: Flask,
    login_as: LoginAs,
    factory: Factory,
    smtp: SmtpSink,
    action: str,
    status: AccountStatus,
) -> None:
    # Given the account manager of organisation A, a logged-in user of organisation B,
    # and a user of A in the same state (the control)
    org_a, org_b = factory.org(departement="62"), factory.org(departement="59")
    manager = factory.user(org_a, roles=(Role.GESTIONNAIRE,))
    outsider = factory.user(org_b, status=status)
    colleague = factory.user(org_a, status=status)
    if status == AccountStatus.ACTIVE:
        login_as(outsider, on=app.test_client())
    client = login_as(manager)
    before = _snapshot(app, outsider.id)
    token = csrf_of(client, "/gestion/comptes")
    # When the manager looks at the outsider's account and tries the action on it
    detail = client.get(f"/gestion/comptes/{outsider.id}")
    acted = client.post(f"/gestion/comptes/{outsider.id}/{action}", data={"csrf_token": token})
    listing = client.get("/gestion/comptes").get_data(as_text=True)
    # Then the account looks like one that does not exist, and nothing changed
    assert detail.status_code == 404
    assert acted.status_code == 404
    assert outsider.email not in listing and outsider.id not in listing
    assert _snapshot(app, outsider.id) == before
    assert smtp.to(outsider.email) == []
    assert not any(row.target_id == outsider.id for row in audit_rows(app))
    # (control: the same action on the manager's own organisation does something)
    colleague_before = _snapshot(app, colleague.id)
    assert client.get(f"/gestion/comptes/{colleague.id}").status_code == 200
    ok = client.post(f"/gestion/comptes/{colleague.id}/{action}", data={"csrf_token": token})
    assert ok.status_code == 302
    assert _snapshot(app, colleague.id) != colleague_before


def test_a_user_who_is_not_account_manager_gets_404_on_account_management(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    # Given an agent and a colleague of the same organisation
    org = factory.org()
    agent, colleague = factory.user(org), factory.user(org)
    client = login_as(agent)
    before = _snapshot(app, colleague.id)
    token = csrf_of(client, "/compte")
    # When the agent tries the account manager's pages
    for path in (
        "/gestion/comptes",
        "/gestion/comptes/nouveau",
        f"/gestion/comptes/{colleague.id}",
    ):
        assert client.get(path).status_code == 404, path
    for action, _status in ACTIONS:
        url = f"/gestion/comptes/{colleague.id}/{action}"
        assert client.post(url, data={"csrf_token": token}).status_code == 404, url
    created = client.post(
        "/gestion/comptes/nouveau",
        data={
            "csrf_token": token,
            "full_name": "Eve",
            "email": "eve@example.org",
            "roles": "agent",
        },
    )
    # Then nothing is shown, nothing changes
    assert created.status_code == 404
    assert _snapshot(app, colleague.id) == before
    assert audit_rows(app, AuditAction.ACCOUNT_CREATED) == []


def test_an_account_manager_cannot_act_on_their_own_account(
    app: Flask, login_as: LoginAs, factory: Factory
) -> None:
    manager = factory.user(factory.org(), roles=(Role.GESTIONNAIRE,))
    client = login_as(manager)
    token = csrf_of(client, "/gestion/comptes")
    assert client.get(f"/gestion/comptes/{manager.id}").status_code == 404
    response = client.post(f"/gestion/comptes/{manager.id}/revoquer", data={"csrf_token": token})
    assert response.status_code == 404
    assert client.get("/").status_code == 200
