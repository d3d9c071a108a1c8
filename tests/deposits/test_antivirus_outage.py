"""Fail closed: clamd down or killed mid-scan holds deposits until `filr jobs antivirus`."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

import audit
from portal.container import services
from portal.db import db, utcnow
from portal.deposits.models import Deposit, DepositFile, DepositStatus, ScanStatus
from portal.deposits.rescan import check_signatures
from portal.securite.models import AlertKind, SecurityAlert
from portal.settings import Settings
from tests.cli.conftest import cli_env, filr  # noqa: F401 - the CLI's environment fixture
from tests.conftest import audit_rows, csrf_of, https, reread
from tests.deposits.conftest import PDF, create_deposit, publish, upload
from tests.factories import World
from tests.flows.conftest import ClientFor
from tests.support.clamd import EICAR, EICAR_SIGNATURE, ClamdServer
from tests.support.pdf import make_pdf
from tests.support.services import SmtpSink


@pytest.fixture
def own_clamd(tmp_path: Path) -> Iterator[ClamdServer]:
    """A clamd of this test's own, that it may kill and start again."""
    root = tmp_path / "clamd"
    root.mkdir()
    server = ClamdServer(root).start()
    yield server
    server.close()


@pytest.fixture
def settings(settings: Settings, own_clamd: ClamdServer) -> Settings:
    """The deposits' settings, on this test's clamd."""
    return settings.with_overrides(clamd_url=own_clamd.url)


class _KillsClamd(io.BytesIO):
    """A request body that kills clamd once its first MiB has been read."""

    def __init__(self, data: bytes, server: ClamdServer) -> None:
        super().__init__(data)
        self._server = server

    def _maybe_kill(self) -> None:
        if self.tell() >= 1024 * 1024:
            self._server.kill()

    def read(self, size: int | None = -1) -> bytes:
        self._maybe_kill()
        return super().read(size)

    def readinto(self, buffer: object) -> int:  # type: ignore[override]
        self._maybe_kill()
        return super().readinto(buffer)  # type: ignore[arg-type]


def _upload_killing(client: FlaskClient, deposit_id: str, data: bytes, server: ClamdServer) -> int:
    token = csrf_of(client, f"/depots/{deposit_id}/fichiers")
    response = client.post(
        f"/depots/{deposit_id}/fichiers",
        input_stream=_KillsClamd(data, server),
        headers={
            "X-CSRFToken": token,
            "X-Filename": quote("fiche.pdf"),
            "Content-Type": "application/octet-stream",
        },
    )
    return response.status_code


def test_clamd_killed_mid_scan_holds_the_deposit_until_the_job_scans_and_publishes_it(
    app: Flask,
    world: World,
    client_for: ClientFor,
    own_clamd: ClamdServer,
    cli_env: Settings,  # noqa: F811 - imported fixture
    smtp: SmtpSink,
) -> None:
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id = create_deposit(sender, [world.ft62])
    data = make_pdf([b"<< >>"], streams={4: b"x" * (3 * 1024 * 1024)})
    # Given clamd dies while the file streams in
    assert _upload_killing(sender, deposit_id, data, own_clamd) == 201
    # Then the file is kept, encrypted, with its scan pending, and the trail says so
    (file,) = reread(app, Deposit, deposit_id).files
    assert file.scan_status == ScanStatus.PENDING
    (deferred,) = audit_rows(app, "deposit:scan-deferred")
    assert json.loads(deferred.details)["deposit_id"] == deposit_id
    # When the sender sends it, it is held: a draft its recipients do not see
    response = publish(sender, deposit_id)
    assert response.status_code == 302
    assert "Analyse antivirus en attente" in sender.get(response.headers["Location"]).get_data(
        as_text=True
    )
    held = reread(app, Deposit, deposit_id)
    assert held.status == DepositStatus.DRAFT and held.held_for_scan_at is not None
    assert held.published_at is None
    assert recipient.get(f"/depots/{deposit_id}").status_code == 404
    assert smtp.messages == []
    assert audit_rows(app, "deposit:held-for-scan")
    # and it cannot be sent twice nor take more files
    assert upload(sender, deposit_id, "autre.pdf", PDF).status_code == 422
    # While clamd is still down, the job publishes nothing and exits 1 for the monitoring
    result = filr(["jobs", "antivirus"], code=1)
    assert "indisponible" in result.output
    assert reread(app, Deposit, deposit_id).status == DepositStatus.DRAFT
    # Once clamd is back, the job scans the stored file (read back decrypted) and publishes
    own_clamd.start()
    result = filr(["jobs", "antivirus"])
    assert "1 sains" in result.output and "1 dépôts transmis" in result.output
    published = reread(app, Deposit, deposit_id)
    assert published.status == DepositStatus.AVAILABLE and published.published_at is not None
    assert [f.scan_status for f in published.files] == [ScanStatus.CLEAN]
    (row,) = [
        r for r in audit_rows(app, "deposit:published") if json.loads(r.details).get("after_scan")
    ]
    assert row.actor_id == world.agent62.id
    # and the recipient is told and can open it
    assert smtp.messages
    assert recipient.get(f"/depots/{deposit_id}").status_code == 200
    # A second run has nothing left to do
    assert "0 fichiers en attente" in filr(["jobs", "antivirus"]).output


