"""Real-Chromium fixtures: the portal as a real `filr serve` process, and a headless Chromium."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.clamd import shared_clamd
from tests.support.services import SmtpSink, unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0

# Installed next to the interpreter running pytest (the project's venv), like `.venv/bin/filr`.
FILR = Path(sys.executable).with_name("filr")

# Chromium logs CSP violations to the console too; the page's own report does not depend on
# the wording of a Chromium version, and names the directive and what it blocked.
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


# axe-core (npm, devDependencies) checks every document the journeys load: injected by
# Playwright before the page's own scripts (an init script is not subject to the page's CSP),
# run once the page and the DSFR have started, each violation reported as a console error
# (which fails the journey like any other), and each checked page announced, so that a page
# left before its check is noticed too.
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
_RUN_AXE = """
(() => {
  if (window.top !== window || !location.protocol.startsWith("http")) { return; }
  const frames = (done) => requestAnimationFrame(() => requestAnimationFrame(done));
  const check = () => new Promise(frames)
    .then(() => axe.run(document, { resultTypes: ["violations"] }))
    .then((result) => {
      for (const v of result.violations) {
        const where = v.nodes.slice(0, 5).map((n) => n.target.join(" ")).join(" | ");
        console.error(`axe ${v.id} (${v.impact}) on ${location.pathname}: ${v.help} — ${where}`);
      }
      console.debug(`axe:checked ${location.href}`);
    });
  window.__axeChecked = new Promise((resolve) => {
    const failed = (e) => { console.error(`axe failed: ${e}`); resolve(); };
    const start = () => check().then(resolve, failed);
    if (document.readyState === "complete") { start(); } else { addEventListener("load", start); }
  });
})();
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


