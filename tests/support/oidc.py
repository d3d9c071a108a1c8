"""A real OpenID provider (npm `oidc-provider`, started with node) for the ProConnect tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
STARTUP_TIMEOUT = 20.0


@dataclass(frozen=True)
class OidcProvider:
    """A running provider: its issuer URL and the client it knows."""

    issuer: str
    client: dict[str, Any]

    def discovery(self) -> dict[str, Any]:
        """The provider's metadata (/.well-known/openid-configuration)."""
        url = self.issuer + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - our loopback URL
            metadata: dict[str, Any] = json.load(answer)
            return metadata


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def oidc_provider(
    log: Path,
    client: dict[str, Any],
    users: dict[str, dict[str, Any]],
    *,
    users_file: Path | None = None,
    jwks: dict[str, Any] | None = None,
    port: int | None = None,
) -> Iterator[OidcProvider]:
    """Start `oidc-provider` on a free loopback port with *client* and *users* (or those of
    *users_file*, read at each use) signing with *jwks* (private keys) if given; stop it after."""
    node = shutil.which("node")
    if node is None:
        unavailable("node (for the npm oidc-provider)")
    if not (ROOT / "node_modules" / "oidc-provider").is_dir():
        unavailable("the npm package oidc-provider (npm install --ignore-scripts)")
    port = port or free_port()
    env = {
        **os.environ,
        "OIDC_PORT": str(port),
        "OIDC_CLIENT": json.dumps(client),
        "OIDC_USERS": json.dumps(users),
    }
    if users_file is not None:
        env["OIDC_USERS_FILE"] = str(users_file)
    if jwks is not None:
        env["OIDC_JWKS"] = json.dumps(jwks)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [node, str(SCRIPT)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    provider = OidcProvider(f"http://127.0.0.1:{port}", client)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {log.read_text(errors='replace')}")
            try:
                provider.discovery()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield provider
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class TamperingProxy:
    """A man in the middle between the portal and a real provider, for the refusal tests.

    It serves the provider's discovery document with its own token endpoint, forwards the
    token request to the provider, and hands back the real answer or, by `mode`, one whose
    ID token was altered then signed again: with the provider's own key (*signing_key*, the
    private JWK the provider was started with) and a wrong `nonce` or `aud`, or with another
    key under the provider's key id (a wrong signature). Everything else is the provider's.
    """

    def __init__(self, provider: OidcProvider, signing_key: dict[str, Any]) -> None:
        import http.server
        import threading

        self.provider = provider
        self.signing_key = signing_key
        self.mode = "pass"
        self.token_requests = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return None

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    meta = proxy.provider.discovery()
                    meta["token_endpoint"] = proxy.url + "/token"
                    self._send(200, json.dumps(meta).encode(), "application/json")
                    return
                self._send(404, b"{}", "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                proxy.token_requests += 1
                if proxy.mode == "down":
                    self._send(502, b"Bad Gateway", "text/plain")
                    return
                meta = proxy.provider.discovery()
                forwarded = urllib.request.Request(  # noqa: S310 - the loopback provider
                    meta["token_endpoint"],
                    data=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "")},
                )
                try:
                    with urllib.request.urlopen(forwarded, timeout=5) as answer:  # noqa: S310
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as e:
                    status, payload = e.code, e.read()
                if status == 200 and proxy.mode != "pass":
                    tokens = json.loads(payload)
                    tokens["id_token"] = proxy.alter(tokens["id_token"])
                    payload = json.dumps(tokens).encode()
                self._send(status, payload, "application/json")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def discovery_url(self) -> str:
        """What the portal is told is the provider's discovery document."""
        return self.url + "/.well-known/openid-configuration"

    def alter(self, id_token: str) -> str:
        """The ID token altered as `mode` says, signed again."""
        from joserfc import jwt
        from joserfc.jwk import RSAKey

        key = RSAKey.import_key(self.signing_key)
        header = id_token.split(".")[0]
        claims = jwt.decode(id_token, key).claims
        head = json.loads(_b64decode(header))
        if self.mode == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-the-portal-sent-" + "x" * 16
        elif self.mode == "wrong_audience":
            claims["aud"] = "another-service-provider"
        elif self.mode == "wrong_signature":
            key = RSAKey.generate_key(2048, parameters={"kid": head["kid"]})
        else:
            raise ValueError(self.mode)
        return jwt.encode({"alg": head["alg"], "kid": head["kid"]}, claims, key)

    def __enter__(self) -> TamperingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def provider_key() -> dict[str, Any]:
    """A fresh RSA private JWK for the test provider to sign with."""
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "filr-test-1", "use": "sig", "alg": "RS256"})
    return dict(key.as_dict(private=True))