def test_a_file_found_infected_by_the_job_refuses_its_whole_deposit(
    app: Flask,
    world: World,
    client_for: ClientFor,
    own_clamd: ClamdServer,
    cli_env: Settings,  # noqa: F811 - imported fixture
    smtp: SmtpSink,
) -> None:
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    deposit_id = create_deposit(sender, [world.ft62])
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201
    # Given clamd is down when the EICAR file arrives: it waits, unscanned
    own_clamd.stop()
    assert upload(sender, deposit_id, "notes.txt", EICAR).status_code == 201
    assert publish(sender, deposit_id).status_code == 302
    assert reread(app, Deposit, deposit_id).held_for_scan_at is not None
    # When clamd is back and the job runs
    own_clamd.start()
    result = filr(["jobs", "antivirus"])
    assert "1 refusés" in result.output and "0 dépôts transmis" in result.output
    # Then the deposit is destroyed, never shown to its recipient, audited and alerted
    deposit = reread(app, Deposit, deposit_id)
    assert deposit.status == DepositStatus.DESTROYED and deposit.published_at is None
    with app.app_context():
        assert list(services().store.inner.list("deposits/")) == []
    assert recipient.get(f"/depots/{deposit_id}").status_code == 404
    (infected,) = audit_rows(app, "deposit:file-infected")
    assert json.loads(infected.details)["signature"] == EICAR_SIGNATURE
    assert json.loads(infected.details)["rescan"] is True
    with app.app_context():
        kinds = db.session.execute(sa.select(SecurityAlert.kind)).scalars().all()
    assert AlertKind.MALWARE_DETECTED in kinds


def test_the_explicit_bypass_lets_files_through_unscanned_and_audits_each(
    app: Flask,
    make_app: Callable[..., Flask],
    login_as: Callable[..., FlaskClient],
    world: World,
    own_clamd: ClamdServer,
) -> None:
    # Given a deployment that set FILR_ANTIVIRUS_BYPASS, and clamd down
    bypassing = make_app(antivirus_bypass=True)
    sender = login_as(world.agent62, on=https(bypassing.test_client()))
    deposit_id = create_deposit(sender, [world.ft62])
    own_clamd.stop()
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201
    assert publish(sender, deposit_id).status_code == 302
    deposit = reread(app, Deposit, deposit_id)
    assert deposit.status == DepositStatus.AVAILABLE
    assert [f.scan_status for f in deposit.files] == [ScanStatus.BYPASSED]
    (bypassed,) = audit_rows(app, "deposit:scan-bypassed")
    assert bypassed.outcome == "failure"


