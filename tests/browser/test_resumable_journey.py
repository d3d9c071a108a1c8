"""Resumable uploads in a real Chromium: tus-js-client on the deposit page, cut and resumed.

The server runs with `FILR_RESUMABLE_UPLOADS=1`. A file's upload is cut (a piece's request
aborted by Playwright, the browser put offline, the server restarted) and goes on from the last
piece stored; the page shows the SHA-256 of the whole file, the one `sha256sum` prints.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.browser.conftest import LiveServer, WatchedPage, serve
from tests.support.services import SmtpSink

pytestmark = pytest.mark.browser

PASSWORD = "lanterne violette sous la pluie 73"
MIB = 1024 * 1024
ENVOIS = re.compile(r"/depots/envois/[0-9a-f]+$")
# What a cut request leaves in the console: Chromium's own line for a failed request.
CUT_REQUESTS = (
    re.compile(
        r"console error on \S+/depots/\S+/fichiers: "
        r"(Failed to load resource: )?net::ERR_(FAILED|INTERNET_DISCONNECTED|CONNECTION_REFUSED"
        r"|CONNECTION_RESET|EMPTY_RESPONSE)"
    ),
)


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, smtp_session: SmtpSink
) -> Iterator[LiveServer]:
    """`filr serve` with resumable uploads on (its own, restartable)."""
    root = tmp_path_factory.mktemp("resumable")
    with serve(root, smtp_session, FILR_RESUMABLE_UPLOADS="1") as server:
        yield server


def _image(path: Path, size: int) -> str:
    """Write a PNG-looking file of *size* bytes (random body); return its SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        head = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR"
        out.write(head)
        digest.update(head)
        left = size - len(head)
        while left:
            block = os.urandom(min(left, 8 * MIB))
            out.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def _adviser_on_a_new_deposit(server: LiveServer, watched: WatchedPage) -> str:
    """A France Travail adviser of 62, logged in, on the files step of a new draft."""
    suffix = secrets.token_hex(4)
    ft = server.filr_json(
        "orgs", "create", "--kind", "france_travail", "--territory", "62",
        "--name", f"France Travail Artois {suffix}",
    )  # fmt: skip
    slai = server.filr_json(
        "orgs", "create", "--kind", "departement", "--departement", "62",
        "--name", f"SLAI du Pas-de-Calais {suffix}",
    )  # fmt: skip
    email = f"nadia-{suffix}@example.org"
    account: dict[str, Any] = server.filr_json(
        "users", "create", "--org", ft["id"], "--email", email, "--name", "Nadia Conseillere",
        "--role", "agent", "--password-stdin", "--with-totp", stdin=PASSWORD + "\n",
    )  # fmt: skip
    page = watched.page
    page.goto("/connexion")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.fill("#code", pyotp.TOTP(account["totp_secret"]).now())
    page.click("#login-submit")
    page.wait_for_url(server.url + "/")
    watched.wait_for_axe()
    page.goto("/depots/nouveau")
    page.select_option("#departement", "62")
    page.select_option("#category", "document")
    page.fill("#title", f"Flux mensuel {suffix}")
    page.click(f"label[for='recipient-{slai['id']}']")
    watched.wait_for_axe()
    page.click("#create-deposit")
    page.wait_for_url("**/depots/*/fichiers")
    watched.wait_for_axe()
    return page.url.rsplit("/", 2)[-2]


def _progress(page: Any) -> int:
    value: int = page.locator("#upload-list progress").first.evaluate("(bar) => bar.value")
    return value


def _wait_for_progress(page: Any, percent: int, timeout: float = 120.0) -> None:
    page.wait_for_function(
        f"() => {{ const b = document.querySelector('#upload-list progress');"
        f" return b && b.value >= {percent}; }}",
        timeout=timeout * 1000,
    )


class Link:
    """The page's network link, driven through the DevTools protocol: throttled, or cut.

    (One CDP session does both: Playwright's own `set_offline` and a throttle of another
    session override each other.)
    """

    def __init__(self, page: Any, bytes_per_second: int) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.rate = bytes_per_second
        self.set(offline=False)

    def set(self, *, offline: bool) -> None:
        self.cdp.send("Network.emulateNetworkConditions", {
            "offline": offline, "latency": 0, "downloadThroughput": -1,
            "uploadThroughput": self.rate,
        })  # fmt: skip


def _cut_by_going_offline(page: Any, link: Link, watched: WatchedPage) -> None:
    """Put the browser offline until the page says the upload waits, then back online."""
    link.set(offline=True)
    status = page.locator("#upload-list li").first
    status.filter(has_text="l'envoi reprendra dès le retour du réseau").wait_for(timeout=60_000)
    watched.screenshot("offline")
    link.set(offline=False)


