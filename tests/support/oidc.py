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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def oidc_provider(
    log: Path, client: dict[str, Any], users: dict[str, dict[str, Any]]
) -> Iterator[OidcProvider]:
    """Start `oidc-provider` on a free loopback port with *client* and *users*; stop it after."""
    node = shutil.which("node")
    if node is None:
        unavailable("node (for the npm oidc-provider)")
    if not (ROOT / "node_modules" / "oidc-provider").is_dir():
        unavailable("the npm package oidc-provider (npm install --ignore-scripts)")
    port = _free_port()
    env = {
        **os.environ,
        "OIDC_PORT": str(port),
        "OIDC_CLIENT": json.dumps(client),
        "OIDC_USERS": json.dumps(users),
    }
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