def test_without_the_bypass_nothing_unscanned_is_ever_published(
    app: Flask, world: World, client_for: ClientFor, own_clamd: ClamdServer
) -> None:
    sender = client_for(world.agent62)
    deposit_id = create_deposit(sender, [world.ft62])
    own_clamd.stop()
    assert upload(sender, deposit_id, "fiche.pdf", PDF).status_code == 201
    assert publish(sender, deposit_id).status_code == 302
    with app.app_context():
        published = db.session.execute(
            sa.select(sa.func.count()).select_from(DepositFile).join(Deposit)
            .where(Deposit.published_at.is_not(None), DepositFile.scan_status != ScanStatus.CLEAN)
        ).scalar_one()  # fmt: skip
    assert published == 0


def test_the_signatures_job_alerts_on_a_database_without_date(
    app: Flask,
    cli_env: Settings,  # noqa: F811 - imported fixture
) -> None:
    # The test clamd runs on local signatures only: nothing proves they are current.
    result = filr(["jobs", "antivirus-signatures"], code=1)
    assert "sans date" in result.output
    assert [r.details for r in audit_rows(app, "antivirus:signatures-stale")]


def test_signatures_older_than_two_days_or_undated_raise_an_alert(app: Flask) -> None:
    now = utcnow()
    fresh = f"ClamAV 1.4.6/27123/{(now - timedelta(hours=20)):%a %b %d %H:%M:%S %Y}"
    stale = f"ClamAV 1.4.6/27000/{(now - timedelta(days=3)):%a %b %d %H:%M:%S %Y}"
    with app.app_context():
        svc, ctx = services(), audit.Context()
        assert check_signatures(db.session, svc, ctx, fresh, now=now) is False
        assert db.session.execute(sa.select(SecurityAlert)).first() is None
        assert check_signatures(db.session, svc, ctx, stale, now=now) is True
        assert check_signatures(db.session, svc, ctx, "ClamAV 1.4.6", now=now) is True
        (alert,) = db.session.execute(sa.select(SecurityAlert)).scalars()
        assert alert.kind == AlertKind.ANTIVIRUS_STALE and alert.occurrences == 2
    (first, second) = audit_rows(app, "antivirus:signatures-stale")
    assert json.loads(first.details)["age_hours"] >= 72
    assert json.loads(second.details)["age_hours"] is None


