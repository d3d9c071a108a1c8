"""Real `filr serve` processes for the operations tests (readiness, metrics, two servers)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.clamd import shared_clamd
from tests.support.services import unavailable

FILR = Path(sys.executable).with_name("filr")
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def portal_env(root: Path, **settings: str) -> dict[str, str]:
    """The environment of a test portal: the caller's FILR_* dropped, *settings* added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILR_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        FILR_DATA_DIR=str(root / "data"),
        FILR_SECRET_KEY=secrets.token_urlsafe(48),
        FILR_SECURE_COOKIES="false",
        FILR_ALLOW_SUPERUSER="1",  # the test PostgreSQL's only role is its superuser
        FILR_CLAMD_URL=shared_clamd().url,  # the session's clamd (tests/support/clamd.py)
        XDG_RUNTIME_DIR=str(root),
    )
    env.update({f"FILR_{name.upper()}": value for name, value in settings.items()})
    return env


@dataclass
class Served:
    """One running `filr serve`."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        """The end of its log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL the master and its workers at once, as a crashed machine would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)


def serve(env: dict[str, str], log: Path, *, workers: int = 2) -> Served:
    """Start `filr serve` on a free port and return once `/sante` answers."""
    if not FILR.exists():
        unavailable(f"the filr console script at {FILR}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**env, "FILR_BASE_URL": env.get("FILR_BASE_URL", url)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(FILR), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers)],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: kill() takes the workers too
        )  # fmt: skip
    served = Served(url, process, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"filr serve exited with {process.returncode}:\n{served.tail()}")
        try:
            with urllib.request.urlopen(url + "/sante", timeout=2) as answer:  # noqa: S310 - our own loopback URL
                if answer.status == 200:
                    return served
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    served.stop()
    pytest.fail(f"filr serve did not answer within {STARTUP_TIMEOUT:.0f} s:\n{served.tail()}")


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    """GET *url*; the status and body, errors included."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback URL
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - as above
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
