"""Backup and restore drill of N deposits on PostgreSQL and two real SeaweedFS (production and
backup site): the incremental object copy against a raw boto3 copy between the same two
services, in the same run, and the drill's RTO.

    python benchmarks/backup.py                              # 10,000 deposits, 5 GiB (long)
    python benchmarks/backup.py --deposits 1000 --size 256M  # quick run

Deposits (one file each, random content, sizes around size/deposits) are written through the
portal's EncryptedStore into the production SeaweedFS, with their rows in PostgreSQL. Then:
  * raw copy: boto3 `get_object` + `put_object` of every production object into the backup
    bucket (under `raw/`), with the same number of threads as the backup (8); run before and
    after the backup, the faster of the two is the baseline;
  * backup: `portal.backup.services.run_backup` (objects copied with their SHA-256, the dump
    by `pg_dump -Fc`, encrypted, the manifest sealed); its copy phase is compared with the raw
    copy (target >= 0.8x), the dump's time printed apart;
  * a second backup (nothing new: the incremental cost);
  * the drill (`portal.backup.drill.run_drill`): restore into a scratch database and a local
    scratch store, purge, chain, every file decrypted up to --sample, isolation; RTO printed.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this directory comes first on the path, and its audit.py would hide the
# audit package: the checkout's root takes its place.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

MIB = 1024 * 1024
TARGET = 0.8
WORKERS = 8


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deposits", type=int, default=10_000)
    parser.add_argument("--size", type=parse_size, default=parse_size("5G"))
    parser.add_argument("--sample", type=parse_size, default=parse_size("1G"))
    args = parser.parse_args()
    os.environ.setdefault("FILR_ALLOW_SUPERUSER", "1")
    work = Path(tempfile.mkdtemp(prefix="filr-bench-backup-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gigabytes on a shared machine


def run(args: argparse.Namespace, work: Path) -> None:
    """The scenario, in *work* (removed afterwards by `main`)."""
    import audit
    from portal import create_app
    from portal.accounts.models import Role
    from portal.backup.drill import run_drill
    from portal.backup.services import run_backup
    from portal.backup.site import load_backup_key, open_backup_site
    from portal.container import services
    from portal.db import db, utcnow
    from portal.deposits.models import Deposit, DepositFile, DepositStatus
    from portal.migrate import upgrade
    from portal.orgs.models import OrgKind
    from portal.settings import Settings
    from storage import MasterKey
    from tests.factories import Factory
    from tests.support.seaweedfs import running_seaweedfs
    from tests.support.services import postgres_database

    with (
        running_seaweedfs(work / "prod", bucket="filr-prod") as prod,
        running_seaweedfs(work / "site", bucket="filr-backup") as site_s3,
        postgres_database("filr_bench_backup") as url,
    ):
        upgrade(url)
        key_file = work / "backup.key"
        key_file.write_bytes(base64.b64encode(secrets.token_bytes(32)) + b"\n")
        settings = Settings(
            secret_key="bench-secret-key-" + "x" * 40,
            database_url=url,
            data_dir=work / "data",
            storage_url=f"s3://{prod.bucket}/objects",
            master_key_file=work / "data" / "secrets" / "master.key",
            s3_endpoint_url=prod.endpoint_url,
            s3_region=prod.region,
            s3_access_key=prod.access_key,
            s3_secret_key=prod.secret_key,
            backup_url=f"s3://{site_s3.bucket}/site",
            backup_s3_endpoint_url=site_s3.endpoint_url,
            backup_s3_region=site_s3.region,
            backup_s3_access_key=site_s3.access_key,
            backup_s3_secret_key=site_s3.secret_key,
            backup_key_file=key_file,
            allow_superuser=True,
            argon2_time_cost=1,
            argon2_memory_kib=8,
        )
        app = create_app(settings)
        factory = Factory(app)
        senders = {}
        for code in ("62", "59", "2A", "971"):
            org = factory.org(OrgKind.DEPARTEMENT, code, name=f"CD {code}")
            senders[code] = (factory.user(org, (Role.AGENT,)).id, org)

        # --- generate the deposits ------------------------------------------------------
        each = max(1, args.size // args.deposits)
        pool = os.urandom(16 * MIB)
        started = time.monotonic()
        with app.app_context():
            store = services().store
            codes = list(senders)
            for code in codes:
                store.keyring.ensure(code)

            def make(i: int) -> tuple[str, str, str, int, str]:
                code = codes[i % len(codes)]
                size = max(1, int(each * (0.5 + (i % 11) / 10)))
                start = (i * 7919) % (len(pool) - size) if size < len(pool) else 0
                content = pool[start : start + size]
                deposit_id = secrets.token_hex(16)
                file_key = f"deposits/{deposit_id}/{secrets.token_hex(16)}"
                stored = store.put(file_key, [content], departement=code)
                return deposit_id, code, file_key, stored.size, stored.sha256

            now = utcnow()
            with ThreadPoolExecutor(4) as threads:
                made = list(threads.map(make, range(args.deposits)))
            for batch in range(0, len(made), 1000):
                for deposit_id, code, file_key, size, digest in made[batch : batch + 1000]:
                    sender, org = senders[code]
                    db.session.add(
                        Deposit(
                            id=deposit_id, departement_code=code, category="document",
                            title=f"Dépôt {deposit_id[:6]}", title_sort=f"depot {deposit_id[:6]}",
                            sender_id=sender, sender_org_id=org, status=DepositStatus.AVAILABLE,
                            published_at=now, expires_at=now + timedelta(days=90),
                        )
                    )  # fmt: skip
                    db.session.add(
                        DepositFile(
                            deposit_id=deposit_id, object_key=file_key, filename="fichier.pdf",
                            content_type="application/pdf", size=size, sha256=digest,
                        )
                    )  # fmt: skip
                db.session.commit()
        total = sum(m[3] for m in made)
        print(
            f"{args.deposits} dépôts, {total / MIB:.0f} Mio générés en "
            f"{time.monotonic() - started:.1f} s"
        )

        # --- raw boto3 copy, the baseline ------------------------------------------------
        source, target = prod.client(), site_s3.client()

        def raw_copy(run: int) -> float:
            keys = [
                item["Key"]
                for page in source.get_paginator("list_objects_v2").paginate(
                    Bucket=prod.bucket, Prefix="objects/"
                )
                for item in page.get("Contents", [])
            ]

            def one(name: str) -> None:
                body = source.get_object(Bucket=prod.bucket, Key=name)["Body"].read()
                target.put_object(Bucket=site_s3.bucket, Key=f"raw{run}/{name}", Body=body)

            began = time.monotonic()
            with ThreadPoolExecutor(WORKERS) as threads:
                list(threads.map(one, keys))
            return time.monotonic() - began

        raw_before = raw_copy(1)
        print(f"copie brute boto3 (1) : {raw_before:.1f} s, {total / MIB / raw_before:.0f} Mio/s")

        # --- the backup ------------------------------------------------------------------
        site = open_backup_site(settings)
        key = load_backup_key(settings)
        with app.app_context():
            inner = services().store.inner
        report = run_backup(
            database_url=url, store=inner, site=site, key=key, retention_days=35, workers=WORKERS
        )
        print(
            f"sauvegarde : {report.objects_copied} objets copiés en {report.copy_seconds:.1f} s "
            f"({report.bytes_copied / MIB / report.copy_seconds:.0f} Mio/s), base "
            f"{report.dump_bytes / MIB:.1f} Mio (pg_dump, chiffrement, envoi : "
            f"{report.dump_seconds:.1f} s), total {report.seconds:.1f} s"
        )
        raw_after = raw_copy(2)
        print(f"copie brute boto3 (2) : {raw_after:.1f} s, {total / MIB / raw_after:.0f} Mio/s")
        baseline = min(raw_before, raw_after)
        ratio = baseline / report.copy_seconds
        print(
            f"copie incrémentale / copie brute : {ratio:.2f}x (cible >= {TARGET}x) "
            + ("OK" if ratio >= TARGET else "SOUS LA CIBLE")
        )
        again = run_backup(
            database_url=url, store=inner, site=site, key=key, retention_days=35, workers=WORKERS
        )
        print(
            f"deuxième sauvegarde (rien de nouveau) : {again.objects_copied} objets copiés, "
            f"{again.seconds:.1f} s"
        )

        # --- the drill -------------------------------------------------------------------
        drill = run_drill(
            settings,
            site=site,
            key=key,
            master_key=MasterKey.from_file(settings.master_key_file),
            ctx=audit.Context(user_agent="benchmark"),
            sample_bytes=args.sample,
        )
        for line in drill.lines():
            print(line)
        db.bound(app).engine.dispose()
        source.close()
        target.close()
    sys.exit(0 if drill.is_ok and ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
