"""Deposits through the portal over HTTP against raw boto3, and the inbox for every scope.

One run starts its own SeaweedFS (tests/support/seaweedfs.py), a throwaway PostgreSQL database
and `filr serve` (gunicorn, plain HTTP on 127.0.0.1, S3 storage on that SeaweedFS), provisions a
sender (CD 62) and a recipient (France Travail, territory 62), then measures:

  a. raw boto3 to the same SeaweedFS: multipart upload of generated data (TransferConfig with the
     part size and concurrency of the portal's S3Store) and one streamed GET read in 1 MiB
     chunks, SHA-256 checked;
  b. the portal: upload of the same data as the raw body of POST /depots/<id>/fichiers
     (streamed from a generator, Content-Length set, timed until the 201), and download as a
     browser does it: POST .../lien, then GET /telechargement/<token> read in 1 MiB chunks,
     SHA-256 checked; targets (issue #14): >= 0.95 x raw upload and download, medians of
     --repeat (at least 5), raw and portal alternating first; the peak RSS growth of the
     gunicorn workers during each portal transfer is printed (target <= 64 MiB for 1 GiB);
  c. 32 concurrent downloads of a 10 MiB file (threads, each its own connection and its own
     link, one logged-in recipient session): errors, wall time, aggregate throughput;
  d. the inbox of the recipient for every scope: 100,000 deposits (--deposits; 1,000,000
     takes a few minutes) generated in SQL (INSERT ... SELECT generate_series: three years,
     three categories, three directions, mostly expired and destroyed as the purge leaves
     them) over every département, 40 % in 62, 15 % in 59, 5 % in each other space of
     Hauts-de-France, the rest spread over the 97 others; the recipient's France Travail
     structure is then given the territory of one département (62), of five (Hauts-de-France)
     and of every département (national). For each scope: 200 GETs of /depots pages over HTTP
     (first page, deeper pages following #next-page, filters, searches, title order, box=all,
     sent box), 40 GETs of /api/v1/deposits (a read token), then the same web queries
     in-process through portal.deposits.listing.list_deposits, counting the SQL statements of
     each page; p50/p95/max per kind, and a table of the three scopes. Target: p95 <= 50 ms up
     to 100,000 deposits, <= 100 ms beyond; the same statements per page in every scope.
     --explain prints EXPLAIN (ANALYZE, BUFFERS) of the slowest query of each kind.

Every process and the database are removed at the end, also on failure or SIGTERM.

    .venv/bin/python benchmarks/http_throughput.py            # full sizes (a few minutes)
    .venv/bin/python benchmarks/http_throughput.py --quick    # smoke run: small sizes, once;
                                                              # throughput ratios not judged
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import http.client
import json
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere in the checkout

MIB = 1024 * 1024
TARGETS = {"upload": 0.95, "download": 0.95}  # medians, portal / raw boto3
LIST_P95_TARGET_MS = 50.0  # up to 100,000 deposits
LIST_P95_TARGET_MS_1M = 100.0  # beyond, up to 1,000,000
POOL_BLOCKS = 16  # 16 MiB of random data, cycled: incompressible and cheap to produce
# The portal accepts files by content: every generated file is a PNG (magic bytes only). Not a
# PDF: a PDF is parsed for active content (portal/filecheck/pdf_content.py, at most 64 MiB), and
# random bytes behind a PDF header are refused as unreadable.
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 300.0
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BUCKET = "filr-bench"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
NEXT_RE = re.compile(r'id="next-page" href="([^"]+)"')
ROWS_RE = re.compile(r"<tbody>(.*?)</tbody>", re.S)
ROW_LINK_RE = re.compile(r'<td><a href="/depots/[0-9a-f]{32}">')


def human(size: int) -> str:
    return f"{size / (1024 * MIB):g} GiB" if size >= 1024 * MIB else f"{size / MIB:g} MiB"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


# --- generated content ---------------------------------------------------------------------


class Content:
    """`size` bytes of incompressible data that the portal accepts as a PDF, regenerable."""

    def __init__(self, pool: list[bytes], size: int) -> None:
        self.pool = pool
        self.size = size
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        self.sha256 = digest.hexdigest()

    def chunks(self) -> Iterator[bytes]:
        """Yield the content in 1 MiB chunks (the same bytes on every call)."""
        sent = 0
        index = 0
        while sent < self.size:
            block = self.pool[index % len(self.pool)]
            if self.size - sent < MIB:
                block = block[: self.size - sent]
            sent += len(block)
            index += 1
            yield block


def make_pool() -> list[bytes]:
    pool = [os.urandom(MIB) for _ in range(POOL_BLOCKS)]
    pool[0] = PNG_HEAD + pool[0][len(PNG_HEAD) :]
    return pool


# --- a small browser over http.client --------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def location(self) -> str:
        return urlsplit(self.headers.get("Location", "")).path

    def csrf(self) -> str:
        match = CSRF_RE.search(self.text)
        if match is None:
            raise RuntimeError(f"no CSRF token in the page ({self.status})")
        return html.unescape(match.group(1))


class Browser:
    """Cookies and one keep-alive connection, as a browser tab; not shared between threads."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None) -> None:
        self.port = port
        self.origin = f"http://{HOST}:{port}"
        self.cookies = dict(cookies or {})
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Referer": self.origin + "/", "Origin": self.origin}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers.update(extra or {})
        return headers

    def _keep_cookies(self, response: http.client.HTTPResponse) -> None:
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if value and "max-age=0" not in header.lower():
                self.cookies[name.strip()] = value
            else:
                self.cookies.pop(name.strip(), None)

    def open(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """Send a request and return the response with its body unread (cookies kept)."""
        replayable = body is None or isinstance(body, bytes)
        if not replayable:
            self.close()  # a streamed body is never replayed: start on a fresh connection
        for attempt in range(2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(HOST, self.port, timeout=HTTP_TIMEOUT)
            try:
                self._conn.request(method, path, body=body, headers=self._headers(headers))
                response = self._conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # gunicorn closed an idle keep-alive connection: one retry on a new one.
                self.close()
                if not (reused and replayable) or attempt:
                    raise
                continue
            # On "Connection: close", http.client hands the socket to the response and opens
            # a new one for the next request by itself.
            self._keep_cookies(response)
            return response
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        response = self.open(method, path, body, headers)
        return Reply(response.status, response.headers, response.read())

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post_form(self, path: str, fields: list[tuple[str, str]]) -> Reply:
        body = "&".join(f"{quote(k)}={quote(v)}" for k, v in fields).encode()
        return self.request(
            "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"}
        )


@dataclass
class Account:
    email: str
    password: str
    totp_secret: str
    user_id: str
    org_id: str


def log_in(browser: Browser, account: Account, *, step_offset: int = 0) -> None:
    import pyotp

    token = browser.get("/connexion").csrf()
    code = pyotp.TOTP(account.totp_secret).at(time.time() + 30 * step_offset)
    reply = browser.post_form(
        "/connexion",
        [
            ("csrf_token", token),
            ("email", account.email),
            ("password", account.password),
            ("code", code),
        ],
    )
    if reply.status != 302:
        raise RuntimeError(f"log-in of {account.email} failed ({reply.status})")


def create_deposit(browser: Browser, recipient_org: str, title: str) -> str:
    token = browser.get("/depots/nouveau").csrf()
    reply = browser.post_form(
        "/depots/nouveau",
        [
            ("csrf_token", token),
            ("departement", "62"),
            ("category", "document"),
            ("title", title),
            ("message", ""),
            ("recipients", recipient_org),
            ("lifetime_days", "90"),
        ],
    )
    if reply.status != 302:
        raise RuntimeError(f"deposit creation failed ({reply.status}): {reply.text[:500]}")
    return reply.location.split("/")[2]


def upload(browser: Browser, deposit_id: str, content: Content, name: str) -> tuple[float, str]:
    """Upload `content` as one file; return (seconds, file id). Only the POST is timed."""
    token = browser.get(f"/depots/{deposit_id}/fichiers").csrf()
    headers = {
        "X-CSRFToken": token,
        "X-Filename": quote(name),
        "Content-Type": "application/octet-stream",
        "Content-Length": str(content.size),
    }
    start = time.perf_counter()
    reply = browser.request("POST", f"/depots/{deposit_id}/fichiers", content.chunks(), headers)
    seconds = time.perf_counter() - start
    if reply.status != 201:
        raise RuntimeError(f"upload failed ({reply.status}): {reply.text[:500]}")
    answer = json.loads(reply.body)
    if answer["size"] != content.size:
        raise RuntimeError(f"upload stored {answer['size']} bytes, sent {content.size}")
    return seconds, str(answer["id"])


def publish(browser: Browser, deposit_id: str) -> None:
    token = browser.get(f"/depots/{deposit_id}/fichiers").csrf()
    reply = browser.post_form(f"/depots/{deposit_id}/envoyer", [("csrf_token", token)])
    if reply.status != 302:
        raise RuntimeError(f"publishing failed ({reply.status})")


def read_all(stream: Any, digest: Any) -> int:
    """Read a body to the end in 1 MiB chunks into one buffer; return the byte count."""
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    received = 0
    while True:
        n = stream.readinto(buffer)
        if not n:
            return received
        digest.update(view[:n])
        received += n


def download(browser: Browser, deposit_id: str, file_id: str, token: str) -> tuple[int, str]:
    """Ask for a link and follow it as a browser does; return (bytes, SHA-256)."""
    reply = browser.post_form(
        f"/depots/{deposit_id}/fichiers/{file_id}/lien", [("csrf_token", token)]
    )
    if reply.status != 302 or not reply.location.startswith("/telechargement/"):
        raise RuntimeError(f"link refused ({reply.status})")
    response = browser.open("GET", reply.location)
    if response.status != 200:
        body = response.read()
        raise RuntimeError(f"download refused ({response.status}): {body[:200]!r}")
    digest = hashlib.sha256()
    received = read_all(response, digest)
    return received, digest.hexdigest()


# --- processes and database ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def filr_command() -> list[str]:
    beside = Path(sys.executable).parent / "filr"
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-c", "import sys; from portal.cli import main; sys.exit(main())"]


def run_filr(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [*filr_command(), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=ROOT,
    )
    if result.returncode:
        raise RuntimeError(f"filr {' '.join(args[:2])} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def run_filr_json(env: dict[str, str], *args: str, stdin: str | None = None) -> dict[str, Any]:
    return dict(json.loads(run_filr(env, *args, stdin=stdin).strip().splitlines()[-1]))


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to the group we started, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """Create an empty database and drop it at the end; yield its name."""
    import psycopg

    name = "filr_bench_" + secrets.token_hex(4)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_portal(env: dict[str, str], port: int, workers: int, threads: int, log: Path) -> Any:
    command = [
        *filr_command(),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"filr serve exited:\n{log.read_text()[-3000:]}")
            try:
                probe = Browser(port)
                if probe.get("/sante").status == 200:
                    probe.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"filr serve did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield process
    finally:
        stop_process_group(process)


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        if f"\nPPid:\t{master}\n" in status:
            pids.append(int(entry.name))
    return sorted(pids)


def proc_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss(pids: list[int]) -> dict[int, int]:
    """Reset each process's peak RSS (VmHWM, Linux >= 4.0) and return its RSS now."""
    now = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            now[pid] = proc_field(pid, "VmRSS")
    return now


def peak_rss_growth(before: dict[int, int]) -> int:
    """The largest growth of a process's peak RSS since `reset_peak_rss` returned `before`."""
    growth = 0
    for pid, rss in before.items():
        with contextlib.suppress(OSError):
            growth = max(growth, proc_field(pid, "VmHWM") - rss)
    return growth


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


# --- a. and b.: throughput -----------------------------------------------------------------


class CpuMeter:
    """CPU seconds used by each party of a transfer: this client, gunicorn's workers, SeaweedFS."""

    def __init__(self, workers: Callable[[], list[int]], weed: int) -> None:
        self.workers = workers
        self._parties: dict[str, Callable[[], float]] = {
            "client": lambda: sum(os.times()[:2]),
            "gunicorn": lambda: cpu_seconds(workers()),
            "weed": lambda: cpu_seconds([weed]),
        }

    def snapshot(self) -> dict[str, float]:
        return {name: read() for name, read in self._parties.items()}

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.snapshot()
        return {name: now[name] - before[name] for name in now}


@dataclass
class Timings:
    runs: dict[str, list[tuple[float, dict[str, float]]]] = field(default_factory=dict)
    rss: dict[str, list[int]] = field(default_factory=dict)  # portal: worker peak RSS growth
    loads: list[float] = field(default_factory=list)  # load average after each run

    def add(self, case: str, seconds: float, cpu: dict[str, float]) -> None:
        self.runs.setdefault(case, []).append((seconds, cpu))

    def seconds(self, case: str) -> list[float]:
        return [seconds for seconds, _ in self.runs[case]]

    def best_cpu(self, case: str) -> dict[str, float]:
        return min(self.runs[case], key=lambda run: run[0])[1]


def raw_upload(s3: Any, content: Content, key: str) -> float:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=s3.part_size,
        multipart_chunksize=s3.part_size,
        max_concurrency=s3.max_concurrency,
        use_threads=True,
    )
    from tests.support.seaweedfs import ChunkFile

    start = time.perf_counter()
    s3.client.upload_fileobj(ChunkFile(content.chunks()), s3.bucket, s3.prefix + key, Config=config)
    return time.perf_counter() - start


def raw_download(s3: Any, content: Content, key: str) -> float:
    digest = hashlib.sha256()
    start = time.perf_counter()
    body = s3.client.get_object(Bucket=s3.bucket, Key=s3.prefix + key)["Body"]
    received = read_all(body, digest)
    body.close()
    seconds = time.perf_counter() - start
    if received != content.size or digest.hexdigest() != content.sha256:
        raise RuntimeError("raw download: wrong content")
    return seconds


def portal_download(
    browser: Browser, deposit_id: str, file_id: str, token: str, content: Content
) -> float:
    start = time.perf_counter()
    received, sha256 = download(browser, deposit_id, file_id, token)
    seconds = time.perf_counter() - start
    if received != content.size or sha256 != content.sha256:
        raise RuntimeError(f"portal download: wrong content ({received} bytes)")
    return seconds


def measure_throughput(
    s3: Any,
    sender: Browser,
    recipient: Browser,
    recipient_org: str,
    content: Content,
    repeat: int,
    meter: CpuMeter,
) -> Timings:
    """Alternate raw and portal transfers `repeat` times, each measured alike."""
    timings = Timings()
    published: tuple[str, str] | None = None
    for run in range(repeat):
        order = ["raw", "portal"] if run % 2 == 0 else ["portal", "raw"]
        for side in order:
            if side == "raw":
                before = meter.snapshot()
                seconds = raw_upload(s3, content, f"raw/{run}")
                timings.add("raw-upload", seconds, meter.since(before))
            else:
                deposit_id = create_deposit(sender, recipient_org, f"Banc d'essai {run}")
                rss = reset_peak_rss(meter.workers())
                before = meter.snapshot()
                seconds, file_id = upload(sender, deposit_id, content, f"banc-{run}.png")
                timings.add("portal-upload", seconds, meter.since(before))
                timings.rss.setdefault("upload", []).append(peak_rss_growth(rss))
                if published is None:
                    publish(sender, deposit_id)
                    published = (deposit_id, file_id)
        assert published is not None
        deposit_id, file_id = published
        token = recipient.get(f"/depots/{deposit_id}").csrf()
        for side in order:
            before = meter.snapshot()
            if side == "raw":
                seconds = raw_download(s3, content, f"raw/{run}")
                timings.add("raw-download", seconds, meter.since(before))
            else:
                rss = reset_peak_rss(meter.workers())
                before = meter.snapshot()
                seconds = portal_download(recipient, deposit_id, file_id, token, content)
                timings.add("portal-download", seconds, meter.since(before))
                timings.rss.setdefault("download", []).append(peak_rss_growth(rss))
        s3.delete(f"raw/{run}")
        timings.loads.append(os.getloadavg()[0])
        print(
            f"  run {run + 1}/{repeat} (load {timings.loads[-1]:.1f}): "
            + ", ".join(
                f"{case} {content.size / MIB / runs[-1][0]:.0f} MiB/s"
                for case, runs in timings.runs.items()
            ),
            flush=True,
        )
    return timings


def report_throughput(timings: Timings, size: int, enforce: bool) -> int:
    """Print the ratios; count the targets missed (only `enforce`d at the full size)."""
    failures = 0
    runs = len(timings.runs["raw-upload"])
    print(
        f"\nThroughput, {human(size)} (MiB/s; best and median of {runs}, ratios judged on "
        f"medians; load average {min(timings.loads):.1f}-{max(timings.loads):.1f})"
    )
    for direction in ("upload", "download"):
        raw = timings.seconds(f"raw-{direction}")
        portal = timings.seconds(f"portal-{direction}")
        raw_best, portal_best = size / MIB / min(raw), size / MIB / min(portal)
        raw_median = size / MIB / statistics.median(raw)
        portal_median = size / MIB / statistics.median(portal)
        ratio = portal_best / raw_best
        target = TARGETS[direction]
        ok = portal_median / raw_median >= target
        failures += enforce and not ok
        verdict = ("ok" if ok else "MISSED") if enforce else "not judged at this size"
        print(
            f"  {direction:8}  raw boto3 {raw_best:6.0f} (median {raw_median:4.0f}) | portal "
            f"{portal_best:6.0f} (median {portal_median:4.0f}) | ratio {ratio:4.2f} "
            f"(median {portal_median / raw_median:4.2f}), target {target}: {verdict}; worker "
            f"peak RSS growth +{max(timings.rss[direction]) / MIB:.0f} MiB"
        )
        for side, seconds in (("raw", min(raw)), ("portal", min(portal))):
            cpu = timings.best_cpu(f"{side}-{direction}")
            print(
                f"            CPU seconds of the best {side:6} run ({seconds:.2f} s wall): "
                + ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
            )
    return failures


def profile_transfers(
    out: Path,
    master: int,
    transfers: list[tuple[str, Callable[[], object]]],
) -> None:
    """Sample gunicorn's workers with py-spy during each transfer; print the hottest frames."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.is_file():
        print("  (py-spy is not installed in this environment: no profile)")
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, transfer in transfers:
        raw = out / f"{name}.txt"
        command = [str(py_spy), "record", "--pid", str(master), "--subprocesses", "--threads"]
        command += ["--rate", "200", "--format", "raw", "--output", str(raw), "--nonblocking"]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(2)  # attaching to every process takes a moment
            transfer()
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
        if not raw.exists():
            print(f"  {name}: py-spy wrote nothing")
            continue
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            count = int(count_text)
            frames = stack.split(";")
            total += count
            own[frames[-1]] = own.get(frames[-1], 0) + count
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + count
        print(f"\n  py-spy, {name}: {total} samples of running threads ({raw})")
        for title, table in (("self", own), ("inclusive", inclusive)):
            print(f"    hottest frames, {title}:")
            for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:12]:
                print(f"      {100 * count / max(total, 1):5.1f}%  {frame[:110]}")


# --- c.: concurrent downloads ----------------------------------------------------------------


def concurrent_downloads(
    port: int,
    cookies: dict[str, str],
    deposit_id: str,
    file_id: str,
    token: str,
    content: Content,
    count: int,
) -> int:
    barrier = threading.Barrier(count + 1)
    results: list[tuple[float, str | None]] = [(0.0, "did not run")] * count

    def one(index: int) -> None:
        browser = Browser(port, cookies)
        try:
            barrier.wait(60)
            start = time.perf_counter()
            received, sha256 = download(browser, deposit_id, file_id, token)
            error = None
            if received != content.size or sha256 != content.sha256:
                error = f"wrong content ({received} bytes)"
            results[index] = (time.perf_counter() - start, error)
        except Exception as e:  # every failure is counted and shown
            results[index] = (0.0, f"{type(e).__name__}: {e}")
        finally:
            browser.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait(60)
    start = time.perf_counter()
    for thread in threads:
        thread.join(HTTP_TIMEOUT)
    wall = time.perf_counter() - start
    errors = [error for _, error in results if error]
    times = [seconds for seconds, error in results if not error]
    print(f"\n{count} concurrent downloads of {human(content.size)} (one session, own links)")
    print(
        f"  errors {len(errors)} | wall {wall:.2f} s | aggregate "
        f"{count * content.size / MIB / wall:.0f} MiB/s"
        + (
            f" | per download p50 {statistics.median(times):.2f} s, max {max(times):.2f} s"
            if times
            else ""
        )
    )
    for error in sorted(set(errors))[:5]:
        print(f"  error: {error}")
    return len(errors)


# --- d.: listing -----------------------------------------------------------------------------

COMMUNES_62 = [
    "Arras",
    "Lens",
    "Béthune",
    "Calais",
    "Boulogne-sur-Mer",
    "Liévin",
    "Hénin-Beaumont",
    "Saint-Omer",
    "Montreuil",
    "Étaples",
    "Bruay-la-Buissière",
    "Carvin",
    "Berck",
    "Avion",
]
COMMUNES_59 = [
    "Lille",
    "Roubaix",
    "Tourcoing",
    "Dunkerque",
    "Valenciennes",
    "Douai",
    "Cambrai",
    "Maubeuge",
    "Villeneuve-d'Ascq",
    "Armentières",
    "Hazebrouck",
    "Caudry",
]
DOCUMENTS = [
    "Contrat d'engagement réciproque",
    "Bilan d'orientation",
    "Liste des bénéficiaires orientés",
    "Compte rendu d'équipe pluridisciplinaire",
    "Attestation de suivi",
    "Relevé des sanctions",
]
SURNAMES = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
]
# Share of the deposits held by each space: 62 and 59 are large, the rest of Hauts-de-France
# medium, and the other départements share what is left (a few hundred each at 100,000).
HEAVY_SPACES = {"62": 0.40, "59": 0.15, "02": 0.05, "60": 0.05, "80": 0.05}
HAUTS_DE_FRANCE = ("02", "59", "60", "62", "80")
# The recipient's France Travail structure is given each territory in turn: the same deposits,
# seen through one, five, then every département.
SCOPES = {"one département": ("62",), "territory of 5": HAUTS_DE_FRANCE, "national": ()}


@dataclass(frozen=True)
class Parties:
    cd62: str
    ft62: str
    asso62: str
    senders62: list[str]
    senders_ft: list[str]
    recipient_user: str


# One row of bench_deposit per deposit; every random draw is made once, in `base`.
GENERATE_SQL = """
CREATE TEMP TABLE bench_deposit AS
WITH base AS (
    SELECT (%(codes)s::text[])[width_bucket(random(), %(bounds)s::float8[])] AS code,
           date_trunc('day', now() - random() * interval '1095 days')
               + make_interval(hours => 6 + floor(random() * 11)::int,
                               mins => floor(random() * 60)::int) AS created0,
           random() AS r_cat, random() AS r_life, random() AS r_dir, random() AS r_who,
           random() AS r_sender, random() AS r_commune, random() AS r_doc, random() AS r_status,
           random() AS r_taken, random() AS r_files, random() AS r_pub, random() AS r_hours
    FROM generate_series(1, %(count)s)
), shaped AS (
    SELECT b.*, s.cd, s.provider, s.senders, s.communes, s.folded,
           CASE WHEN b.created0 >= now()
                THEN now() - make_interval(mins => 1 + floor(b.r_hours * 600)::int)
                ELSE b.created0 END AS created_at,
           CASE WHEN b.r_cat < 0.45 THEN 'fiche_liaison'
                WHEN b.r_cat < 0.85 THEN 'document' ELSE 'flux_xml' END AS category,
           1 + floor(b.r_commune * cardinality(s.communes))::int AS k,
           1 + floor(b.r_doc * cardinality(%(documents)s::text[]))::int AS d
    FROM base b JOIN bench_space s USING (code)
), decided AS (
    SELECT sh.*,
           sh.r_dir < 0.75 AND sh.r_who < 0.05 AND sh.category <> 'flux_xml' AS to_person,
           CASE WHEN sh.category = 'flux_xml' OR sh.r_life >= 0.9 THEN 7
                WHEN sh.r_life < 0.7 THEN 90 ELSE 30 END AS lifetime,
           sh.r_status < 0.005 AND sh.created_at > now() - interval '2 days' AS is_draft,
           sh.r_status >= 0.005 AND sh.r_status < 0.035 AS is_withdrawn
    FROM shaped sh
), dated AS (
    SELECT de.*,
           de.created_at + make_interval(days => de.lifetime) AS expires_at,
           CASE WHEN de.r_dir < 0.75 THEN
                    CASE WHEN de.to_person THEN NULL ELSE %(ft)s END
                WHEN de.r_dir < 0.9 THEN de.cd ELSE de.provider END AS recipient_org,
           CASE WHEN de.to_person THEN %(recipient_user)s END AS recipient_user,
           de.created_at + make_interval(hours => 1 + floor(de.r_hours * 47)::int) AS withdrawal
    FROM decided de
), final AS (
    SELECT da.*,
           CASE WHEN da.is_draft THEN 'draft'
                WHEN da.is_withdrawn OR da.expires_at <= now() THEN 'destroyed'
                ELSE 'available' END AS status
    FROM dated da
)
SELECT replace(gen_random_uuid()::text, '-', '') AS id,
       f.code AS departement_code,
       f.category,
       CASE f.category
           WHEN 'fiche_liaison' THEN 'Fiche de liaison — ' || f.communes[f.k]
               || ' — semaine ' || extract(week FROM f.created_at)::int
           WHEN 'document' THEN (%(documents)s::text[])[f.d] || ' — ' || f.communes[f.k]
               || ' ' || to_char(f.created_at, 'MM/YYYY')
           ELSE 'Flux XML CGPEM ' || to_char(f.created_at, 'IYYY-"S"IW') END AS title,
       CASE f.category
           WHEN 'fiche_liaison' THEN 'fiche de liaison — ' || f.folded[f.k]
               || ' — semaine ' || extract(week FROM f.created_at)::int
           WHEN 'document' THEN (%(documents_folded)s::text[])[f.d] || ' — ' || f.folded[f.k]
               || ' ' || to_char(f.created_at, 'MM/YYYY')
           ELSE 'flux xml cgpem ' || to_char(f.created_at, 'IYYY-"s"IW') END AS title_sort,
       CASE WHEN f.r_dir >= 0.75 AND f.r_dir < 0.9
            THEN (%(senders_ft)s::text[])[1 + floor(f.r_sender * %(n_ft)s)::int]
            ELSE f.senders[1 + floor(f.r_sender * cardinality(f.senders))::int] END AS sender_id,
       CASE WHEN f.r_dir >= 0.75 AND f.r_dir < 0.9 THEN %(ft)s ELSE f.cd END AS sender_org_id,
       f.status,
       f.created_at,
       CASE WHEN NOT f.is_draft
            THEN f.created_at + make_interval(mins => 1 + floor(f.r_pub * 19)::int) END
           AS published_at,
       f.expires_at,
       CASE WHEN f.is_withdrawn AND NOT f.is_draft THEN f.withdrawal END AS withdrawn_at,
       CASE WHEN f.is_draft THEN NULL
            WHEN f.is_withdrawn THEN f.withdrawal
            WHEN f.expires_at <= now()
            THEN f.expires_at + make_interval(hours => 1 + floor(f.r_hours * 23)::int)
       END AS destroyed_at,
       CASE WHEN f.status = 'available' AND f.recipient_org = %(ft)s
                 AND f.category <> 'flux_xml' AND f.r_taken < 0.3
            THEN %(recipient_user)s END AS taken_by_id,
       CASE WHEN f.status = 'available' AND f.recipient_org = %(ft)s
                 AND f.category <> 'flux_xml' AND f.r_taken < 0.3
            THEN f.created_at + interval '2 hours' END AS taken_at,
       f.recipient_org,
       f.recipient_user,
       CASE WHEN f.r_files < 0.7 THEN 1 WHEN f.r_files < 0.9 THEN 2 ELSE 3 END AS files
FROM final f
"""


def make_spaces(conn: Any, parties: Parties) -> tuple[list[str], list[float]]:
    """A département council, a provider and two agents per space (62: the provisioned ones);
    fill bench_space; return the codes and the lower bounds of their shares in [0, 1)."""
    from portal.text import fold

    names = dict(conn.execute("SELECT code, name FROM departement ORDER BY code").fetchall())
    codes = sorted(names)
    others = [c for c in codes if c not in HEAVY_SPACES]
    light = (1 - sum(HEAVY_SPACES.values())) / len(others)
    conn.execute(
        "CREATE TEMP TABLE bench_space (code text PRIMARY KEY, cd text, provider text,"
        " senders text[], communes text[], folded text[])"
    )
    rng = random.Random(62)
    rows = []
    for n, code in enumerate(codes):
        if code == "62":
            cd, provider, senders = parties.cd62, parties.asso62, parties.senders62
            communes = COMMUNES_62
        else:
            cd, provider = uuid.uuid4().hex, uuid.uuid4().hex
            for org_id, kind, label in (
                (cd, "departement", "CD"),
                (provider, "prestataire", "Asso"),
            ):
                conn.execute(
                    "INSERT INTO organisation (id, kind, name, departement_code, created_at,"
                    " is_national) VALUES (%s, %s, %s, %s, now(), false)",
                    (org_id, kind, f"{label} {code} (banc)", code),
                )
            senders = []
            for i in range(2):
                user_id = uuid.uuid4().hex
                first = rng.choice(["Anne", "Paul", "Léa", "Marc"])
                name = f"{first} {SURNAMES[(2 * n + i) % len(SURNAMES)]}"
                conn.execute(
                    "INSERT INTO user_account (id, organisation_id, email, full_name, status,"
                    " created_at, daily_digest) VALUES (%s, %s, %s, %s, 'suspended', now(), false)",
                    (user_id, cd, f"agent{i}.{code}@banc.filr.localhost", name),
                )
                senders.append(user_id)
            communes = (
                COMMUNES_59 if code == "59" else [f"{names[code]} secteur {k}" for k in range(1, 9)]
            )
        rows.append((code, cd, provider, senders, communes, [fold(c) for c in communes]))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO bench_space VALUES (%s, %s, %s, %s, %s, %s)", rows)
    bounds, edge = [], 0.0
    for code in codes:
        bounds.append(edge)
        edge += HEAVY_SPACES.get(code, light)
    return codes, bounds


def insert_deposits(database_url: str, parties: Parties, count: int) -> float:
    """Generate `count` deposits over every space with INSERT ... SELECT; return seconds.

    Three years of deposits, three categories, three directions, mostly expired and destroyed
    as the purge leaves them; the heap in creation order, as a live database fills. Secondary
    indexes are dropped during the load and built again after it.
    """
    import psycopg

    from portal.text import fold

    start = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        codes, bounds = make_spaces(conn, parties)
        conn.execute(
            GENERATE_SQL,
            {
                "codes": codes,
                "bounds": bounds,
                "count": count,
                "documents": DOCUMENTS,
                "documents_folded": [fold(d) for d in DOCUMENTS],
                "ft": parties.ft62,
                "recipient_user": parties.recipient_user,
                "senders_ft": parties.senders_ft,
                "n_ft": len(parties.senders_ft),
            },
        )
        tables = ("deposit", "deposit_recipient", "deposit_file")
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            (list(tables),),
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute(
            "INSERT INTO deposit (id, departement_code, category, title, title_sort, sender_id,"
            " sender_org_id, status, created_at, published_at, expires_at, withdrawn_at,"
            " destroyed_at, taken_by_id, taken_at)"
            " SELECT id, departement_code, category, title, title_sort, sender_id, sender_org_id,"
            " status, created_at, published_at, expires_at, withdrawn_at, destroyed_at,"
            " taken_by_id, taken_at FROM bench_deposit ORDER BY created_at"
        )
        conn.execute(
            "INSERT INTO deposit_recipient (id, deposit_id, organisation_id, user_id)"
            " SELECT replace(gen_random_uuid()::text, '-', ''), id, recipient_org, recipient_user"
            " FROM bench_deposit ORDER BY created_at"
        )
        conn.execute(
            "INSERT INTO deposit_file (id, deposit_id, object_key, filename, content_type, size,"
            " sha256, created_at, destroyed_at)"
            " SELECT f.id, b.id, 'deposits/' || b.id || '/' || f.id, 'piece-' || f.n || '.pdf',"
            " 'application/pdf', 150000 + f.n, repeat('0', 64), b.created_at, b.destroyed_at"
            " FROM bench_deposit b CROSS JOIN LATERAL (SELECT n,"
            " replace(gen_random_uuid()::text, '-', '') AS id FROM generate_series(1, b.files) n) f"
            " ORDER BY b.created_at"
        )
        for _, definition in indexes:
            conn.execute(definition)
        conn.commit()
        conn.autocommit = True
        for table in tables:
            conn.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - start


def set_territory(database_url: str, org_id: str, codes: tuple[str, ...]) -> tuple[int, int]:
    """Give the France Travail structure *org_id* these départements (all when empty); return
    their number and the deposits its inbox then holds."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM ft_territory WHERE organisation_id = %s", (org_id,))
        conn.execute(
            "INSERT INTO ft_territory (organisation_id, departement_code)"
            " SELECT %s, code FROM departement WHERE cardinality(%s::text[]) = 0"
            " OR code = ANY(%s::text[])",
            (org_id, list(codes), list(codes)),
        )
        spaces = conn.execute(
            "SELECT count(*) FROM ft_territory WHERE organisation_id = %s", (org_id,)
        ).fetchone()
        visible = conn.execute(
            "SELECT count(*) FROM deposit d JOIN ft_territory t"
            " ON t.departement_code = d.departement_code AND t.organisation_id = %s"
            " WHERE d.status <> 'draft' AND d.category IN ('fiche_liaison', 'document')"
            " AND EXISTS (SELECT 1 FROM deposit_recipient r WHERE r.deposit_id = d.id"
            " AND r.organisation_id = %s)",
            (org_id, org_id),
        ).fetchone()
    return (int(spaces[0]) if spaces else 0), (int(visible[0]) if visible else 0)


@dataclass
class ListRequest:
    kind: str
    url: str
    ms: float = 0.0
    rows: int = 0
    statements: int = 0


class ListingPlan:
    """Interleaved kinds of inbox pages; chains follow the #next-page link of the previous."""

    STARTS: ClassVar[dict[str, list[str]]] = {
        "first page": ["/depots"],
        "next pages": ["/depots"],
        "filtered": [
            "/depots?boite=recus&categorie=fiche_liaison",
            "/depots?boite=recus&statut=disponible",
            "/depots?boite=recus&statut=expire&categorie=document",
            "/depots?boite=recus&du={month_ago_year}&au={today_year}",
            "/depots?boite=recus&espace=62&statut=retire",
        ],
        "search": [
            "/depots?boite=recus&q=bethune",
            "/depots?boite=recus&q=semaine+12",
            "/depots?boite=recus&q={sender_word}",
            "/depots?boite=recus&q=introuvable",
            "/depots?boite=tous&q=cgpem",
        ],
        "title order": ["/depots?boite=recus&tri=titre"],
        "box=all": ["/depots?boite=tous", "/depots?boite=tous&tri=ancien"],
        "sent box": ["/depots?boite=envoyes"],
    }
    WEIGHTS: ClassVar[dict[str, int]] = {
        "first page": 30,
        "next pages": 50,
        "filtered": 40,
        "search": 30,
        "title order": 20,
        "box=all": 20,
        "sent box": 10,
    }

    def __init__(self, total: int, values: dict[str, str]) -> None:
        scale = total / sum(self.WEIGHTS.values())
        counts = {kind: max(1, round(w * scale)) for kind, w in self.WEIGHTS.items()}
        self.schedule: list[str] = []
        left = dict(counts)
        while any(left.values()):
            for kind in self.WEIGHTS:
                if left[kind]:
                    self.schedule.append(kind)
                    left[kind] -= 1
        self.starts = {k: [u.format(**values) for u in v] for k, v in self.STARTS.items()}
        self._turn = dict.fromkeys(self.starts, 0)
        self._next: dict[str, str | None] = dict.fromkeys(self.starts)

    def url(self, kind: str) -> str:
        chained = kind in ("next pages", "title order")
        following = self._next[kind]
        if chained and following:
            return following
        starts = self.starts[kind]
        url = starts[self._turn[kind] % len(starts)]
        self._turn[kind] += 1
        return url

    def follow(self, kind: str, page: str) -> None:
        match = NEXT_RE.search(page)
        self._next[kind] = html.unescape(match.group(1)) if match else None


def listing_over_http(browser: Browser, plan: ListingPlan) -> list[ListRequest]:
    done: list[ListRequest] = []
    # The first request of each kind warms the worker's caches (templates, statements): untimed.
    for kind in plan.starts:
        browser.get(plan.starts[kind][0])
    for kind in plan.schedule:
        request = ListRequest(kind, plan.url(kind))
        start = time.perf_counter()
        reply = browser.get(request.url)
        request.ms = (time.perf_counter() - start) * 1000
        if reply.status != 200:
            raise RuntimeError(f"GET {request.url} answered {reply.status}")
        body = ROWS_RE.search(reply.text)
        request.rows = len(ROW_LINK_RE.findall(body.group(1))) if body else 0
        plan.follow(kind, reply.text)
        done.append(request)
    return done


API_STARTS = [
    "/api/v1/deposits",
    "/api/v1/deposits?box=received",
    "/api/v1/deposits?q=bethune",
]


def api_token(browser: Browser, account: Account) -> str:
    """A read token of *account*, created on its page as a person does."""
    token = browser.get("/compte/jetons").csrf()
    reply = browser.post_form(
        "/compte/jetons",
        [
            ("csrf_token", token),
            ("name", "banc d'essai"),
            ("scopes", "read"),
            ("lifetime_days", "7"),
            ("current", account.password),
        ],
    )
    match = re.search(r"filr_[A-Za-z0-9_-]{20,}", reply.text)
    if reply.status != 200 or match is None:
        raise RuntimeError(f"token creation failed ({reply.status})")
    return match.group(0)


def listing_over_api(port: int, secret: str, total: int) -> list[ListRequest]:
    """`total` GETs of /api/v1/deposits: first pages and the pages that follow them."""
    client = Browser(port)
    headers = {"Authorization": f"Bearer {secret}"}
    done: list[ListRequest] = []
    try:
        for url in API_STARTS:  # warm-up, untimed
            client.request("GET", url, headers=headers)
        following: str | None = None
        for n in range(total):
            url = following or API_STARTS[n % len(API_STARTS)]
            kind = "api next page" if following else "api first page"
            start = time.perf_counter()
            reply = client.request("GET", url, headers=headers)
            ms = (time.perf_counter() - start) * 1000
            if reply.status != 200:
                raise RuntimeError(f"GET {url} answered {reply.status}")
            answer = json.loads(reply.body)
            done.append(ListRequest(kind, url, ms, len(answer["items"])))
            # Every other request follows the previous page's link, once.
            following = answer["next_url"] if not following and n % 2 == 0 else None
    finally:
        client.close()
    return done


def listing_in_process(
    database_url: str, user_id: str, requests: list[ListRequest], explain: bool
) -> list[ListRequest]:
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    import portal.app  # noqa: F401 - every model mapped
    from portal.accounts.models import User
    from portal.deposits.listing import Filters, list_deposits

    engine = sa.create_engine(database_url)
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    timed: list[ListRequest] = []
    try:
        with Session(engine) as session:
            user = session.get(User, user_id)
            assert user is not None
            for request in requests[:5]:  # warm-up: statement cache, mapper configuration
                list_deposits(session, user, Filters.from_args(_args(request.url), user))
            sa.event.listen(engine, "before_cursor_execute", count)
            for request in requests:
                filters = Filters.from_args(_args(request.url), user)
                statements[0] = 0
                start = time.perf_counter()
                page = list_deposits(session, user, filters)
                ms = (time.perf_counter() - start) * 1000
                timed.append(
                    ListRequest(request.kind, request.url, ms, len(page.deposits), statements[0])
                )
                session.expunge_all()
                session.rollback()
            sa.event.remove(engine, "before_cursor_execute", count)
            if explain:
                explain_plans(engine, session, user, requests)
    finally:
        engine.dispose()
    return timed


def _args(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def explain_plans(engine: Any, session: Any, user: Any, requests: list[ListRequest]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the main query of the slowest request of each kind."""
    import sqlalchemy as sa

    from portal.deposits.listing import Filters, list_deposits

    slowest: dict[str, ListRequest] = {}
    for request in requests:
        if request.kind not in slowest or request.ms > slowest[request.kind].ms:
            slowest[request.kind] = request
    for kind, request in slowest.items():
        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            captured.append((statement, parameters))  # noqa: B023 - used within the loop turn

        sa.event.listen(engine, "before_cursor_execute", capture)
        try:
            list_deposits(session, user, Filters.from_args(_args(request.url), user))
        finally:
            sa.event.remove(engine, "before_cursor_execute", capture)
        session.rollback()
        statement, parameters = next(
            (s, p) for s, p in captured if "FROM deposit" in s and "ORDER BY" in s
        )
        with engine.connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
            ).scalars()
            print(f"\n  EXPLAIN ANALYZE, {kind}: {request.url} ({request.ms:.1f} ms over HTTP)")
            for line in plan:
                print("    " + line)


def report_listing(title: str, requests: list[ListRequest], target: float) -> bool:
    all_ms = [r.ms for r in requests]
    p95 = percentile(all_ms, 0.95)
    ok = p95 <= target
    print(
        f"  {title}: {len(all_ms)} pages, p50 {percentile(all_ms, 0.5):.1f} ms, p95 {p95:.1f} ms, "
        f"max {max(all_ms):.1f} ms (target p95 <= {target:.0f} ms: {'ok' if ok else 'MISSED'})"
    )
    for kind, group in by_kind(requests).items():
        ms = [r.ms for r in group]
        worst = max(group, key=lambda r: r.ms)
        statements = {r.statements for r in group}
        print(
            f"    {kind:14} n={len(ms):3}  p50 {percentile(ms, 0.5):6.1f}  p95 "
            f"{percentile(ms, 0.95):6.1f}  max {max(ms):6.1f} ms  "
            f"rows/page {min(r.rows for r in group)}-{max(r.rows for r in group)}  "
            + (f"statements/page {min(statements)}-{max(statements)}  " if any(statements) else "")
            + f"(slowest: {worst.url[:60]})"
        )
    return ok


def by_kind(requests: list[ListRequest]) -> dict[str, list[ListRequest]]:
    kinds: dict[str, list[ListRequest]] = {}
    for r in requests:
        kinds.setdefault(r.kind, []).append(r)
    return kinds


@dataclass
class ScopeResult:
    scope: str
    spaces: int
    visible: int
    http: list[ListRequest]
    api: list[ListRequest]
    in_process: list[ListRequest]


def report_scopes(results: list[ScopeResult], target: float) -> None:
    """One line per scope: p50/p95 over HTTP, through the API, in-process, and by kind."""

    def p(requests: list[ListRequest], kinds: tuple[str, ...] = ()) -> str:
        ms = [r.ms for r in requests if not kinds or r.kind in kinds]
        return f"{percentile(ms, 0.5):5.1f}/{percentile(ms, 0.95):5.1f}" if ms else "    -/-    "

    print(f"\nInbox by scope (p50/p95 ms; target p95 <= {target:.0f} ms)")
    print(
        f"  {'scope':18} {'spaces':>6} {'inbox':>8}  {'HTTP all':>11}  {'first page':>11}  "
        f"{'search':>11}  {'box=all':>11}  {'API':>11}  {'in-process':>11}  statements"
    )
    for r in results:
        statements = sorted({x.statements for x in r.in_process if x.rows})
        print(
            f"  {r.scope:18} {r.spaces:6} {r.visible:8,}  {p(r.http)}  "
            f"{p(r.http, ('first page',))}  {p(r.http, ('search',))}  {p(r.http, ('box=all',))}  "
            f"{p(r.api)}  {p(r.in_process)}  "
            f"{statements[0] if len(statements) == 1 else statements}"
        )


# --- the run ---------------------------------------------------------------------------------


def provision(env: dict[str, str]) -> tuple[Account, Account, Parties]:
    def org(kind: str, name: str, *options: str) -> str:
        args = ["orgs", "create", "--kind", kind, "--name", name, *options, "--json"]
        return str(run_filr_json(env, *args)["id"])

    def user(org_id: str, email: str, name: str, password: str | None = None) -> dict[str, Any]:
        args = ["users", "create", "--org", org_id, "--email", email, "--name", name]
        args += ["--role", "agent", "--json"]
        if password is None:
            return run_filr_json(env, *args)
        return run_filr_json(env, *args, "--password-stdin", "--with-totp", stdin=password + "\n")

    cd62 = org("departement", "CD 62 (banc)", "--departement", "62")
    ft62 = org("france_travail", "France Travail 62 (banc)", "--territory", "62")
    asso62 = org("prestataire", "Association 62 (banc)", "--departement", "62")
    accounts = []
    for org_id, email, name in [
        (cd62, "emetteur@banc.filr.localhost", "Émilie Expéditrice"),
        (ft62, "destinataire@banc.filr.localhost", "Denis Destinataire"),
    ]:
        password = "-".join(secrets.token_hex(4) for _ in range(4))
        made = user(org_id, email, name, password)
        accounts.append(Account(email, password, made["totp_secret"], made["id"], org_id))
    sender, recipient = accounts
    more62 = [
        user(cd62, f"agent{i}@banc.filr.localhost", name)["id"]
        for i, name in enumerate(["Bruno Lefebvre", "Chloé Dupont"])
    ]
    more_ft = user(ft62, "collegue@banc.filr.localhost", "Fatima Conseillère")["id"]
    parties = Parties(
        cd62=cd62,
        ft62=ft62,
        asso62=asso62,
        senders62=[sender.user_id, *more62],
        senders_ft=[recipient.user_id, more_ft],
        recipient_user=recipient.user_id,
    )
    return sender, recipient, parties


# --- local mode: the embedded defaults against copyparty --------------------------------------

COPYPARTY_VERSION = "1.20.0"
COPYPARTY_VENV = Path(tempfile.gettempdir()) / "filr-bench-copyparty"
LOCAL_TARGETS = {"download": 0.5, "upload": 1.0}
LOCAL_CPU_TARGET_MS = 0.6  # worker CPU per MiB downloaded
LOCAL_RSS_TARGET_MIB = 64  # peak RSS growth of a worker during a 1 GiB transfer
GIB = 1024 * MIB


def copyparty_python() -> Path:
    """copyparty in its own virtualenv under /tmp (never a dependency of the portal)."""
    python = COPYPARTY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(COPYPARTY_VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import copyparty"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"copyparty=={COPYPARTY_VERSION}"],
            check=True,
        )
    return python


@contextlib.contextmanager
def running_copyparty(root: Path, port: int, log: Path) -> Any:
    """copyparty serving `root` read-write to anyone, on 127.0.0.1:`port`."""
    root.mkdir(parents=True, exist_ok=True)
    command = [
        str(copyparty_python()),
        "-m",
        "copyparty",
        "-i",
        HOST,
        "-p",
        str(port),
        "-v",
        f"{root}::rw",
        "-q",
        "--no-robots",
        "-e2d",
        "--hist",
        str(root.parent / "hist"),
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"copyparty exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                probe = Browser(port)
                status = probe.get("/").status
                probe.close()
                if status == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"copyparty did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield process
    finally:
        stop_process_group(process)


def copyparty_upload(port: int, root: Path, content: Content, name: str) -> float:
    """PUT the content, then fsync the file it wrote (the portal fsyncs every object)."""
    client = Browser(port)
    try:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(content.size)}
        start = time.perf_counter()
        reply = client.request("PUT", f"/{name}", content.chunks(), headers)
        fd = os.open(root / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        seconds = time.perf_counter() - start
    finally:
        client.close()
    if reply.status not in (200, 201):
        raise RuntimeError(f"copyparty PUT answered {reply.status}: {reply.text[:300]}")
    return seconds


def copyparty_download(port: int, name: str, content: Content) -> float:
    client = Browser(port)
    try:
        start = time.perf_counter()
        response = client.open("GET", f"/{name}")
        digest = hashlib.sha256()
        received = read_all(response, digest)
        seconds = time.perf_counter() - start
    finally:
        client.close()
    if response.status != 200 or received != content.size or digest.hexdigest() != content.sha256:
        raise RuntimeError(f"copyparty GET: wrong content ({response.status}, {received} bytes)")
    return seconds


def api_download(port: int, secret: str, deposit_id: str, file_id: str, content: Content) -> float:
    client = Browser(port)
    try:
        start = time.perf_counter()
        response = client.open(
            "GET",
            f"/api/v1/deposits/{deposit_id}/files/{file_id}/content",
            headers={"Authorization": f"Bearer {secret}"},
        )
        digest = hashlib.sha256()
        received = read_all(response, digest)
        seconds = time.perf_counter() - start
    finally:
        client.close()
    if response.status != 200 or received != content.size or digest.hexdigest() != content.sha256:
        raise RuntimeError(f"API download: wrong content ({response.status}, {received} bytes)")
    return seconds


def main_local(args: argparse.Namespace, size: int, repeat: int) -> int:
    """The portal on its embedded defaults (SQLite, local store) against copyparty, same disk."""
    with ExitStack() as stack:
        base = Path(args.local_dir) if args.local_dir else None
        work = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="filr-local-bench-", dir=base))
        )
        port, peer_port = free_port(), free_port()
        env = {
            **os.environ,
            "FILR_DATA_DIR": str(work / "data"),
            "FILR_SECRET_KEY": secrets.token_urlsafe(48),
            "FILR_SECURE_COOKIES": "false",
            "FILR_BASE_URL": f"http://{HOST}:{port}",
            "FILR_MAIL_DIR": str(work / "mails"),
            "FILR_SESSION_IDLE_MINUTES": "120",
            # No antivirus: it measures clamd (40-50 MiB/s), not the transfer. An unreachable
            # clamd with the bypass lets every file through at once (audited as bypassed).
            "FILR_CLAMD_URL": f"unix://{work / 'no-clamd.sock'}",
            "FILR_ANTIVIRUS_BYPASS": "true",
            "FILR_ANTIVIRUS_INLINE_MAX_BYTES": str(1 << 40),
            "PYTHONPATH": str(ROOT),
        }
        for name in ("FILR_DATABASE_URL", "FILR_STORAGE_URL"):
            env.pop(name, None)
        (work / "data").mkdir(mode=0o700)
        run_filr(env, "db", "upgrade", "--revision", "heads")
        sender_account, recipient_account, _ = provision(env)
        portal = stack.enter_context(
            running_portal(env, port, args.workers, args.threads, work / "gunicorn.log")
        )
        peer_root = work / "copyparty" / "files"
        peer = stack.enter_context(running_copyparty(peer_root, peer_port, work / "copyparty.log"))
        sender, recipient = Browser(port), Browser(port)
        stack.callback(sender.close)
        stack.callback(recipient.close)
        log_in(sender, sender_account)
        log_in(recipient, recipient_account)
        secret = api_token(recipient, recipient_account)
        recipient.close()
        recipient = Browser(port, recipient.cookies)
        stack.callback(recipient.close)
        pool = make_pool()
        content = Content(pool, size)
        print(
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; gunicorn "
            f"{args.workers} workers x {args.threads} threads; embedded defaults (SQLite, "
            f"local store in {work}); copyparty {COPYPARTY_VERSION} on the same disk",
            flush=True,
        )

        def workers() -> list[int]:
            return worker_pids(portal.pid)

        portal_cpu = {
            "client": lambda: sum(os.times()[:2]),
            "server": lambda: cpu_seconds(workers()),
        }
        peer_cpu = {
            "client": lambda: sum(os.times()[:2]),
            "server": lambda: cpu_seconds([peer.pid]),
        }
        runs: dict[str, list[tuple[float, float, int]]] = {}

        def timed(
            case: str, meter: dict[str, Callable[[], float]], action: Callable[[], float]
        ) -> None:
            # Peak RSS growth of the server's processes during the transfer (the workers'
            # largest, for the portal): VmHWM, reset before it, minus VmRSS then.
            rss = reset_peak_rss(workers() if meter is portal_cpu else [peer.pid])
            before = meter["server"]()
            seconds = action()
            cpu = meter["server"]() - before
            runs.setdefault(case, []).append((seconds, cpu, peak_rss_growth(rss)))

        # Warm-up, untimed: each worker loads its code paths, copyparty its database.
        warm = Content(pool, 16 * MIB)
        for n in range(2):
            deposit_id = create_deposit(sender, recipient_account.org_id, f"Chauffe {n}")
            upload(sender, deposit_id, warm, "chauffe.png")
        copyparty_upload(peer_port, peer_root, warm, "warm.png")
        copyparty_download(peer_port, "warm.png", warm)

        deposit_id = create_deposit(sender, recipient_account.org_id, "Banc d'essai local")
        _, file_id = upload(sender, deposit_id, content, "banc.png")
        publish(sender, deposit_id)
        token = recipient.get(f"/depots/{deposit_id}").csrf()
        copyparty_upload(peer_port, peer_root, content, "banc.png")
        print(f"\nUpload and download of {human(size)}, {repeat} alternating round(s):", flush=True)
        for run in range(repeat):
            order = ["peer", "portal"] if run % 2 == 0 else ["portal", "peer"]
            for side in order:
                if side == "peer":
                    name = f"up-{run}.png"
                    timed(
                        "copyparty PUT+fsync",
                        peer_cpu,
                        lambda name=name: copyparty_upload(peer_port, peer_root, content, name),
                    )
                    (peer_root / name).unlink()
                    timed(
                        "copyparty GET",
                        peer_cpu,
                        lambda: copyparty_download(peer_port, "banc.png", content),
                    )
                else:
                    draft = create_deposit(sender, recipient_account.org_id, f"Envoi {run}")
                    timed(
                        "portal upload",
                        portal_cpu,
                        lambda draft=draft, run=run: upload(
                            sender, draft, content, f"up-{run}.png"
                        )[0],
                    )
                    timed(
                        "portal web download",
                        portal_cpu,
                        lambda: portal_download(recipient, deposit_id, file_id, token, content),
                    )
                    timed(
                        "portal API download",
                        portal_cpu,
                        lambda: api_download(port, secret, deposit_id, file_id, content),
                    )
            print(
                f"  round {run + 1}/{repeat} (load {os.getloadavg()[0]:.1f}): "
                + ", ".join(
                    f"{case} {size / MIB / r[-1][0]:.0f} MiB/s" for case, r in runs.items()
                ),
                flush=True,
            )

        mib = size / MIB

        def rate(case: str) -> float:
            return mib / statistics.median(r[0] for r in runs[case])

        def cpu_ms(case: str) -> float:
            return statistics.median(r[1] for r in runs[case]) * 1000 / mib

        def rss_mib(case: str) -> float:
            return max(r[2] for r in runs[case]) / MIB

        print(
            f"\nMedians of {repeat} (MiB/s; server CPU ms per MiB: the gunicorn workers, "
            "copyparty; peak RSS growth of a server process during a transfer, largest), "
            f"load average now {os.getloadavg()[0]:.2f}"
        )
        for case in runs:
            print(
                f"  {case:22} {rate(case):7.0f} MiB/s   {cpu_ms(case):5.2f} ms CPU/MiB   "
                f"peak RSS +{rss_mib(case):.0f} MiB"
            )
        failures = 0
        judged = size >= 256 * MIB
        for case, peer_case, target in (
            ("portal web download", "copyparty GET", LOCAL_TARGETS["download"]),
            ("portal API download", "copyparty GET", LOCAL_TARGETS["download"]),
            ("portal upload", "copyparty PUT+fsync", LOCAL_TARGETS["upload"]),
        ):
            ratio = rate(case) / rate(peer_case)
            ok = ratio >= target
            failures += judged and not ok
            verdict = ("ok" if ok else "MISSED") if judged else "not judged below 256 MiB"
            print(f"  ratio {case} / {peer_case}: {ratio:.2f} (target {target}): {verdict}")
        for case in ("portal web download", "portal API download"):
            ok = cpu_ms(case) <= LOCAL_CPU_TARGET_MS
            failures += not ok
            print(
                f"  worker CPU of the {case}: {cpu_ms(case):.2f} ms/MiB "
                f"(target <= {LOCAL_CPU_TARGET_MS}): {'ok' if ok else 'MISSED'}"
            )
        for case in ("portal upload", "portal web download", "portal API download"):
            ok = rss_mib(case) <= LOCAL_RSS_TARGET_MIB
            failures += size >= GIB and not ok
            verdict = ("ok" if ok else "MISSED") if size >= GIB else "judged from 1 GiB"
            print(
                f"  worker peak RSS growth, {case}: +{rss_mib(case):.0f} MiB "
                f"(target <= {LOCAL_RSS_TARGET_MIB} MiB during a 1 GiB transfer): {verdict}"
            )
    print("\nAll targets met." if not failures else f"\n{failures} target(s) missed.")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--size", type=int, help="MiB for the upload/download (default 256)")
    parser.add_argument("--repeat", type=int, help="runs of each transfer (default 3)")
    parser.add_argument("--deposits", type=int, help="deposits in the space (default 100000)")
    parser.add_argument("--pages", type=int, help="inbox GETs timed (default 200)")
    parser.add_argument("--concurrent", type=int, default=32)
    parser.add_argument("--concurrent-size", type=int, help="MiB each (default 10)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="PostgreSQL maintenance database")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE each query kind")
    parser.add_argument("--skip", default="", help="comma-separated: throughput,concurrent,listing")
    parser.add_argument(
        "--profile",
        type=Path,
        help="after the timed runs, one portal upload and download under py-spy (raw stacks here)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="only the portal on its embedded defaults against copyparty (no S3, no PostgreSQL)",
    )
    parser.add_argument("--local-dir", help="where the local mode puts its files (default /tmp)")
    args = parser.parse_args()
    size = (args.size or (32 if args.quick else 256)) * MIB
    repeat = args.repeat or (1 if args.quick else 3)
    deposits = args.deposits or (5_000 if args.quick else 100_000)
    pages = args.pages or (60 if args.quick else 200)
    concurrent_size = (args.concurrent_size or (2 if args.quick else 10)) * MIB
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    def _terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # runs the finally blocks: processes and database go

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    if args.local:
        return main_local(args, size, repeat)

    from storage import S3Store
    from tests.support.seaweedfs import running_seaweedfs

    failures = 0
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="filr-http-bench-")))
        endpoint = stack.enter_context(running_seaweedfs(work / "seaweedfs", bucket=BUCKET))
        database = stack.enter_context(throwaway_database(args.admin_url))
        db_host = args.admin_url.rsplit("/", 1)[0]
        database_url = f"{db_host}/{database}"
        port = free_port()
        env = {
            **os.environ,
            "FILR_DATABASE_URL": database_url.replace("postgresql://", "postgresql+psycopg://"),
            "FILR_DATA_DIR": str(work / "data"),
            "FILR_SECRET_KEY": secrets.token_urlsafe(48),
            "FILR_STORAGE_URL": f"s3://{BUCKET}/portal",
            "FILR_S3_ENDPOINT_URL": endpoint.endpoint_url,
            "FILR_S3_REGION": endpoint.region,
            "FILR_S3_ACCESS_KEY": endpoint.access_key,
            "FILR_S3_SECRET_KEY": endpoint.secret_key,
            "FILR_SECURE_COOKIES": "false",
            "FILR_BASE_URL": f"http://{HOST}:{port}",
            "FILR_MAIL_DIR": str(work / "mails"),
            "FILR_SESSION_IDLE_MINUTES": "120",
            # The throwaway database belongs to the maintenance role (a superuser).
            "FILR_ALLOW_SUPERUSER": "1",
            # No antivirus, as in --local: it would measure clamd, and leave the file "analyse
            # en attente" (not downloadable) without one.
            "FILR_CLAMD_URL": f"unix://{work / 'no-clamd.sock'}",
            "FILR_ANTIVIRUS_BYPASS": "true",
            "FILR_ANTIVIRUS_INLINE_MAX_BYTES": str(1 << 40),
            "PYTHONPATH": str(ROOT),
        }
        run_filr(env, "db", "upgrade")
        sender_account, recipient_account, parties = provision(env)
        portal = stack.enter_context(
            running_portal(env, port, args.workers, args.threads, work / "gunicorn.log")
        )
        s3 = stack.enter_context(
            S3Store(
                BUCKET,
                "raw",
                endpoint_url=endpoint.endpoint_url,
                region=endpoint.region,
                access_key=endpoint.access_key,
                secret_key=endpoint.secret_key,
            )
        )
        sender = Browser(port)
        recipient = Browser(port)
        stack.callback(sender.close)
        stack.callback(recipient.close)
        log_in(sender, sender_account)
        log_in(recipient, recipient_account)
        pool = make_pool()
        print(
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; gunicorn "
            f"{args.workers} workers x {args.threads} threads; S3 part size "
            f"{human(s3.part_size)}, concurrency {s3.max_concurrency}; PostgreSQL {database}",
            flush=True,
        )

        def workers() -> list[int]:
            return worker_pids(portal.pid)

        # Warm-up, untimed: SeaweedFS grows its volumes, each worker loads its code paths.
        warm = Content(pool, 16 * MIB)
        raw_upload(s3, warm, "warm-up")
        s3.delete("warm-up")
        for n in range(2):
            deposit_id = create_deposit(sender, recipient_account.org_id, f"Chauffe {n}")
            upload(sender, deposit_id, warm, "chauffe.png")

        if "throughput" not in skip:
            content = Content(pool, size)
            print(f"\nUpload and download of {human(size)}, {repeat} run(s):", flush=True)
            meter = CpuMeter(workers, endpoint.process.pid)
            timings = measure_throughput(
                s3, sender, recipient, recipient_account.org_id, content, repeat, meter
            )
            # Small files are dominated by fixed costs (log-in checks, link, first part).
            failures += report_throughput(timings, size, enforce=size >= 256 * MIB)
            if args.profile:
                deposit_id = create_deposit(sender, recipient_account.org_id, "Profil")
                profiled: dict[str, str] = {}

                def profiled_upload() -> None:
                    profiled["file"] = upload(sender, deposit_id, content, "profil.png")[1]
                    publish(sender, deposit_id)
                    profiled["token"] = recipient.get(f"/depots/{deposit_id}").csrf()

                def profiled_download() -> None:
                    file_id, token = profiled["file"], profiled["token"]
                    portal_download(recipient, deposit_id, file_id, token, content)

                profile_transfers(
                    args.profile,
                    portal.pid,
                    [("upload", profiled_upload), ("download", profiled_download)],
                )

        if "concurrent" not in skip:
            small = Content(pool, concurrent_size)
            deposit_id = create_deposit(
                sender, recipient_account.org_id, "Téléchargements simultanés"
            )
            _, file_id = upload(sender, deposit_id, small, "simultane.png")
            publish(sender, deposit_id)
            token = recipient.get(f"/depots/{deposit_id}").csrf()
            failures += bool(
                concurrent_downloads(
                    port, recipient.cookies, deposit_id, file_id, token, small, args.concurrent
                )
            )

        if "listing" not in skip:
            print(f"\nInbox with {deposits:,} deposits over every space", flush=True)
            seconds = insert_deposits(database_url, parties, deposits)
            print(f"  generated in {seconds:.1f} s (INSERT ... SELECT, then VACUUM ANALYZE)")
            secret = api_token(recipient, recipient_account)
            today = datetime.now(UTC).date()
            target = LIST_P95_TARGET_MS if deposits <= 100_000 else LIST_P95_TARGET_MS_1M
            results = []
            for scope, codes in SCOPES.items():
                spaces, visible = set_territory(database_url, parties.ft62, codes)
                print(
                    f"\n Scope {scope} ({spaces} spaces): the recipient's inbox holds "
                    f"{visible:,} deposits",
                    flush=True,
                )
                plan = ListingPlan(
                    pages,
                    {
                        "month_ago_year": (today - timedelta(days=395)).isoformat(),
                        "today_year": (today - timedelta(days=365)).isoformat(),
                        "sender_word": "lefebvre",
                    },
                )
                over_http = listing_over_http(recipient, plan)
                failures += not report_listing(
                    "over HTTP (GET /depots, whole page)", over_http, target
                )
                over_api = listing_over_api(port, secret, max(10, pages // 5))
                failures += not report_listing("over HTTP (GET /api/v1/deposits)", over_api, target)
                in_process = listing_in_process(
                    database_url.replace("postgresql://", "postgresql+psycopg://"),
                    recipient_account.user_id,
                    over_http,
                    args.explain,
                )
                failures += not report_listing("in-process list_deposits()", in_process, target)
                results.append(ScopeResult(scope, spaces, visible, over_http, over_api, in_process))
            report_scopes(results, target)
            # An empty page loads no files, recipients nor senders: pages with rows compared.
            statements: dict[str, set[int]] = {}
            for result in results:
                for r in result.in_process:
                    if r.rows:
                        statements.setdefault(r.kind, set()).add(r.statements)
            varying = {kind: sorted(n) for kind, n in statements.items() if len(n) > 1}
            print(
                "  statements per page (pages with rows), every scope: "
                + (
                    f"vary {varying} (MISSED)"
                    if varying
                    else f"{sorted(set().union(*statements.values()))}"
                )
            )
            failures += bool(varying)

        peaks = [proc_field(pid, "VmHWM") for pid in workers()]
        print(
            "\ngunicorn workers peak RSS: "
            + ", ".join(f"{p / MIB:.0f} MiB" for p in peaks)
            + f"; load average now {os.getloadavg()[0]:.2f}"
        )
    print("\nAll targets met." if not failures else f"\n{failures} target(s) missed.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