def test_the_bypass_never_lets_through_a_file_clamd_refused_to_scan_while_up(
    make_app: Callable[..., Flask], login_as: Callable[..., FlaskClient], world: World,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Given the bypass on, and a clamd that is up but takes streams of 1 MiB at most
    root = tmp_path / "small-clamd"
    root.mkdir()
    small = ClamdServer(root, stream_max="1M").start()
    try:
        bypassing = make_app(
            antivirus_bypass=True, clamd_url=small.url, antivirus_inline_max_bytes=64 * 2**20
        )
        sender = login_as(world.agent62, on=https(bypassing.test_client()))
        deposit_id = create_deposit(sender, [world.ft62])
        # When a file of 2 MiB is uploaded: clamd ends the stream without a verdict
        big = make_pdf(padding=2 * 2**20)
        assert upload(sender, deposit_id, "gros.pdf", big).status_code == 201
        # Then it is not let through: its scan is pending, the deposit waits when sent
        deposit = reread(bypassing, Deposit, deposit_id)
        assert [f.scan_status for f in deposit.files] == [ScanStatus.PENDING]
        assert audit_rows(bypassing, "deposit:scan-bypassed") == []
        assert publish(sender, deposit_id).status_code == 302
        assert reread(bypassing, Deposit, deposit_id).status == DepositStatus.DRAFT
    finally:
        small.close()


def test_a_file_clamd_cannot_scan_does_not_block_the_others(
    make_app: Callable[..., Flask], login_as: Callable[..., FlaskClient], world: World,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Given a clamd that is up but takes streams of 1 MiB at most, and two files pending:
    # a big one first, then a small one
    root = tmp_path / "small-clamd"
    root.mkdir()
    small = ClamdServer(root, stream_max="1M").start()
    try:
        app = make_app(clamd_url=small.url, antivirus_inline_max_bytes=1024)
        sender = login_as(world.agent62, on=https(app.test_client()))
        big_id = create_deposit(sender, [world.ft62])
        assert upload(sender, big_id, "gros.pdf", make_pdf(padding=2 * 2**20)).status_code == 201
        small_id = create_deposit(sender, [world.ft62])
        assert upload(sender, small_id, "fiche.pdf", PDF).status_code == 201
        # When the job runs
        from portal.deposits.rescan import rescan_pending

        with app.app_context():
            report = rescan_pending(db.session, services(), audit.Context())
        # Then the big one stays pending, the small one is scanned all the same
        assert (report.unavailable, report.unscannable, report.clean) == (None, 1, 1)
        assert [f.scan_status for f in reread(app, Deposit, big_id).files] == [ScanStatus.PENDING]
        assert [f.scan_status for f in reread(app, Deposit, small_id).files] == [ScanStatus.CLEAN]
    finally:
        small.close()


def test_a_job_run_that_exits_non_zero_is_recorded_as_a_failure(
    app: Flask,
    own_clamd: ClamdServer,
    cli_env: Settings,  # noqa: F811 - imported fixture
) -> None:
    # Given clamd down: the antivirus job exits 1
    own_clamd.stop()
    filr(["jobs", "antivirus"], code=1)
    # Then its job:run row says so (no success for the monitoring or the security page)
    (row,) = audit_rows(app, "job:run")
    assert row.outcome == "failure" and row.target_id == "antivirus"


def test_a_file_clamd_keeps_failing_on_raises_one_alert_at_the_settings_count(
    make_app: Callable[..., Flask], login_as: Callable[..., FlaskClient], world: World,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Given a clamd that is up but takes streams of 1 MiB at most, a limit of 3 failed
    # attempts, and a file of 2 MiB pending
    root = tmp_path / "small-clamd"
    root.mkdir()
    small = ClamdServer(root, stream_max="1M").start()
    try:
        app = make_app(
            clamd_url=small.url, antivirus_inline_max_bytes=1024, antivirus_max_scan_attempts=3
        )
        sender = login_as(world.agent62, on=https(app.test_client()))
        deposit_id = create_deposit(sender, [world.ft62])
        assert (
            upload(sender, deposit_id, "gros.pdf", make_pdf(padding=2 * 2**20)).status_code == 201
        )
        from portal.deposits.rescan import rescan_pending

        def run() -> tuple[int, list[str]]:
            with app.app_context():
                report = rescan_pending(db.session, services(), audit.Context())
                alerts = db.session.execute(
                    sa.select(SecurityAlert.kind, SecurityAlert.subject_id)
                ).all()
                db.session.commit()
            kinds = [k for k, _ in alerts if k == AlertKind.ANTIVIRUS_SCAN_FAILING]
            return report.alerted, kinds

        # When the job fails on it twice: counted, no alert yet
        assert run() == (0, []) and run() == (0, [])
        [file] = reread(app, Deposit, deposit_id).files
        assert (file.scan_status, file.scan_attempts) == (ScanStatus.PENDING, 2)
        # Then the third failure raises the alert, audited without the file's name
        assert run() == (1, [AlertKind.ANTIVIRUS_SCAN_FAILING])
        [row] = audit_rows(app, "deposit:scan-failing")
        assert row.target_id == file.id and json.loads(row.details)["attempts"] == 3
        assert "gros.pdf" not in row.details
        # And later failures neither raise another nor stop the tries
        assert run() == (0, [AlertKind.ANTIVIRUS_SCAN_FAILING])
        [file] = reread(app, Deposit, deposit_id).files
        assert (file.scan_status, file.scan_attempts) == (ScanStatus.PENDING, 4)
    finally:
        small.close()
