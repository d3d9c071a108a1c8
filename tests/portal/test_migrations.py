"""Migrations run both ways on SQLite and PostgreSQL, and agree with the models."""

from __future__ import annotations

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
