"""Database dumps: PostgreSQL through the real `pg_dump -Fc` / `pg_restore`, SQLite through its
online backup API. Plaintext never touches the disk here: the dump streams from `pg_dump` into
the encryptor, and back from the decryptor into `pg_restore`; SQLite's copy stays in memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import sqlalchemy as sa

CHUNK = 1 << 20


class DumpError(Exception):
    """The database could not be dumped or restored (message in French, for the operator)."""


def dialect_of(url: str) -> str:
    """`postgresql` or `sqlite`."""
    name = sa.engine.make_url(url).get_backend_name()
    if name not in ("postgresql", "sqlite"):
        raise DumpError(f"base de données non prise en charge : {name}")
    return name


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """The `--dbname` conninfo of a SQLAlchemy URL, and the environment carrying its password.

    The password goes through PGPASSWORD, never on a command line that `ps` shows.
    """
    parsed = sa.engine.make_url(url)
    words = []
    for name, value in (
        ("host", parsed.host),
        ("port", parsed.port),
        ("dbname", parsed.database),
        ("user", parsed.username),
    ):
        if value is not None:
            words.append(f"{name}='{_quoted(str(value))}'")
    for option, setting in parsed.query.items():
        if isinstance(setting, str):
            words.append(f"{option}='{_quoted(setting)}'")
    env = {**os.environ}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return ["--dbname", " ".join(words)], env


def _quoted(value: str) -> str:
    """A value for a libpq conninfo string between single quotes."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DumpError(f"`{name}` est introuvable (paquet postgresql-client)")
    return path


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL."""
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise DumpError("base SQLite sans fichier")
    return Path(database)


def dump_chunks(url: str) -> Iterator[bytes]:
    """The dump of the database at *url*, as chunks; raises DumpError at the end if it failed."""
    if dialect_of(url) == "sqlite":
        yield from _sqlite_dump(sqlite_path(url))
        return
    dbname, env = _libpq(url)
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603 - fixed program, arguments built above
            [_tool("pg_dump"), "--format=custom", "--compress=6", *dbname],
            stdout=subprocess.PIPE,
            stderr=errors,
            env=env,
        )
        assert process.stdout is not None  # noqa: S101 - stdout=PIPE
        try:
            while chunk := process.stdout.read(CHUNK):
                yield chunk
        finally:
            process.stdout.close()
            code = process.wait()
        if code != 0:
            errors.seek(0)
            raise DumpError(f"pg_dump a échoué ({code}) : {_first_line(errors.read())}")


def _first_line(data: bytes) -> str:
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[0][:300] if lines else ""


def _sqlite_dump(path: Path) -> Iterator[bytes]:
    # The online backup API copies a consistent state while the portal keeps writing; the copy
    # is made in memory, so no plaintext copy of the database lands on the disk.
    source = sqlite3.connect(path)
    copy = sqlite3.connect(":memory:")
    try:
        source.backup(copy)
        data = bytearray(copy.serialize())
    finally:
        copy.close()
        source.close()
    if data[18:20] == b"\x02\x02":
        # The image says "WAL" (bytes 18-19 of the header), which an image cannot be opened
        # as: it becomes a rollback-journal database, which the portal turns back into WAL.
        data[18:20] = b"\x01\x01"
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


def is_empty_database(url: str) -> bool:
    """True when the database at *url* has no table (a SQLite file may not exist yet)."""
    if dialect_of(url) == "sqlite":
        path = sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return True
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return not sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def restore_chunks(url: str, chunks: Iterable[bytes]) -> None:
    """Load a dump's plaintext *chunks* into the empty database at *url*."""
    if dialect_of(url) == "sqlite":
        _sqlite_restore(sqlite_path(url), chunks)
        return
    dbname, env = _libpq(url)
    with tempfile.TemporaryFile() as errors:
        # Owners and grants are the production server's: the restored database belongs to the
        # role restoring it, and `filr db upgrade --app-role` grants the application role again.
        process = subprocess.Popen(  # noqa: S603 - fixed program, arguments built above
            [_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", *dbname],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=env,
        )
        assert process.stdin is not None  # noqa: S101 - stdin=PIPE
        failure: list[BaseException] = []
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
        except BrokenPipeError:
            pass  # pg_restore stopped: its exit code says why
        except BaseException as e:
            failure.append(e)
            process.kill()
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            code = process.wait()
        if failure:
            raise failure[0]
        if code != 0:
            errors.seek(0)
            raise DumpError(f"pg_restore a échoué ({code}) : {_first_line(errors.read())}")


def _sqlite_restore(path: Path, chunks: Iterable[bytes]) -> None:
    data = b"".join(chunks)
    memory = sqlite3.connect(":memory:")
    try:
        memory.deserialize(data)
        target = sqlite3.connect(path)
        try:
            memory.backup(target)
        finally:
            target.close()
    finally:
        memory.close()


def create_scratch_database(owner_url: str, name: str) -> str:
    """Create the empty PostgreSQL database *name* beside *owner_url*'s; return its URL."""
    parsed = sa.engine.make_url(owner_url)
    engine = sa.create_engine(owner_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return parsed.set(database=name).render_as_string(hide_password=False)


def drop_database(owner_url: str, name: str) -> None:
    """Drop the PostgreSQL database *name* (connections closed by force)."""
    engine = sa.create_engine(owner_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def leftover_databases(owner_url: str, prefix: str) -> list[str]:
    """PostgreSQL databases whose name starts with *prefix* (earlier drills killed by SIGKILL)."""
    engine = sa.create_engine(owner_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                {"p": prefix.replace("_", r"\_") + "%"},
            )
            return [str(r[0]) for r in rows]
    finally:
        engine.dispose()
