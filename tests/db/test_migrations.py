"""Migrations run both ways on SQLite and PostgreSQL, and agree with the models."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from portal.migrate import alembic_config, downgrade, upgrade
from portal.orgs.departements import DEPARTEMENTS
from tests.support.services import postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    request.applymarker(pytest.mark.postgres)
    with postgres_database("filr_migr") as url:
        yield url


def test_upgrade_downgrade_upgrade_and_models_match(empty_database: str) -> None:
    upgrade(empty_database)
    command.check(alembic_config(empty_database))  # raises if models and migrations differ
    downgrade(empty_database, "base")
    engine = sa.create_engine(empty_database)
    tables = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert tables == set()
    upgrade(empty_database)
    engine = sa.create_engine(empty_database)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM departement")).scalar_one()
    engine.dispose()
    assert count == len(DEPARTEMENTS) == 102


@pytest.mark.postgres
def test_without_pg_trgm_the_migrations_go_on_and_still_match_the_models() -> None:
    # Given an owner that may create tables but not extensions (no CREATE on the database)
    role = f"filr_noext_{uuid.uuid4().hex[:8]}"
    with postgres_database("filr_noext") as admin_url:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
                conn.exec_driver_sql(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"')
            url = sa.make_url(admin_url).set(username=role).render_as_string(hide_password=False)
            # When it runs the migrations
            upgrade(url)
            # Then 0008 goes on without the trigram indexes (the search reads without them),
            # the models still match, and the way back works
            command.check(alembic_config(url))
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                indexes = set(
                    conn.exec_driver_sql(
                        "SELECT indexname FROM pg_indexes WHERE tablename = 'deposit'"
                    ).scalars()
                )
                extensions = set(conn.exec_driver_sql("SELECT extname FROM pg_extension").scalars())
            engine.dispose()
            assert {"ix_deposit_created", "ix_deposit_title"} <= indexes
            assert not any("trgm" in name for name in indexes) and "pg_trgm" not in extensions
            downgrade(url, "0007")
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            admin.dispose()
            cleanup = sa.create_engine(
                admin_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
            )
            with cleanup.connect() as conn:
                # The database goes with postgres_database; the role is cluster-wide.
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
            cleanup.dispose()
