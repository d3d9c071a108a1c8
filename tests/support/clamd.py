"""A real ClamAV daemon for the tests, on a signature database built here (no download).

The database holds two signatures: the EICAR test file (an MD5 signature, `.hdb`) and the
project's own test string (a body signature, `.ndb`), so a test can tell "the antivirus works"
from "the antivirus knows EICAR". clamd runs in the foreground on a socket in a temporary
directory, its temporary files in /dev/shm (memory) when there is one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Final

import pytest

from tests.support.services import unavailable

EICAR: Final = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE: Final = "Eicar-Test-Signature.UNOFFICIAL"
FILR_TEST_STRING: Final = b"FILR-TEST-SIGNATURE-DO-NOT-DEPOSIT"
FILR_SIGNATURE: Final = "Filr.Test.Signature.UNOFFICIAL"
# clamd names the signatures of unsigned databases with ".UNOFFICIAL".
_UNOFFICIAL: Final = ".UNOFFICIAL"
START_TIMEOUT: Final = 30.0


def find_clamd() -> str | None:
    """The clamd binary (Debian package clamav-daemon), or None."""
    return shutil.which("clamd") or (
        "/usr/sbin/clamd" if os.access("/usr/sbin/clamd", os.X_OK) else None
    )


def write_signatures(directory: Path) -> None:
    """Write the two test signatures into *directory* (created if needed).

    Body signatures (`.ndb`, any file type, any offset): EICAR is found inside a flow's XML or
    a text file too, not only as a whole file as an `.hdb` hash would.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "filr-test.ndb").write_text(
        f"{EICAR_SIGNATURE.removesuffix(_UNOFFICIAL)}:0:*:{EICAR.hex()}\n"
        f"{FILR_SIGNATURE.removesuffix(_UNOFFICIAL)}:0:*:{FILR_TEST_STRING.hex()}\n"
    )


class ClamdServer:
    """One clamd process on its own socket and signature database."""

    def __init__(self, root: Path, *, stream_max: str = "1000M") -> None:
        self.root = root
        self.socket_path = root / "clamd.sock"
        self.database = root / "db"
        self.config = root / "clamd.conf"
        shm = Path("/dev/shm")
        self.temporary = Path(
            tempfile.mkdtemp(prefix="filr-clamd-", dir=shm if shm.is_dir() else root)
        )
        self.process: subprocess.Popen[bytes] | None = None
        write_signatures(self.database)
        self.config.write_text(
            f"LocalSocket {self.socket_path}\n"
            f"DatabaseDirectory {self.database}\n"
            f"TemporaryDirectory {self.temporary}\n"
            "Foreground yes\n"
            f"LogFile {root / 'clamd.log'}\n"
            f"StreamMaxLength {stream_max}\nMaxFileSize 1000M\nMaxScanSize 1000M\n"
            "SelfCheck 0\n"
        )

    @property
    def url(self) -> str:
        """The URL the portal's FILR_CLAMD_URL takes."""
        return f"unix://{self.socket_path}"

    def start(self) -> ClamdServer:
        """Start clamd and wait until it answers on its socket."""
        binary = find_clamd()
        if binary is None:
            unavailable("clamd (apt-get install clamav-daemon)")
            raise AssertionError("unreachable")
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [binary, "--config-file", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        from portal.filecheck.clamd import ClamdClient

        client = ClamdClient(self.url, timeout=2)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.root / "clamd.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"clamd exited at start:\n{log}")
            if self.socket_path.exists() and client.ping():
                return self
            time.sleep(0.05)
        self.stop()
        pytest.fail("clamd did not answer within 30 s")

    def kill(self) -> None:
        """Kill clamd at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Stop clamd and remove its temporary directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def close(self) -> None:
        """Stop clamd and remove what it left."""
        self.stop()
        shutil.rmtree(self.temporary, ignore_errors=True)


_SHARED: ClamdServer | None = None


def shared_clamd() -> ClamdServer:
    """One clamd for the whole test process, started on first use, stopped at exit."""
    global _SHARED
    if _SHARED is None or _SHARED.process is None or _SHARED.process.poll() is not None:
        root = Path(tempfile.mkdtemp(prefix="filr-clamd-session-"))
        server = ClamdServer(root).start()
        _SHARED = server
        atexit.register(_close_shared, server, root)
    return _SHARED


def _close_shared(server: ClamdServer, root: Path) -> None:
    server.close()
    shutil.rmtree(root, ignore_errors=True)
