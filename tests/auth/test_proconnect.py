"""ProConnect log-in against a real OpenID provider (npm `oidc-provider`, tests/support/oidc.py).

The browser is simulated: the portal's side by Flask's test client, the provider's by an HTTP
client with its own cookies, which fills the provider's log-in form and follows its redirects
back to the portal's callback. The tokens, their signatures and the checks are all real; the
refusals of altered ID tokens go through a man in the middle (`TamperingProxy`) that alters
the provider's real answer and signs it again. Chromium walks the happy path in
tests/browser/test_proconnect_journey.py.
"""

from __future__ import annotations

import html
import http.cookiejar
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from audit import AuditAction
from portal.accounts.models import AccountStatus, User
from portal.auth import proconnect
from portal.auth.models import FederatedIdentity, SecurityKey, ServerSession
from portal.db import db, utcnow
from portal.orgs.models import Organisation
from portal.settings import Settings, SettingsError
from tests.conftest import audit_rows, csrf_of, https, login, reset_totp_step
from tests.factories import Account, Factory
from tests.support.oidc import OidcProvider, TamperingProxy, oidc_provider, provider_key

BASE = "https://filr.test"
CALLBACK = BASE + proconnect.CALLBACK_PATH
CLIENT_SECRET = secrets.token_urlsafe(32)
CLIENT = {
    "client_id": "filr-portal",
    "client_secret": CLIENT_SECRET,
    "redirect_uris": [CALLBACK],
    "post_logout_redirect_uris": [BASE + proconnect.POST_LOGOUT_PATH],
}
USERS: dict[str, dict[str, Any]] = {
    # ProConnect asserts a second factor with amr "mfa" (resources/claim_amr.md).
    "camille": {
        "sub": "sub-camille",
        "email": "camille.martin@cd62.example.fr",
        "given_name": "Camille",
        "usual_name": "Martin",
        "acr": "eidas1",
        "amr": ["pwd", "mfa"],
    },
    # A password only: the portal asks its own second factor.
    "dominique": {
        "sub": "sub-dominique",
        "email": "dominique.petit@cd62.example.fr",
        "given_name": "Dominique",
        "usual_name": "Petit",
        "acr": "eidas1",
        "amr": ["pwd"],
    },
    # The eIDAS "renforcé" level: a second factor too.
    "eidas": {
        "sub": "sub-eidas",
        "email": "sacha.roux@cd62.example.fr",
        "given_name": "Sacha",
        "usual_name": "Roux",
        "acr": "eidas2",
        "amr": ["pwd"],
    },
    # Known to ProConnect, unknown to the portal.
    "inconnu": {
        "sub": "sub-inconnu",
        "email": "personne@ailleurs.example.fr",
        "given_name": "Claude",
        "usual_name": "Inconnu",
        "acr": "eidas1",
        "amr": ["pwd", "mfa"],
    },
}


@dataclass
class Bed:
    """The module's provider, its signing key, the man in the middle and the users file."""

    provider: OidcProvider
    proxy: TamperingProxy
    users_file: Path

    def set_user(self, login: str, **claims: Any) -> None:
        users = json.loads(self.users_file.read_text())
        users[login] = {**users.get(login, {}), **claims}
        self.users_file.write_text(json.dumps(users))


@pytest.fixture
def backend() -> str:
    """SQLite for these tests; the first one runs on PostgreSQL too (its own parameters)."""
    return "sqlite"


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    where = tmp_path_factory.mktemp("oidc")
    users_file = where / "users.json"
    users_file.write_text(json.dumps(USERS))
    key = provider_key()
    with (
        oidc_provider(
            where / "oidc.log", CLIENT, USERS, users_file=users_file, jwks={"keys": [key]}
        ) as provider,
        TamperingProxy(provider, key) as proxy,
    ):
        yield Bed(provider, proxy, users_file)