def _abort_one_piece(page: Any, after: int) -> list[str]:
    """Abort the request of the (after+1)-th piece (a reset connection); return what was cut."""
    cut: list[str] = []
    seen = [0]

    def handle(route: Any) -> None:
        if route.request.method == "PATCH":
            seen[0] += 1
            if seen[0] == after + 1 and not cut:
                cut.append(route.request.url)
                route.abort("connectionreset")
                return
        route.continue_()

    page.route(ENVOIS, handle)
    return cut


def _heads(page: Any) -> list[str]:
    heads: list[str] = []
    page.on("request", lambda r: heads.append(r.url) if r.method == "HEAD" else None)
    return heads


def test_a_40_mib_upload_cut_twice_resumes_and_shows_the_right_sha256(
    live_server: LiveServer, watched_page: WatchedPage, tmp_path: Path
) -> None:
    page = watched_page.page
    # Given an adviser on the files step of a draft, with a 40 MiB scan to send
    deposit_id = _adviser_on_a_new_deposit(live_server, watched_page)
    assert page.locator("#dropzone").get_attribute("data-tus-url") == f"/depots/{deposit_id}/envois"
    scan = tmp_path / "releve-annuel.png"
    expected = _image(scan, 40 * MIB)
    heads = _heads(page)
    cut = _abort_one_piece(page, after=1)
    link = Link(page, 16 * MIB)

    # When the upload starts, one piece's connection is reset, and later the network goes away
    page.set_input_files("#file-input", [str(scan)])
    _wait_for_progress(page, 30)
    assert cut, "the second piece was not cut"
    page.unroute(ENVOIS)  # (Chromium's offline mode does not apply to routed requests)
    _wait_for_progress(page, 50)
    _cut_by_going_offline(page, link, watched_page)

    # Then the upload resumes from the last piece stored and ends with the file's SHA-256
    done = page.locator("#upload-list li[data-uploaded=true]")
    done.wait_for(timeout=120_000)
    assert done.get_attribute("data-sha256") == expected
    assert expected in done.inner_text()
    assert _progress(page) == 100
    assert len(heads) >= 2  # asked the server where the upload stood, after each cut
    watched_page.screenshot("uploaded")

    # And the deposit is sent with that one file
    page.click("#send-deposit")
    page.wait_for_url(f"**/depots/{deposit_id}")
    assert scan.name in page.inner_text("main")
    watched_page.assert_clean(except_known=CUT_REQUESTS)


@pytest.mark.slow
def test_a_300_mib_upload_cut_three_times_and_a_server_restart(
    live_server: LiveServer, watched_page: WatchedPage, tmp_path: Path
) -> None:
    page = watched_page.page
    deposit_id = _adviser_on_a_new_deposit(live_server, watched_page)
    flow = tmp_path / "flux-mensuel.png"
    expected = _image(flow, 300 * MIB)
    started = time.monotonic()
    heads = _heads(page)
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(f"{r.method} {r.failure}"))
    cut = _abort_one_piece(page, after=3)
    link = Link(page, 48 * MIB)

    page.set_input_files("#file-input", [str(flow)])
    _wait_for_progress(page, 20)
    assert cut, "the fourth piece was not cut"
    page.unroute(ENVOIS)  # the rest goes straight (offline mode does not apply to routed requests)
    _wait_for_progress(page, 40)
    _cut_by_going_offline(page, link, watched_page)
    _wait_for_progress(page, 60)
    _cut_by_going_offline(page, link, watched_page)
    _wait_for_progress(page, 75)
    live_server.restart()  # the page's tries meet a closed port, then the new server

    done = page.locator("#upload-list li[data-uploaded=true]")
    done.wait_for(timeout=300_000)
    seconds = time.monotonic() - started
    assert done.get_attribute("data-sha256") == expected, seconds
    # Each cut was met by the page: a reset piece, two offline spells, a closed port; and each
    # time the page asked the server where the upload stood before going on.
    assert any("ERR_CONNECTION_RESET" in f for f in failed), failed
    assert sum("ERR_INTERNET_DISCONNECTED" in f for f in failed) >= 2, failed
    assert any("ERR_CONNECTION_REFUSED" in f for f in failed), failed  # the restart
    assert len(heads) >= 4, heads
    print(f"300 MiB resumable upload in Chromium: {seconds:.1f} s with its cuts and restart")
    with page.expect_navigation():
        page.click("#send-deposit")
    assert f"/depots/{deposit_id}" in page.url
    watched_page.assert_clean(except_known=CUT_REQUESTS)