@dataclass(frozen=True)
class LiveServer:
    """A running `filr serve` and the environment it was started with."""

    url: str
    env: dict[str, str]
    smtp: SmtpSink
    log: Path
    # Stops the server and starts it again on the same port, data and secrets (a restart).
    restart: Callable[[], None] = field(default=lambda: None, compare=False, repr=False)

    def filr(self, *args: str, stdin: str | None = None) -> str:
        """Run `filr ARGS` against the same database and SMTP server; return its stdout."""
        done = subprocess.run(
            [str(FILR), *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, f"filr {args[:2]} failed: {done.stderr[-2000:]}"
        return done.stdout

    def filr_json(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        """Run `filr ARGS --json` and parse its output."""
        result: dict[str, Any] = json.loads(self.filr(*args, "--json", stdin=stdin))
        return result


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"filr serve exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url + "/sante", timeout=2) as response:  # noqa: S310 - our own http://127.0.0.1 URL
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"filr serve did not answer /sante within {STARTUP_TIMEOUT:.0f} s:\n{_tail(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def serve(
    root: Path, smtp: SmtpSink, *, host_name: str = "127.0.0.1", **extra_env: str
) -> Iterator[LiveServer]:
    """`filr serve` on a free loopback port, data in *root*, SQLite, real SMTP; its public URL
    names *host_name* (WebAuthn needs a domain name: `localhost`), *extra_env* adds settings."""
    if not FILR.exists():
        unavailable(f"the filr console script at {FILR}")
    port = _free_port()
    url = f"http://{host_name}:{port}"
    # Only this process and its CLI calls see these variables; FILR_* of the caller are dropped
    # so a developer's own configuration cannot leak into the test server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILR_")}
    env.update(
        FILR_DATA_DIR=str(root / "data"),
        FILR_DATABASE_URL=f"sqlite:///{root / 'filr.db'}",
        FILR_SECRET_KEY=secrets.token_urlsafe(48),
        FILR_SECURE_COOKIES="false",  # plain http on loopback: Secure cookies would be dropped
        FILR_BASE_URL=url,
        FILR_SMTP_HOST=smtp.host,
        FILR_SMTP_PORT=str(smtp.port),
        # The session's clamd, on the test signature database (tests/support/clamd.py).
        FILR_CLAMD_URL=shared_clamd().url,
        # gunicorn (27 here) opens a control socket in $XDG_RUNTIME_DIR, else ~/.gunicorn/: keep it
        # in our tmp dir, so parallel test servers neither share nor unlink each other's socket.
        XDG_RUNTIME_DIR=str(root),
        **extra_env,
    )
    log = root / "server.log"

    def start() -> subprocess.Popen[bytes]:
        # Output goes to a file, not a pipe: no pipe to fill up or leave unclosed.
        with log.open("ab") as out:
            return subprocess.Popen(
                [str(FILR), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    running = [start()]

    def restart() -> None:
        _stop(running[0])
        running[0] = start()
        _wait_until_healthy(f"http://127.0.0.1:{port}", running[0], log)

    try:
        _wait_until_healthy(f"http://127.0.0.1:{port}", running[0], log)
        yield LiveServer(url=url, env=env, smtp=smtp, log=log, restart=restart)
    finally:
        _stop(running[0])


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, smtp_session: SmtpSink
) -> Iterator[LiveServer]:
    """`filr serve` on a free loopback port, fresh data directory, SQLite, real SMTP."""
    with serve(tmp_path_factory.mktemp("live"), smtp_session) as server:
        yield server


# --- Chromium --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; Playwright never downloads a browser here."""
    if not CHROMIUM.exists():
        unavailable(f"Chromium at {CHROMIUM}")
    if not AXE.exists():
        unavailable(f"axe-core at {AXE} (npm install)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright Python package")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class WatchedPage:
    """A page whose console errors, page errors and responses are recorded."""

    page: Any
    shots: Path
    problems: list[str] = field(default_factory=list)
    responses: dict[str, int] = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)  # every HTML document, in order
    checked: set[str] = field(default_factory=set)  # documents axe has checked
    _step: int = 0

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot of the current step in the test's tmp dir."""
        self._step += 1
        path = self.shots / f"{self._step:02d}-{name}.png"
        # caret="initial": by default Playwright hides the caret by setting the inline style
        # "caret-color: transparent !important;" on the focused field, which our CSP rightly
        # refuses (a console error that looks like the app's, whenever a field has focus).
        self.page.screenshot(path=str(path), full_page=True, caret="initial")
        return path

    def settle(self) -> None:
        """Let the page finish loading and run its scripts' first frames (DSFR start-up)."""
        self.page.wait_for_load_state("load")
        self.page.evaluate(
            "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )

    def assert_clean(self, *, except_known: tuple[re.Pattern[str], ...] = ()) -> None:
        """No console error, no uncaught exception, no CSP violation so far.

        *except_known* matches problems already reported as app bugs; each one is pinned by a
        strict xfail test, so an allowance cannot outlive its fix unnoticed.
        """
        self.settle()
        self.wait_for_axe()
        unchecked = [url for url in self.loaded if url not in self.checked]
        assert unchecked == [], f"pages left before axe-core checked them: {unchecked}"
        left = [p for p in self.problems if not any(k.search(p) for k in except_known)]
        assert left == [], "\n".join(left)

    def wait_for_axe(self) -> None:
        """Wait for axe-core's check of the current document."""
        if self.page.url.startswith(("http://", "https://")):
            self.page.evaluate("window.__axeChecked || null")


@pytest.fixture
def watched_page(chromium: Any, live_server: LiveServer, tmp_path: Path) -> Iterator[WatchedPage]:
    """A fresh browser context (no cookies) with one watched page."""
    context = chromium.new_context(base_url=live_server.url, locale="fr-FR")
    context.add_init_script(_REPORT_CSP_VIOLATIONS)
    context.add_init_script(AXE.read_text(encoding="utf-8") + _RUN_AXE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    watched = WatchedPage(page, shots)

    def on_console(message: Any) -> None:
        if message.type == "debug" and message.text.startswith("axe:checked "):
            watched.checked.add(message.text.removeprefix("axe:checked "))
        if message.type == "error":
            watched.problems.append(f"console error on {page.url}: {message.text}")

    def on_page_error(error: Any) -> None:
        # The first frame says whose code threw (ours, or the DSFR's).
        frames = [line.strip() for line in (error.stack or "").splitlines() if "at " in line]
        where = frames[0] if frames else "unknown frame"
        watched.problems.append(f"page error on {page.url}: {error.message} ({where})")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.on("response", lambda r: watched.responses.__setitem__(r.url, r.status))

    def on_load(_page: Any) -> None:
        watched.loaded.append(page.url)

    page.on("load", on_load)
    try:
        yield watched
    finally:
        context.close()
