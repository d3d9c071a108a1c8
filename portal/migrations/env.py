"""Alembic environment: the portal's, the audit trail's and the storage keyring's tables."""

from __future__ import annotations

import functools
from typing import cast

import sqlalchemy as sa
from alembic import context

import audit

# Import the models so that their tables are on the metadata.
from portal.accounts import models as _accounts  # noqa: F401 - tables on the metadata
from portal.api import models as _api  # noqa: F401 - as above
from portal.auth import models as _auth  # noqa: F401 - as above
from portal.backup import models as _backup  # noqa: F401 - as above
from portal.db import Base, make_engine
from portal.deposits import models as _deposits  # noqa: F401 - as above
from portal.fiches import models as _fiches  # noqa: F401 - as above
from portal.flows import models as _flows  # noqa: F401 - as above
from portal.ops import models as _ops  # noqa: F401 - as above
from portal.orgs import models as _orgs  # noqa: F401 - as above
from portal.securite import incident_models as _incidents  # noqa: F401 - as above
from portal.securite import models as _securite  # noqa: F401 - as above

target_metadata = [Base.metadata, audit.metadata]
try:
    from storage.sql import metadata as storage_metadata

    target_metadata.append(storage_metadata)
except ImportError:  # pragma: no cover - storage keyring tables not built yet
    pass

config = context.config


def run_migrations_online() -> None:
    """Run against a live connection (SQLite uses batch mode for ALTERs)."""
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None  # noqa: S101 - set by portal.migrate
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _installed_extensions(connection: sa.Connection) -> frozenset[str]:
    """Extensions created in the database (none on SQLite)."""
    if connection.dialect.name != "postgresql":
        return frozenset()
    return frozenset(connection.exec_driver_sql("SELECT extname FROM pg_extension").scalars())


def _run(connection: object) -> None:
    @functools.cache
    def installed() -> frozenset[str]:
        # Asked only when models are compared, inside Alembic's transaction (a query before
        # `configure` would open one that Alembic then takes for its caller's, never committed).
        return _installed_extensions(cast(sa.Connection, connection))

    def include_object(obj: object, name: str | None, type_: str, *_: object) -> bool:
        # An index that needs an extension (the deposit search's trigram indexes) exists only
        # where migration 0008 could create that extension: not on SQLite, nor on a server
        # without it. Comparing the models with such a database must not ask for it.
        required = getattr(obj, "info", {}).get("requires_extension") if type_ == "index" else None
        return required is None or required in installed()

    context.configure(
        connection=connection,  # type: ignore[arg-type] # a Connection, given by portal.migrate
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
