"""The restore drill: the latest backup restored into a scratch database and a scratch store,
purged, its trail verified, files decrypted to their recorded SHA-256, isolation checked, RTO and
RPO measured; everything scratch removed afterwards, also when the drill is interrupted."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
import storage
from portal.backup.dump import (
    create_scratch_database,
    dialect_of,
    drop_database,
    leftover_databases,
)
from portal.backup.services import RestoreReport, latest_backup, restore_backup
from portal.backup.site import check_separate, production_options
from portal.db import make_engine, utcnow
from portal.settings import Settings
from storage.backup import BackupKey, backup_time

log = logging.getLogger("portal.backup")

SCRATCH_PREFIX = "filr_drill_"
DEFAULT_SAMPLE_BYTES = 1024**3


@dataclass
class DrillReport:
    """What the drill found; `is_ok` only when every check passed."""

    backup_id: str = ""
    rto_seconds: float = 0.0
    rpo_seconds: float = 0.0
    restore: RestoreReport | None = None
    chain_valid: bool = False
    chain_rows: int = 0
    files_total: int = 0
    files_checked: int = 0
    bytes_checked: int = 0
    keys_checked: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def is_ok(self) -> bool:
        """True when the restore finished and every check passed."""
        return self.restore is not None and not self.failures

    def lines(self) -> list[str]:
        """The report, in French, one fact a line."""
        restore = self.restore
        out = [
            f"Exercice de restauration de la sauvegarde {self.backup_id or '(aucune)'} : "
            + ("RÉUSSI" if self.is_ok else "ÉCHEC"),
            f"  RTO (durée de la restauration et des contrôles) : {self.rto_seconds:.1f} s",
            f"  RPO (âge des données restaurées) : {self.rpo_seconds / 3600:.1f} h",
        ]
        if restore is not None:
            out += [
                f"  objets restaurés : {restore.objects} ({restore.bytes_restored} octets)",
                f"  purge après restauration : {restore.deposits_expired} dépôts détruits, "
                f"{restore.files_destroyed} fichiers, {restore.orphans_removed} objets orphelins",
                "  journal d'audit : "
                + (f"chaîne intègre ({self.chain_rows} entrées)" if self.chain_valid else "ROMPU"),
                f"  fichiers déchiffrés : {self.files_checked} sur {self.files_total} "
                f"({self.bytes_checked} octets), empreintes SHA-256 conformes",
                "  clés de données vérifiées sous la clé de leur département : "
                f"{self.keys_checked}",
            ]
        out += [f"  ÉCHEC : {failure}" for failure in self.failures]
        return out


def _scratch_store_url(settings: Settings, scratch_dir: Path, given: str | None) -> str:
    url = given or settings.backup_drill_storage_url
    if url:
        check_separate(settings, url, settings.s3_endpoint_url, "Le stockage de l'exercice")
        return url
    return f"file://{scratch_dir / 'objects'}"


def remove_leftovers(settings: Settings) -> int:
    """Drop scratch databases and directories of earlier drills killed without cleaning up."""
    removed = 0
    if dialect_of(settings.migration_database_url) == "postgresql":
        for name in leftover_databases(settings.migration_database_url, SCRATCH_PREFIX):
            drop_database(settings.migration_database_url, name)
            removed += 1
    drills = settings.data_dir / "drills"
    if drills.is_dir():
        for path in drills.iterdir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _empty_store(store: storage.ObjectStore) -> None:
    for key in list(store.list()):
        store.delete(key)


def run_drill(
    settings: Settings,
    *,
    site: storage.ObjectStore,
    key: BackupKey,
    master_key: storage.MasterKey,
    ctx: audit.Context,
    backup_id: str | None = None,
    sample_bytes: int = DEFAULT_SAMPLE_BYTES,
    scratch_storage_url: str | None = None,
    stop: threading.Event | None = None,
) -> DrillReport:
    """Restore a backup into scratch places, check it, clean up; never raises for a failure
    of the backup itself (the report says it), only for an interruption."""
    report = DrillReport()
    started_at = utcnow()
    started = time.monotonic()
    remove_leftovers(settings)
    (settings.data_dir / "drills").mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch_dir = Path(tempfile.mkdtemp(prefix="drill-", dir=settings.data_dir / "drills"))
    owner_url = settings.migration_database_url
    scratch_db: str | None = None
    target: storage.ObjectStore | None = None
    try:
        report.backup_id = backup_id or latest_backup(site)
        report.rpo_seconds = (started_at - backup_time(report.backup_id)).total_seconds()
        if dialect_of(owner_url) == "postgresql":
            scratch_db = SCRATCH_PREFIX + secrets.token_hex(6)
            database_url = create_scratch_database(owner_url, scratch_db)
        else:
            database_url = f"sqlite:///{scratch_dir / 'filr.db'}"
        store_url = _scratch_store_url(settings, scratch_dir, scratch_storage_url)
        target = storage.open_store(store_url, **production_options(settings, store_url))
        try:
            report.restore = restore_backup(
                site=site,
                key=key,
                backup_id=report.backup_id,
                database_url=database_url,
                target=target,
                master_key=master_key,
                ctx=ctx,
                work_dir=scratch_dir,
                stop=stop,
            )
            report.rpo_seconds = (started_at - report.restore.dumped_at).total_seconds()
        except (storage.IntegrityError, storage.StorageError) as e:
            report.failures.append(f"restauration impossible : {e}")
        except Exception as e:
            from portal.backup.services import RestoreRefused

            if isinstance(e, RestoreRefused):
                report.failures.append(f"restauration refusée : {e}")
            else:
                report.failures.append(f"restauration impossible : {type(e).__name__}: {e}")
        if report.restore is not None:
            _check(report, database_url, target, master_key, sample_bytes)
    finally:
        if target is not None:
            try:
                _empty_store(target)
            except storage.StorageError:
                log.warning("drill: the scratch store could not be emptied")
        if scratch_db is not None:
            drop_database(owner_url, scratch_db)
        shutil.rmtree(scratch_dir, ignore_errors=True)
    report.rto_seconds = time.monotonic() - started
    return report


def _check(
    report: DrillReport,
    database_url: str,
    target: storage.ObjectStore,
    master_key: storage.MasterKey,
    sample_bytes: int,
) -> None:
    from portal.deposits.models import Deposit, DepositFile
    from storage.sql import storage_data_key

    engine = make_engine(database_url)
    try:
        keystore = storage.SqlKeyStore(engine)
        store = storage.EncryptedStore(target, storage.Keyring(master_key, keystore))
        with Session(engine) as session:
            chain = audit.verify_chain(session)
            session.rollback()
            report.chain_valid, report.chain_rows = chain.is_valid, chain.checked
            if not chain.is_valid:
                report.failures.append(
                    f"chaîne du journal rompue à l'entrée n° {chain.first_broken_seq}"
                )
            rows = session.execute(
                sa.select(
                    storage_data_key.c.object_key,
                    storage_data_key.c.departement,
                    storage_data_key.c.size,
                    storage_data_key.c.sha256,
                    Deposit.departement_code,
                )
                .select_from(storage_data_key)
                .outerjoin(DepositFile, DepositFile.object_key == storage_data_key.c.object_key)
                .outerjoin(Deposit, Deposit.id == DepositFile.deposit_id)
                .where(storage_data_key.c.wrapped_key.is_not(None))
                .order_by(storage_data_key.c.object_key)
            ).all()
            session.rollback()
        report.files_total = len(rows)
        # Isolation: each live file's data key belongs to its deposit's département and
        # unwraps under that département's key (the département is bound into the wrapping).
        misplaced = [r for r in rows if r[4] is not None and r[1] != r[4]]
        if misplaced:
            report.failures.append(
                f"{len(misplaced)} fichier(s) chiffré(s) sous la clé d'un autre département"
            )
        unwrap_failures = 0
        for object_key, *_rest in rows:
            record = keystore.get_data_key(object_key)
            try:
                assert record is not None  # noqa: S101 - listed live just above
                store.keyring.unwrap_data_key(record)
            except (storage.IntegrityError, storage.KeyringError, AssertionError):
                unwrap_failures += 1
            report.keys_checked += 1
        if unwrap_failures:
            report.failures.append(
                f"{unwrap_failures} clé(s) de données ne s'ouvrent pas sous la clé de leur "
                "département"
            )
        stray = [k for k in target.list() if keystore.get_data_key(k) is None]
        if stray:
            report.failures.append(f"{len(stray)} objet(s) restauré(s) sans clé de données")
        # Every file when they fit in the budget, else a random sample of it.
        sample = list(rows)
        if sum(r[2] for r in rows) > sample_bytes:
            random.shuffle(sample)  # a sample, not a secret
            chosen, total = [], 0
            for row in sample:
                if total + row[2] <= sample_bytes:
                    chosen.append(row)
                    total += row[2]
            sample = chosen
        bad = 0
        for object_key, _dep, _size, recorded, _deposit_dep in sample:
            digest = hashlib.sha256()
            size = 0
            try:
                for chunk in store.open(object_key):
                    digest.update(chunk)
                    size += len(chunk)
            except (storage.StorageError, storage.IntegrityError):
                bad += 1
                continue
            if not hmac.compare_digest(digest.hexdigest(), recorded or ""):
                bad += 1
                continue
            report.files_checked += 1
            report.bytes_checked += size
        if bad:
            report.failures.append(f"{bad} fichier(s) ne se déchiffrent pas en leur SHA-256")
    finally:
        engine.dispose()
