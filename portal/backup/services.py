"""The nightly backup, its retention, and the restore that runs the purge before it ends.

No Flask here: callers pass the settings, the production object store (ciphertexts), the
backup site and the backup key. See docs/operations.md ("Sauvegardes").
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

import audit
import storage
from audit import AuditAction, Outcome
from portal.backup.dump import dialect_of, dump_chunks, is_empty_database, restore_chunks
from portal.backup.guard import clear_guard, set_guard, unfinished_restore
from portal.db import make_engine, utcnow
from storage.backup import (
    OBJECTS,
    BackupKey,
    BackupTampered,
    Manifest,
    StoredCopy,
    backup_time,
    copy_objects,
    decrypt_dump,
    fetch_dump,
    list_backup_dirs,
    list_backups,
    new_backup_id,
    read_manifest,
    write_dump,
    write_manifest,
)

log = logging.getLogger("portal.backup")

COPY_WORKERS = 8


class RestoreRefused(Exception):
    """A restore that must not go on, or could not finish (message in French)."""


@dataclass
class BackupReport:
    """What one backup run did."""

    backup_id: str = ""
    objects: int = 0
    objects_copied: int = 0
    bytes_copied: int = 0
    dump_bytes: int = 0
    backups_deleted: int = 0
    objects_deleted: int = 0
    seconds: float = 0.0
    copy_seconds: float = 0.0  # the two passes of the object copy
    dump_seconds: float = 0.0  # dump, encryption and upload of the database


def _new_pairs(keys: Iterator[str], known: set[str]) -> Iterator[tuple[str, str]]:
    for key in keys:
        if key not in known:
            known.add(key)
            yield key, OBJECTS + key


def run_backup(
    *,
    database_url: str,
    store: storage.ObjectStore,
    site: storage.ObjectStore,
    key: BackupKey,
    retention_days: int,
    now: datetime | None = None,
    workers: int = COPY_WORKERS,
) -> BackupReport:
    """Copy new objects, dump and encrypt the database, seal the manifest, apply retention.

    Objects are copied before the dump and the ones that appeared meanwhile after it, so that
    every object the dump knows of is on the site when the manifest is written. The manifest
    names the objects that existed before the dump and those copied after it; an object
    destroyed in production since an earlier backup leaves the manifests from then on, and the
    site once retention has deleted the last backup that names it.
    """
    started = time.monotonic()
    now = now or utcnow()
    report = BackupReport(backup_id=new_backup_id(now))
    # What the site already holds, with digests from the latest manifest that names them.
    on_site = {name[len(OBJECTS) :] for name in site.list(OBJECTS)}
    known: dict[str, StoredCopy] = {}
    backups = list_backups(site)
    if backups:
        try:
            previous = read_manifest(site, key, backups[-1])
            known = {k: v for k, v in previous.objects.items() if k in on_site}
        except (BackupTampered, storage.StorageError):
            log.warning("latest backup manifest unreadable: every object is copied again")
    # Objects present before the dump: the dump may name any of them, even if one is destroyed
    # before the manifest is written (its copy stays, consistent with the dump).
    listed = set(store.list())
    known = {k: v for k, v in known.items() if k in listed}
    seen = set(known)
    copied: dict[str, StoredCopy] = {}
    mark = time.monotonic()
    first = copy_objects(store, site, _new_pairs(iter(sorted(listed)), seen), workers=workers)
    copied.update(first.copied)
    report.copy_seconds, mark = time.monotonic() - mark, time.monotonic()
    dumped_at = utcnow()
    dump = write_dump(
        site, report.backup_id, dialect_of(database_url), dump_chunks(database_url), dumped_at
    )
    report.dump_seconds, mark = time.monotonic() - mark, time.monotonic()
    second = copy_objects(store, site, _new_pairs(store.list(), seen), workers=workers)
    copied.update(second.copied)
    report.copy_seconds += time.monotonic() - mark
    objects = {**known, **copied}
    write_manifest(
        site,
        key,
        Manifest(
            backup_id=report.backup_id,
            created_at=now,
            dump=dump,
            objects=objects,
            source=repr(store),
        ),
    )
    report.objects = len(objects)
    report.objects_copied = len(copied)
    report.bytes_copied = first.bytes_copied + second.bytes_copied
    report.dump_bytes = dump.stored_size
    report.backups_deleted, report.objects_deleted = apply_retention(
        site, key, now=now, retention_days=retention_days, keep=report.backup_id
    )
    report.seconds = time.monotonic() - started
    return report


def apply_retention(
    site: storage.ObjectStore, key: BackupKey, *, now: datetime, retention_days: int, keep: str
) -> tuple[int, int]:
    """Delete backups older than the retention, then objects no kept manifest names.

    The newest complete backup (*keep*) is never deleted. Unfinished backups (no manifest)
    older than a day are removed too. Returns (backups deleted, objects deleted).
    """
    limit = now - timedelta(days=retention_days)
    deleted = 0
    for backup_id, names in list_backup_dirs(site).items():
        try:
            started = backup_time(backup_id)
        except storage.InvalidConfiguration:
            continue  # not ours
        complete = any(n.endswith("/manifest") for n in names)
        too_old = started < limit or (not complete and started < now - timedelta(days=1))
        if backup_id == keep or not too_old:
            continue
        # The manifest first: a backup half-deleted is an unfinished one, never a damaged one.
        for name in sorted(names, key=lambda n: not n.endswith("/manifest")):
            site.delete(name)
        deleted += complete
    referenced: set[str] = set()
    for backup_id in list_backups(site):
        try:
            referenced.update(read_manifest(site, key, backup_id).objects)
        except BackupTampered as e:
            # Nothing is deleted while one kept backup cannot be read: the job fails, loudly.
            raise BackupTampered(f"sauvegarde {backup_id} : {e}") from e
    removed = 0
    for name in list(site.list(OBJECTS)):
        if name[len(OBJECTS) :] not in referenced:
            site.delete(name)
            removed += 1
    return deleted, removed


def latest_backup(site: storage.ObjectStore) -> str:
    """The id of the newest complete backup."""
    backups = list_backups(site)
    if not backups:
        raise RestoreRefused("aucune sauvegarde complète sur le site de sauvegarde")
    return backups[-1]


@dataclass
class RestoreReport:
    """What one restore did, and the state the restored portal is in."""

    backup_id: str
    dumped_at: datetime
    objects: int = 0
    bytes_restored: int = 0
    deposits_expired: int = 0
    files_destroyed: int = 0
    orphans_removed: int = 0
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)


def _is_empty_store(store: storage.ObjectStore) -> bool:
    return next(iter(store.list()), None) is None


def restore_backup(
    *,
    site: storage.ObjectStore,
    key: BackupKey,
    backup_id: str,
    database_url: str,
    target: storage.ObjectStore,
    master_key: storage.MasterKey,
    ctx: audit.Context,
    work_dir: Path | None = None,
    workers: int = COPY_WORKERS,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] = lambda _step: None,
) -> RestoreReport:
    """Restore *backup_id* into the empty database at *database_url* and the empty *target*.

    Checks the manifest, then the whole dump, before writing anything; copies each object
    back checking its digest; migrates the restored schema to this release; then runs the
    purge, and refuses to finish (RestoreRefused) while anything past its expiry is readable.
    """
    started = time.monotonic()
    manifest = read_manifest(site, key, backup_id)
    report = RestoreReport(backup_id=backup_id, dumped_at=manifest.dump.dumped_at)
    if dialect_of(database_url) != manifest.dump.dialect:
        raise RestoreRefused(
            f"la sauvegarde est une base {manifest.dump.dialect}, la cible une base "
            f"{dialect_of(database_url)}"
        )
    if not is_empty_database(database_url):
        raise RestoreRefused("la base de données cible n'est pas vide")
    if not _is_empty_store(target):
        raise RestoreRefused("le stockage cible n'est pas vide")
    scratch = Path(tempfile.mkdtemp(prefix="filr-restore-", dir=work_dir))
    try:
        encrypted = scratch / "database.enc"  # ciphertext only: checked, then decrypted as read
        fetch_dump(site, manifest, encrypted)
        progress("dump-checked")
        restore_chunks(database_url, decrypt_dump(manifest, encrypted))
        progress("database-restored")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    from portal.migrate import upgrade

    upgrade(database_url)  # a backup of an earlier release gets this release's schema
    # From here until the purge succeeds, the portal refuses to serve this database.
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            set_guard(session, backup_id)
            session.commit()
    finally:
        engine.dispose()
    copied = copy_objects(
        site,
        target,
        ((OBJECTS + k, k) for k in manifest.objects),
        workers=workers,
        expected={OBJECTS + k: v for k, v in manifest.objects.items()},
        stop=stop,
    )
    report.objects = len(copied.copied)
    report.bytes_restored = copied.bytes_copied
    progress("objects-restored")
    _purge_restored(database_url, target, master_key, ctx, report)
    progress("purged")
    report.seconds = time.monotonic() - started
    return report


def finish_restore(
    *,
    database_url: str,
    target: storage.ObjectStore,
    master_key: storage.MasterKey,
    ctx: audit.Context,
) -> RestoreReport:
    """Run again the purge of a restore that could not finish (the store was down...)."""
    engine = make_engine(database_url)
    try:
        backup_id = unfinished_restore(engine)
    finally:
        engine.dispose()
    if backup_id is None:
        raise RestoreRefused("aucune restauration inachevée dans cette base")
    report = RestoreReport(backup_id=backup_id, dumped_at=backup_time(backup_id))
    started = time.monotonic()
    _purge_restored(database_url, target, master_key, ctx, report)
    report.seconds = time.monotonic() - started
    return report


def _purge_restored(
    database_url: str,
    target: storage.ObjectStore,
    master_key: storage.MasterKey,
    ctx: audit.Context,
    report: RestoreReport,
) -> None:
    """Run the purge on the restored portal and prove nothing past its expiry is readable."""
    from portal.deposits.models import Deposit, DepositFile, DepositStatus
    from portal.deposits.purge import cleanup_orphans, finish_destructions, purge_expired_deposits
    from storage.sql import storage_data_key

    engine = make_engine(database_url)
    try:
        store = storage.EncryptedStore(
            target, storage.Keyring(master_key, storage.SqlKeyStore(engine))
        )
        with Session(engine, expire_on_commit=False) as session:
            try:
                finish_destructions(session, store)
                purge = purge_expired_deposits(session, store, ctx=ctx)
                orphans = cleanup_orphans(session, store, older_than=timedelta(0), ctx=ctx)
                # Ciphertexts whose key was already shredded in the dump (destroyed just
                # before it): unreadable, and not the portal's any more.
                for object_key in list(store.orphans()):
                    target.delete(object_key)
                    orphans += 1
            except Exception as e:
                raise RestoreRefused(
                    f"la purge a échoué après la restauration ({type(e).__name__}) : "
                    "n'ouvrez pas le portail"
                ) from e
            report.deposits_expired = purge.expired + purge.withdrawn + purge.abandoned_drafts
            report.files_destroyed = purge.files_destroyed
            report.orphans_removed = orphans
            now = utcnow()
            overdue = session.execute(
                sa.select(sa.func.count())
                .select_from(Deposit)
                .where(Deposit.status != DepositStatus.DESTROYED, Deposit.expires_at <= now)
            ).scalar_one()
            live_keys = session.execute(
                sa.select(sa.func.count())
                .select_from(DepositFile)
                .join(storage_data_key, storage_data_key.c.object_key == DepositFile.object_key)
                .where(
                    DepositFile.destroyed_at.is_not(None),
                    storage_data_key.c.wrapped_key.is_not(None),
                )
            ).scalar_one()
            if overdue or live_keys:
                raise RestoreRefused(
                    f"après la purge, {overdue} dépôt(s) échu(s) et {live_keys} clé(s) de "
                    "fichiers détruits restent lisibles : n'ouvrez pas le portail"
                )
            audit.record(
                session,
                AuditAction.BACKUP_RESTORED,
                context=ctx,
                outcome=Outcome.SUCCESS,
                details={
                    "backup_id": report.backup_id,
                    "dumped_at": report.dumped_at.isoformat(),
                    "objects": report.objects,
                    "deposits_expired": report.deposits_expired,
                    "files_destroyed": report.files_destroyed,
                    "orphans": orphans,
                },
            )
            clear_guard(session)
            session.commit()
    finally:
        engine.dispose()