@pytest.fixture
def pc_app(make_app: Callable[..., Flask], bed: Bed) -> Iterator[Flask]:
    """The portal with ProConnect configured (through the proxy, which passes by default)."""
    bed.users_file.write_text(json.dumps(USERS))
    bed.proxy.mode = "pass"
    proconnect.forget_cached_metadata()
    yield make_app(
        proconnect_issuer=bed.provider.issuer,
        proconnect_discovery_url=bed.proxy.discovery_url,
        proconnect_client_id=CLIENT["client_id"],
        proconnect_client_secret=CLIENT_SECRET,
        proconnect_timeout_seconds=3,
    )
    proconnect.forget_cached_metadata()


@pytest.fixture
def pc_client(pc_app: Flask) -> FlaskClient:
    return https(pc_app.test_client())


@pytest.fixture
def pc_factory(pc_app: Flask) -> Factory:
    return Factory(pc_app)


def _enabled_org(app: Flask, factory: Factory, enabled: bool = True) -> str:
    org_id = factory.org()
    with app.app_context():
        db.session.execute(
            sa.update(Organisation)
            .where(Organisation.id == org_id)
            .values(proconnect_enabled=enabled)
        )
        db.session.commit()
    return org_id


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def _at_provider(start: str, login: str, stop_at: str = CALLBACK) -> str:
    """A browser at the provider: fill its log-in form as *login*, follow its redirects until
    one leaves for *stop_at*; that URL."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPCookieProcessor(jar))
    url, data = start, None
    for _ in range(12):
        try:
            request = urllib.request.Request(url, data=data)  # noqa: S310 - the loopback provider
            page = opener.open(request, timeout=5).read().decode()
            form = re.search(r'<form[^>]*action="([^"]+)"', page)
            assert form, page[:500]
            fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
            fields.update(login=login, password="peu importe")
            url = urllib.parse.urljoin(url, html.unescape(form.group(1)))
            data = urllib.parse.urlencode(fields).encode()
        except urllib.error.HTTPError as redirect:
            location = urllib.parse.urljoin(url, redirect.headers["Location"])
            if location.startswith(stop_at):
                return location
            url, data = location, None
    raise AssertionError("the provider never sent the browser back")


def _proconnect(client: FlaskClient, login: str) -> Any:
    """The whole round trip: the portal's button, the provider, the portal's callback."""
    started = client.get("/connexion/proconnect")
    assert started.status_code == 302, started.get_data(as_text=True)[:300]
    back = _at_provider(started.headers["Location"], login)
    parts = urllib.parse.urlsplit(back)
    return client.get(parts.path + "?" + parts.query)


def _links(app: Flask) -> list[tuple[str, str, str]]:
    with app.app_context():
        return [
            (link.user_id, link.issuer, link.subject)
            for link in db.session.execute(sa.select(FederatedIdentity)).scalars()
        ]


def _home(client: FlaskClient) -> Any:
    return client.get("/")


def _logged_in_as(client: FlaskClient, name: str) -> bool:
    page = _home(client)
    return page.status_code == 200 and f"Bonjour {name}" in page.get_data(as_text=True)


def _details(row: Any) -> dict[str, Any]:
    return dict(json.loads(row.details)) if row.details else {}


def _failure_reasons(app: Flask) -> list[str]:
    return [
        _details(row).get("reason", "")
        for row in audit_rows(app, AuditAction.AUTH_LOGIN_FAILURE)
        if _details(row).get("via") == "proconnect"
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_first_log_in_links_after_password_and_second_factor_then_the_sub_alone_logs_in(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    # Given an existing account of an organisation that opted in
    org = _enabled_org(pc_app, pc_factory)
    account = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    # When its holder comes back from ProConnect for the first time
    first = _proconnect(pc_client, "camille")
    # Then nothing is linked yet and no session is open: the password log-in is asked for
    assert first.status_code == 302
    assert urllib.parse.urlsplit(first.headers["Location"]).path == "/connexion"
    assert "Première connexion avec ProConnect" in pc_client.get("/connexion").get_data(
        as_text=True
    )
    assert _links(pc_app) == []
    assert not _logged_in_as(pc_client, "Camille Dupuis")
    # When the person logs in once with password and TOTP in the same browser
    done = login(pc_client, account)
    assert done.status_code == 302
    # Then the account is linked by the provider's (issuer, sub), and the link is audited
    assert _links(pc_app) == [(account.id, bed.provider.issuer, "sub-camille")]
    [linked] = audit_rows(pc_app, AuditAction.AUTH_PROCONNECT_LINKED)
    assert linked.actor_id == account.id
    assert _details(linked) == {"provider": "ProConnect"}
    assert "désormais relié" in pc_client.get("/").get_data(as_text=True)

    # And afterwards, in another browser, ProConnect alone (it asserted "mfa") logs in
    other = https(pc_app.test_client())
    again = _proconnect(other, "camille")
    assert again.status_code == 302 and again.headers["Location"] == "/"
    assert _logged_in_as(other, "Camille Dupuis")
    success = audit_rows(pc_app, AuditAction.AUTH_LOGIN_SUCCESS)[-1]
    assert success.actor_id == account.id
    assert _details(success)["via"] == "proconnect"
    assert _details(success)["provider"] == "ProConnect"
    assert _details(success)["amr"] == "pwd,mfa"
    mfa = audit_rows(pc_app, AuditAction.AUTH_MFA_SUCCESS)[-1]
    assert _details(mfa)["factor"] == "provider"
    # The account itself is the manager's: the provider's names changed nothing
    with pc_app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        assert user.full_name == "Camille Dupuis"
        assert {str(r) for r in user.roles} == {"agent"}
        # The session keeps the ID token for the log-out only sealed, never in clear
        row = db.session.execute(
            sa.select(ServerSession).where(ServerSession.user_id == account.id)
        ).scalars()
        stored = " ".join(r.data for r in row)
        assert "v1:" in stored and "eyJ" not in stored


def test_log_out_ends_the_provider_session_and_its_state_is_checked(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    # Given an account logged in through ProConnect
    org = _enabled_org(pc_app, pc_factory)
    account = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    _link(pc_app, account, bed, "sub-camille")
    assert _proconnect(pc_client, "camille").headers["Location"] == "/"
    # When the person logs out
    token = csrf_of(pc_client, "/")
    page = pc_client.post("/deconnexion", data={"csrf_token": token})
    # Then the portal's session is gone and the browser is sent to end_session, which the CSP
    # of the page holding the log-out form lets a form's redirect reach
    assert page.status_code == 302
    url = page.headers["Location"]
    assert f"form-action 'self' {bed.provider.issuer};" in page.headers["Content-Security-Policy"]
    assert url.startswith(bed.provider.discovery()["end_session_endpoint"])
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["post_logout_redirect_uri"] == BASE + proconnect.POST_LOGOUT_PATH
    assert query["id_token_hint"].count(".") == 2
    assert not _logged_in_as(pc_client, "Camille Dupuis")
    logout = audit_rows(pc_app, AuditAction.AUTH_LOGOUT)[-1]
    assert _details(logout) == {"provider": "ProConnect"}
    # And the provider accepts the hint and comes back with the same state
    back = _at_provider(url, "camille", stop_at=BASE + proconnect.POST_LOGOUT_PATH)
    assert (
        dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))["state"] == (query["state"])
    )
    parts = urllib.parse.urlsplit(back)
    pc_client.get(parts.path + "?" + parts.query)
    assert "déconnecté(e) de Fil&#39;R et de ProConnect" in pc_client.get("/connexion").get_data(
        as_text=True
    )


def _link(app: Flask, account: Account, bed: Bed, subject: str) -> None:
    with app.app_context():
        db.session.add(
            FederatedIdentity(
                user_id=account.id,
                issuer=bed.provider.issuer,
                subject=subject,
                linked_at=utcnow(),
            )
        )
        db.session.commit()


def test_a_changed_e_mail_at_the_provider_does_not_move_the_link(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    # Given Camille's account linked to her sub, and a colleague's account
    org = _enabled_org(pc_app, pc_factory)
    camille = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    pc_factory.user(org, email="alex.collegue@cd62.example.fr", name="Alex Collègue")
    _link(pc_app, camille, bed, "sub-camille")
    # When the provider now gives her the colleague's address
    bed.set_user("camille", email="alex.collegue@cd62.example.fr")
    # Then ProConnect still logs her into her own account, by her sub
    assert _proconnect(pc_client, "camille").headers["Location"] == "/"
    assert _logged_in_as(pc_client, "Camille Dupuis")
    # And another identity claiming Camille's address cannot take her account over
    bed.set_user("usurpateur", sub="sub-other", email=USERS["camille"]["email"], amr=["mfa"])
    stranger = https(pc_app.test_client())
    refused = _proconnect(stranger, "usurpateur")
    assert refused.status_code == 403
    assert "Aucun compte" in refused.get_data(as_text=True)
    assert "linked_to_another_identity" in _failure_reasons(pc_app)
    assert _links(pc_app) == [(camille.id, bed.provider.issuer, "sub-camille")]


def test_an_unknown_person_is_refused_with_a_french_page(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory
) -> None:
    _enabled_org(pc_app, pc_factory)
    refused = _proconnect(pc_client, "inconnu")
    assert refused.status_code == 403
    body = refused.get_data(as_text=True)
    assert "Aucun compte Fil&#39;R pour cette identité" in body
    assert "gestionnaire de comptes" in body
    assert _failure_reasons(pc_app) == ["unknown_person"]
    assert USERS["inconnu"]["email"] not in json.dumps(
        [_details(r) for r in audit_rows(pc_app)], ensure_ascii=False
    )
    assert pc_client.get("/").status_code == 302  # no session


def test_an_organisation_that_did_not_opt_in_and_a_suspended_account_are_refused(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    closed = _enabled_org(pc_app, pc_factory, enabled=False)
    camille = pc_factory.user(closed, email=USERS["camille"]["email"], name="Camille Dupuis")
    _link(pc_app, camille, bed, "sub-camille")
    assert _proconnect(pc_client, "camille").status_code == 403
    opened = _enabled_org(pc_app, pc_factory)
    pc_factory.user(
        opened,
        email=USERS["eidas"]["email"],
        name="Sacha Roux",
        status=AccountStatus.SUSPENDED,
    )
    assert _proconnect(https(pc_app.test_client()), "eidas").status_code == 403
    assert _failure_reasons(pc_app) == ["organisation_not_enabled", "account_suspended"]


def test_without_a_second_factor_from_the_provider_the_portal_asks_its_own(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    # Given a linked account whose provider log-in was a password only (amr ["pwd"])
    org = _enabled_org(pc_app, pc_factory)
    dominique = pc_factory.user(org, email=USERS["dominique"]["email"], name="Dominique Petit")
    _link(pc_app, dominique, bed, "sub-dominique")
    back = _proconnect(pc_client, "dominique")
    # Then the portal asks the TOTP code before any session
    assert back.headers["Location"] == "/connexion/proconnect/code"
    assert not _logged_in_as(pc_client, "Dominique Petit")
    token = csrf_of(pc_client, "/connexion/proconnect/code")
    wrong = "000000" if dominique.code() != "000000" else "111111"
    bad = pc_client.post("/connexion/proconnect/code", data={"csrf_token": token, "code": wrong})
    assert "Code incorrect." in bad.get_data(as_text=True)
    assert not _logged_in_as(pc_client, "Dominique Petit")
    reset_totp_step(pc_app, dominique)
    good = pc_client.post(
        "/connexion/proconnect/code", data={"csrf_token": token, "code": dominique.code()}
    )
    assert good.status_code == 302 and good.headers["Location"] == "/"
    assert _logged_in_as(pc_client, "Dominique Petit")
    failure = audit_rows(pc_app, AuditAction.AUTH_MFA_FAILURE)[-1]
    assert _details(failure)["via"] == "proconnect" and _details(failure)["reason"] == "bad_code"
    success = audit_rows(pc_app, AuditAction.AUTH_LOGIN_SUCCESS)[-1]
    assert _details(success)["via"] == "proconnect" and _details(success)["amr"] == "pwd"
    assert _details(audit_rows(pc_app, AuditAction.AUTH_MFA_SUCCESS)[-1]).get("factor") is None


def test_without_a_second_factor_from_the_provider_an_account_with_a_key_is_sent_to_it(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    org = _enabled_org(pc_app, pc_factory)
    dominique = pc_factory.user(org, email=USERS["dominique"]["email"], name="Dominique Petit")
    _link(pc_app, dominique, bed, "sub-dominique")
    with pc_app.app_context():
        db.session.add(
            SecurityKey(
                user_id=dominique.id,
                credential_id="Y3JlZGVudGlhbA",
                public_key=b"not a real COSE key",
                sign_count=0,
                name="Clé bleue",
                created_at=utcnow(),
            )
        )
        db.session.commit()
    back = _proconnect(pc_client, "dominique")
    assert back.headers["Location"] == "/connexion/cle"
    assert pc_client.get("/connexion/cle").status_code == 200  # the key's ceremony page
    assert not _logged_in_as(pc_client, "Dominique Petit")


def test_an_eidas2_acr_counts_as_the_second_factor(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    org = _enabled_org(pc_app, pc_factory)
    sacha = pc_factory.user(org, email=USERS["eidas"]["email"], name="Sacha Roux")
    _link(pc_app, sacha, bed, "sub-eidas")
    assert _proconnect(pc_client, "eidas").headers["Location"] == "/"
    assert _details(audit_rows(pc_app, AuditAction.AUTH_LOGIN_SUCCESS)[-1])["acr"] == "eidas2"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("wrong_nonce", "id_token_nonce"),
        ("wrong_audience", "id_token_audience"),
        ("wrong_signature", "id_token_signature:BadSignatureError"),
    ],
)
def test_an_altered_id_token_is_refused(
    pc_app: Flask,
    pc_client: FlaskClient,
    pc_factory: Factory,
    bed: Bed,
    mode: str,
    reason: str,
) -> None:
    # Given a linked account, and a man in the middle altering the provider's ID token
    org = _enabled_org(pc_app, pc_factory)
    camille = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    _link(pc_app, camille, bed, "sub-camille")
    bed.proxy.mode = mode
    before = bed.proxy.token_requests
    # When the person comes back from the provider
    refused = _proconnect(pc_client, "camille")
    # Then the token endpoint was called, the ID token refused, and no session opened
    assert bed.proxy.token_requests == before + 1
    assert refused.status_code == 400
    assert "La connexion avec ProConnect n&#39;a pas abouti" in refused.get_data(as_text=True)
    assert _failure_reasons(pc_app) == [reason]
    assert not _logged_in_as(pc_client, "Camille Dupuis")
    assert audit_rows(pc_app, AuditAction.AUTH_LOGIN_SUCCESS) == []


def test_a_foreign_state_and_a_replayed_answer_are_refused(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    org = _enabled_org(pc_app, pc_factory)
    camille = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    _link(pc_app, camille, bed, "sub-camille")
    # An answer obtained in the attacker's browser, replayed in the victim's (login CSRF)
    attacker = https(pc_app.test_client())
    started = attacker.get("/connexion/proconnect")
    back = urllib.parse.urlsplit(_at_provider(started.headers["Location"], "camille"))
    pc_client.get("/connexion/proconnect")  # the victim's own pending request
    refused = pc_client.get(back.path + "?" + back.query)
    assert refused.status_code == 400
    # The attacker's own browser may use it once, and only once
    assert attacker.get(back.path + "?" + back.query).headers["Location"] == "/"
    again = https(pc_app.test_client()).get(back.path + "?" + back.query)
    assert again.status_code == 400
    assert _failure_reasons(pc_app) == ["bad_state", "no_pending_request"]


def test_a_provider_that_is_down_gives_a_french_page_and_the_password_still_works(
    make_app: Callable[..., Flask], pc_app: Flask, pc_factory: Factory, bed: Bed
) -> None:
    org = _enabled_org(pc_app, pc_factory)
    account = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    # The token endpoint fails during a log-in (the discovery still answers)
    client = https(pc_app.test_client())
    bed.proxy.mode = "down"
    failed = _proconnect(client, "camille")
    assert failed.status_code == 503
    assert "ProConnect est momentanément indisponible" in failed.get_data(as_text=True)
    # And a provider that does not answer at all: the button's page says so at once
    down = make_app(
        proconnect_issuer="http://127.0.0.1:9",
        proconnect_discovery_url=None,
        proconnect_client_id=CLIENT["client_id"],
        proconnect_client_secret=CLIENT_SECRET,
        proconnect_timeout_seconds=1,
    )
    proconnect.forget_cached_metadata()
    browser = https(down.test_client())
    page = browser.get("/connexion/proconnect")
    assert page.status_code == 503
    body = page.get_data(as_text=True)
    assert "ProConnect indisponible" in body and "mot de passe" in body
    # The password log-in works as ever
    assert login(browser, account).status_code == 302
    assert _logged_in_as(browser, "Camille Dupuis")
    assert _failure_reasons(pc_app).count("provider_unavailable") == 2


def test_a_proconnect_session_keeps_the_idle_timeout(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    org = _enabled_org(pc_app, pc_factory)
    camille = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    _link(pc_app, camille, bed, "sub-camille")
    assert _proconnect(pc_client, "camille").headers["Location"] == "/"
    with pc_app.app_context():
        db.session.execute(
            sa.update(ServerSession)
            .where(ServerSession.user_id == camille.id)
            .values(last_seen_at=utcnow() - timedelta(minutes=16))
        )
        db.session.commit()
    assert pc_client.get("/").status_code == 302
    assert audit_rows(pc_app, AuditAction.AUTH_SESSION_EXPIRED)


def test_the_login_page_offers_proconnect_only_when_configured(
    client: FlaskClient, pc_client: FlaskClient
) -> None:
    assert "proconnect-login" not in client.get("/connexion").get_data(as_text=True)
    assert client.get("/connexion/proconnect").status_code == 404
    assert "S’identifier avec" in pc_client.get("/connexion").get_data(as_text=True)


def test_proconnect_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "proconnect_secret"
    secret_file.write_text("un-secret-de-test\n")
    monkeypatch.setenv("FILR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FILR_PROCONNECT_ISSUER", "https://auth.proconnect.gouv.fr/api/v2/")
    monkeypatch.setenv("FILR_PROCONNECT_CLIENT_ID", "filr")
    monkeypatch.setenv("FILR_PROCONNECT_CLIENT_SECRET_FILE", str(secret_file))
    settings = Settings.from_env()
    assert settings.proconnect_enabled
    assert settings.proconnect_issuer == "https://auth.proconnect.gouv.fr/api/v2"
    assert settings.proconnect_client_secret == "un-secret-de-test"
    assert "un-secret-de-test" not in repr(settings)
    monkeypatch.setenv("FILR_PROCONNECT_SCOPES", "email")
    with pytest.raises(SettingsError):
        Settings.from_env()
    monkeypatch.delenv("FILR_PROCONNECT_SCOPES")
    # The keys come from the issuer and its origin goes into the CSP: HTTPS, nothing more
    for bad in (
        "http://auth.proconnect.gouv.fr/api/v2",
        "https://x@auth.proconnect.gouv.fr",
        "https://auth.proconnect.gouv.fr; script-src *",
        "https://auth.proconnect.gouv.fr/?a=b",
    ):
        monkeypatch.setenv("FILR_PROCONNECT_ISSUER", bad)
        with pytest.raises(SettingsError, match="PROCONNECT_ISSUER"):
            Settings.from_env()
    monkeypatch.setenv("FILR_PROCONNECT_ISSUER", "https://auth.proconnect.gouv.fr/api/v2")
    monkeypatch.setenv("FILR_PROCONNECT_DISCOVERY_URL", "http://proxy.example/.well-known/x")
    with pytest.raises(SettingsError, match="PROCONNECT_DISCOVERY_URL"):
        Settings.from_env()
    monkeypatch.delenv("FILR_PROCONNECT_DISCOVERY_URL")
    monkeypatch.delenv("FILR_PROCONNECT_CLIENT_SECRET_FILE")
    assert not Settings.from_env().proconnect_enabled


def test_my_account_shows_the_link_and_detaches_it(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    # Given Camille logged in through ProConnect
    org = _enabled_org(pc_app, pc_factory)
    camille = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    _link(pc_app, camille, bed, "sub-camille")
    assert _proconnect(pc_client, "camille").headers["Location"] == "/"
    page = pc_client.get("/compte").get_data(as_text=True)
    assert "relié à votre identité ProConnect depuis le" in page
    # When she detaches her account
    token = csrf_of(pc_client, "/compte")
    done = pc_client.post("/compte/proconnect/detacher", data={"csrf_token": token})
    # Then the link is gone (audited), and ProConnect asks the password log-in again
    assert done.status_code == 302
    assert _links(pc_app) == []
    [row] = audit_rows(pc_app, AuditAction.AUTH_PROCONNECT_UNLINKED)
    assert row.actor_id == camille.id
    again = _proconnect(https(pc_app.test_client()), "camille")
    assert urllib.parse.urlsplit(again.headers["Location"]).path == "/connexion"


def test_the_managers_mfa_reset_and_a_departure_remove_the_link(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    # Given Camille's account linked to her ProConnect identity (which asserts "mfa")
    from datetime import date

    import audit
    from portal.accounts import services as accounts
    from portal.accounts.departure import record_departure

    org = _enabled_org(pc_app, pc_factory)
    camille = pc_factory.user(org, email=USERS["camille"]["email"], name="Camille Dupuis")
    _link(pc_app, camille, bed, "sub-camille")
    ctx = audit.Context(source_ip="127.0.0.1", user_agent="test", request_id="test")
    # When the account manager resets her second factor (a lost or compromised factor)
    with pc_app.app_context():
        user = db.session.get(User, camille.id)
        assert user is not None
        accounts.reset_mfa(db.session, user, audit.SYSTEM, ctx)
        db.session.commit()
    # Then the link is gone (audited): ProConnect alone no longer opens the account, and a
    # new link needs the password and the new second factor
    assert _links(pc_app) == []
    [row] = audit_rows(pc_app, AuditAction.AUTH_PROCONNECT_UNLINKED)
    assert row.target_id == camille.id
    assert _details(row) == {"provider": "ProConnect", "reason": "mfa_reset"}
    back = _proconnect(pc_client, "camille")
    assert urllib.parse.urlsplit(back.headers["Location"]).path == "/connexion"
    assert not _logged_in_as(pc_client, "Camille Dupuis")
    # And a departure (a revocation) removes it too
    _link(pc_app, camille, bed, "sub-camille")
    with pc_app.app_context():
        user = db.session.get(User, camille.id)
        assert user is not None
        record_departure(
            db.session,
            user,
            reason="fin_contrat",
            left_on=date.today(),
            actor=audit.SYSTEM,
            ctx=ctx,
            today=date.today(),
        )
    assert _links(pc_app) == []
    last = audit_rows(pc_app, AuditAction.AUTH_PROCONNECT_UNLINKED)[-1]
    assert _details(last) == {"provider": "ProConnect", "reason": "revocation"}


def _add_key(app: Flask, account: Account) -> None:
    with app.app_context():
        db.session.add(
            SecurityKey(
                user_id=account.id,
                credential_id="Y3JlZGVudGlhbA",
                public_key=b"not a real COSE key",
                sign_count=0,
                name="Clé bleue",
                created_at=utcnow(),
            )
        )
        db.session.commit()


def test_a_role_that_must_hold_a_key_is_sent_to_its_key_even_when_the_provider_asserts_mfa(
    make_app: Callable[..., Flask], bed: Bed
) -> None:
    # Given FILR_WEBAUTHN_REQUIRED_ROLES=securite, and a security officer holding a key, linked
    from portal.accounts.models import Role

    proconnect.forget_cached_metadata()
    app = make_app(
        proconnect_issuer=bed.provider.issuer,
        proconnect_discovery_url=bed.proxy.discovery_url,
        proconnect_client_id=CLIENT["client_id"],
        proconnect_client_secret=CLIENT_SECRET,
        proconnect_timeout_seconds=3,
        webauthn_required_roles=frozenset({"securite"}),
    )
    factory = Factory(app)
    org = _enabled_org(app, factory)
    officer = factory.user(
        org, roles=(Role.SECURITE,), email=USERS["camille"]["email"], name="Camille Dupuis"
    )
    agent = factory.user(org, email=USERS["eidas"]["email"], name="Sacha Roux")
    _link(app, officer, bed, "sub-camille")
    _link(app, agent, bed, "sub-eidas")
    _add_key(app, officer)
    # When the provider asserts a second factor ("mfa"): a relayable code, not the key the
    # policy asks of this role
    browser = https(app.test_client())
    back = _proconnect(browser, "camille")
    # Then the key is asked for, and no session opens on the provider's word alone
    assert back.headers["Location"] == "/connexion/cle"
    assert not _logged_in_as(browser, "Camille Dupuis")
    assert audit_rows(app, AuditAction.AUTH_LOGIN_SUCCESS) == []
    # While an account outside those roles keeps the provider's second factor
    other = https(app.test_client())
    assert _proconnect(other, "eidas").headers["Location"] == "/"
    proconnect.forget_cached_metadata()


def test_an_error_answer_is_audited_by_its_code_only(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory
) -> None:
    # The callback's `error` is whatever the URL says: only an OAuth error code is kept
    started = pc_client.get("/connexion/proconnect")
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(started.headers["Location"]).query))[
        "state"
    ]
    query = urllib.parse.urlencode({"state": state, "error": "jean.dupont@exemple.fr a dit"})
    refused = pc_client.get(proconnect.CALLBACK_PATH + "?" + query)
    assert refused.status_code == 400
    started = pc_client.get("/connexion/proconnect")
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(started.headers["Location"]).query))[
        "state"
    ]
    query = urllib.parse.urlencode({"state": state, "error": "access_denied"})
    assert pc_client.get(proconnect.CALLBACK_PATH + "?" + query).status_code == 400
    assert _failure_reasons(pc_app) == ["provider_error:other", "provider_error:access_denied"]


def test_the_local_second_factor_step_stops_when_the_link_or_the_opening_went_meanwhile(
    pc_app: Flask, pc_client: FlaskClient, pc_factory: Factory, bed: Bed
) -> None:
    # Given Dominique waiting at the local second factor after ProConnect
    org = _enabled_org(pc_app, pc_factory)
    dominique = pc_factory.user(org, email=USERS["dominique"]["email"], name="Dominique Petit")
    _link(pc_app, dominique, bed, "sub-dominique")
    assert _proconnect(pc_client, "dominique").headers["Location"] == "/connexion/proconnect/code"
    token = csrf_of(pc_client, "/connexion/proconnect/code")
    # When the link is removed meanwhile (by its holder, or a second-factor reset)
    with pc_app.app_context():
        db.session.execute(sa.delete(FederatedIdentity))
        db.session.commit()
    reset_totp_step(pc_app, dominique)
    page = pc_client.post(
        "/connexion/proconnect/code", data={"csrf_token": token, "code": dominique.code()}
    )
    # Then even the right code opens nothing: the log-in starts again
    assert page.status_code == 302 and page.headers["Location"] == "/connexion"
    assert not _logged_in_as(pc_client, "Dominique Petit")
    assert "no_longer_allowed" in _failure_reasons(pc_app)
    # And an organisation closed meanwhile stops it the same way
    _link(pc_app, dominique, bed, "sub-dominique")
    other = https(pc_app.test_client())
    assert _proconnect(other, "dominique").headers["Location"] == "/connexion/proconnect/code"
    token = csrf_of(other, "/connexion/proconnect/code")
    with pc_app.app_context():
        db.session.execute(
            sa.update(Organisation).where(Organisation.id == org).values(proconnect_enabled=False)
        )
        db.session.commit()
    reset_totp_step(pc_app, dominique)
    page = other.post(
        "/connexion/proconnect/code", data={"csrf_token": token, "code": dominique.code()}
    )
    assert page.status_code == 302 and page.headers["Location"] == "/connexion"
    assert not _logged_in_as(other, "Dominique Petit")
