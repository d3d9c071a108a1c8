"""Throughput and memory of EncryptedStore against raw transfers, on SeaweedFS and on disk.

For each size it measures, on the same S3 server in the same run:
  * raw upload:  boto3's own multipart upload (TransferManager, same part size and concurrency)
    of data generated in memory;  encrypted upload: EncryptedStore(S3Store).put of the same data
  * raw download: one streamed GET read in 1 MiB chunks and dropped (what a web response does);
    encrypted download: EncryptedStore(S3Store).open read to the end (digest checked)
and on a local directory, against a plain file copy in 1 MiB chunks:
  * upload: source file -> stored file, fsync;  encrypted: source file -> EncryptedStore.put
  * download: stored file -> destination file;  encrypted: EncryptedStore.open -> destination
  * (for information, no target) download into memory only: read vs decrypt, no destination.

Each transfer runs in a fresh subprocess, so that its peak RSS growth (VmHWM after the transfer
minus VmRSS before it) belongs to it alone. Usage:

    python benchmarks/storage_throughput.py                 # 256 MiB and 1 GiB, own SeaweedFS
    python benchmarks/storage_throughput.py --sizes 64M     # quick run
    python benchmarks/storage_throughput.py --endpoint-url http://host:8333 --bucket b \\
        --access-key ... --secret-key ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere in the checkout

MIB = 1024 * 1024
POOL_BLOCKS = 16  # 16 MiB of random data, cycled: incompressible and cheap to produce
TARGETS = {"upload": 0.85, "download": 0.75}
RSS_BUDGET = 64 * MIB


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def human(size: int) -> str:
    return f"{size / (1024 * MIB):g} GiB" if size >= 1024 * MIB else f"{size / MIB:g} MiB"


# --- in the child process ----------------------------------------------------------------


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakRss:
    """Peak resident memory of this process from now on (kernel VmHWM, else sampling)."""

    def __init__(self) -> None:
        self.baseline = _status_bytes("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self._sampler: threading.Thread | None = None
        except OSError:
            self._peak = self.baseline
            self._stop = threading.Event()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, _status_bytes("VmRSS"))

    def growth(self) -> int:
        if self._sampler is None:
            return _status_bytes("VmHWM") - self.baseline
        self._stop.set()
        self._sampler.join()
        return self._peak - self.baseline


def generate(size: int) -> Iterator[bytes]:
    """Yield `size` bytes of incompressible data in 1 MiB chunks."""
    pool = [os.urandom(MIB) for _ in range(POOL_BLOCKS)]
    sent = 0
    index = 0
    while sent < size:
        block = pool[index % POOL_BLOCKS]
        if size - sent < MIB:
            block = block[: size - sent]
        sent += len(block)
        index += 1
        yield block


class GeneratedFile:
    """A read-only file object over `generate`, for boto3's upload_fileobj."""

    def __init__(self, size: int) -> None:
        self._chunks = generate(size)
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


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one transfer and return its timing and memory."""
    from boto3.s3.transfer import TransferConfig
    from sqlalchemy import create_engine

    from storage import EncryptedStore, Keyring, LocalStore, MasterKey, S3Store, SqlKeyStore
    from storage.sql import metadata

    case: str = spec["case"]
    size: int = spec["size"]
    key: str = spec["key"]
    work = Path(spec["workdir"])
    engine = create_engine(f"sqlite:///{work / 'keys.db'}")
    metadata.create_all(engine)
    keyring = Keyring(MasterKey.from_file(work / "master.key"), SqlKeyStore(engine))
    keyring.ensure("62")
    s3 = None
    if case.startswith("s3"):
        s3 = S3Store(
            spec["bucket"],
            "bench",
            endpoint_url=spec["endpoint_url"],
            region=spec["region"],
            access_key=spec["access_key"],
            secret_key=spec["secret_key"],
            part_size=spec["part_size"],
            max_concurrency=spec["concurrency"],
        )
        inner: Any = s3
    else:
        inner = LocalStore(work / "objects")
    store = EncryptedStore(inner, keyring, verify_sha256=spec.get("verify_sha256", False))
    source: Iterator[bytes] | None = None
    source_file = None
    if case.endswith("upload"):
        if case.startswith("local"):
            source_file = open(work / "source.bin", "rb", buffering=0)  # noqa: SIM115
            source = iter(lambda: source_file.read(MIB), b"")
        else:
            source = generate(size)
    received = 0
    # Every case starts alike: no destination left to truncate, no dirty pages of the previous.
    (work / "download.bin").unlink(missing_ok=True)
    os.sync()

    peak = PeakRss()
    start = time.perf_counter()
    if case == "s3-raw-upload":
        assert s3 is not None
        config = TransferConfig(
            multipart_threshold=spec["part_size"],
            multipart_chunksize=spec["part_size"],
            max_concurrency=spec["concurrency"],
            use_threads=True,
        )
        s3.client.upload_fileobj(GeneratedFile(size), s3.bucket, s3.prefix + key, Config=config)  # type: ignore[arg-type]
    elif case == "s3-raw-download":
        assert s3 is not None
        body = s3.client.get_object(Bucket=s3.bucket, Key=s3.prefix + key)["Body"]
        while data := body.read(MIB):
            received += len(data)
        body.close()
    elif case == "local-raw-upload":
        target = work / "objects" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb", buffering=0) as file:
            assert source is not None
            for chunk in source:
                file.write(chunk)
            os.fsync(file.fileno())
    elif case == "local-raw-download":
        with (
            open(work / "objects" / key, "rb", buffering=0) as file,
            open(work / "download.bin", "wb", buffering=0) as out,
        ):
            while data := file.read(MIB):
                received += len(data)
                out.write(data)
    elif case == "local-raw-read":
        with open(work / "objects" / key, "rb", buffering=0) as file:
            while data := file.read(MIB):
                received += len(data)
    elif case == "local-enc-download":
        with open(work / "download.bin", "wb", buffering=0) as out:
            for data in store.open(key):
                received += len(data)
                out.write(data)
    elif case.endswith("enc-upload"):
        assert source is not None
        store.put(key, source, departement="62")
    elif case.endswith("enc-download") or case == "local-enc-read":
        for data in store.open(key):
            received += len(data)
    else:
        raise ValueError(case)
    seconds = time.perf_counter() - start
    growth = peak.growth()
    if source_file is not None:
        source_file.close()
    if not case.endswith("upload") and received != size:
        raise RuntimeError(f"{case}: read {received} bytes, expected {size}")
    if s3 is not None:
        s3.close()
    engine.dispose()
    return {"seconds": seconds, "rss_growth": growth}


# --- in the parent process ---------------------------------------------------------------


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"{spec['case']} failed:\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def drop_objects(spec: dict[str, Any], backend: str) -> None:
    """Delete what the local cases stored, so that the disk does not fill over a long run."""
    if backend == "local":
        work = Path(spec["workdir"])
        shutil.rmtree(work / "objects", ignore_errors=True)
        (work / "download.bin").unlink(missing_ok=True)


def write_source(path: Path, size: int) -> None:
    """Write the file the local uploads copy from (not timed)."""
    with open(path, "wb") as file:
        for chunk in generate(size):
            file.write(chunk)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256M,1G", help="comma-separated, e.g. 64M,256M,1G")
    parser.add_argument("--backends", default="s3,local", help="s3, local or both")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the best counts")
    parser.add_argument("--part-size", default="8M")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="where data and keys go (default: temp)")
    parser.add_argument("--endpoint-url", help="use this S3 service instead of a new SeaweedFS")
    parser.add_argument("--bucket", default="filr-bench")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    parser.add_argument(
        "--verify-sha256",
        action="store_true",
        help="also hash the plaintext again on every read (EncryptedStore(verify_sha256=True))",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    from storage import generate_master_key_file
    from tests.support.seaweedfs import running_seaweedfs

    sizes = [parse_size(text) for text in args.sizes.split(",")]
    backends = [name.strip() for name in args.backends.split(",")]
    with ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        generate_master_key_file(work / "master.key")
        common: dict[str, Any] = {
            "workdir": str(work),
            "part_size": parse_size(args.part_size),
            "concurrency": args.concurrency,
            "bucket": args.bucket,
            "region": args.region,
            "verify_sha256": args.verify_sha256,
        }
        if "s3" in backends:
            if args.endpoint_url:
                common.update(
                    endpoint_url=args.endpoint_url,
                    access_key=args.access_key,
                    secret_key=args.secret_key,
                )
            else:
                endpoint = stack.enter_context(
                    running_seaweedfs(work / "seaweedfs", bucket=args.bucket)
                )
                common.update(
                    endpoint_url=endpoint.endpoint_url,
                    access_key=endpoint.access_key,
                    secret_key=endpoint.secret_key,
                )
        print(
            f"part size {human(common['part_size'])}, concurrency {args.concurrency}, "
            f"{os.cpu_count()} CPUs, best of {args.repeat}, "
            f"verify_sha256={args.verify_sha256}"
        )
        if "s3" in backends:
            # A first upload makes SeaweedFS grow its volumes: not something to time.
            run_child({**common, "case": "s3-enc-upload", "size": 64 * MIB, "key": "warm-up"})
        failures = 0
        for backend in backends:
            raw_name = "boto3" if backend == "s3" else "file copy"
            for size in sizes:
                if backend == "local":
                    write_source(work / "source.bin", size)
                cases = [
                    f"{backend}-{kind}-{direction}"
                    for direction in ("upload", "download")
                    for kind in ("raw", "enc")
                ]
                if backend == "local":
                    cases += ["local-raw-read", "local-enc-read"]
                best: dict[str, dict[str, Any]] = {}
                for run in range(args.repeat):
                    # Alternate which of raw and encrypted goes first: the page cache and the
                    # disk remember the previous case, and that must not favour one side.
                    # cases come in (raw, encrypted) pairs: swap each pair on odd runs.
                    order = cases if run % 2 == 0 else [cases[i ^ 1] for i in range(len(cases))]
                    for case in order:
                        kind = case.split("-")[1]
                        spec = {**common, "case": case, "size": size}
                        spec["key"] = f"{backend}-{kind}/{size}/{run}"
                        result = run_child(spec)
                        if case not in best or result["seconds"] < best[case]["seconds"]:
                            best[case] = result
                    drop_objects(common, backend)
                print(f"\n{backend}, {human(size)}:")
                rows = [("upload", "upload"), ("download", "download")]
                if backend == "local":
                    rows.append(("read", "read only"))
                for direction, label in rows:
                    raw = best[f"{backend}-raw-{direction}"]
                    enc = best[f"{backend}-enc-{direction}"]
                    raw_rate = size / raw["seconds"] / MIB
                    enc_rate = size / enc["seconds"] / MIB
                    ratio = enc_rate / raw_rate
                    target = TARGETS.get(direction)
                    verdict = "(information)"
                    if target is not None:
                        ok = ratio >= target
                        failures += not ok
                        verdict = f"(target {target}) {'ok' if ok else 'MISSED'}"
                    print(
                        f"  {label:9} {raw_name:9} {raw_rate:6.0f} MiB/s | encrypted "
                        f"{enc_rate:6.0f} MiB/s | ratio {ratio:4.2f} {verdict:20} | peak RSS "
                        f"growth: raw {raw['rss_growth'] / MIB:3.0f} MiB, "
                        f"encrypted {enc['rss_growth'] / MIB:3.0f} MiB"
                    )
                    if size >= 1024 * MIB and enc["rss_growth"] > RSS_BUDGET:
                        failures += 1
                        print(f"  encrypted {direction} peak RSS growth above 64 MiB: MISSED")
            if backend == "local":
                (work / "source.bin").unlink(missing_ok=True)
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
