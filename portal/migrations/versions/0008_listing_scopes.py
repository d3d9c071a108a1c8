"""listing for every scope (indexes)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# The categories of `portal.deposits.models.Category`, copied so that this migration keeps its
# meaning whatever the code becomes.
CATEGORIES = ("fiche_liaison", "flux_xml", "document")


def _trigram_indexes() -> list[str]:
    return [f"ix_deposit_title_trgm_{category}" for category in CATEGORIES]


def _can_use_pg_trgm(bind: sa.Connection) -> bool:
    """Create pg_trgm if it is missing; False (and the search goes without) when it cannot be.

    pg_trgm is a trusted extension: a database owner may create it without being superuser.
    A refusal (extension not installed on the server, no CREATE right on the database) is
    caught in a savepoint so that the rest of the migration goes on.
    """
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as e:
        log.warning(
            "pg_trgm unavailable (%s): the deposit search works without its trigram indexes",
            type(e.orig).__name__,
        )
        return False
    return True


def upgrade() -> None:
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.create_index("ix_deposit_created", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_deposit_title", ["title_sort", "id"], unique=False)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and _can_use_pg_trgm(bind):
        for category, name in zip(CATEGORIES, _trigram_indexes(), strict=True):
            op.create_index(
                name,
                "deposit",
                ["title_sort"],
                unique=False,
                postgresql_using="gin",
                postgresql_ops={"title_sort": "gin_trgm_ops"},
                postgresql_where=sa.text(f"category = '{category}'"),
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _trigram_indexes():
            op.drop_index(name, table_name="deposit", if_exists=True)
    # pg_trgm stays: other database objects may have come to use it since.
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.drop_index("ix_deposit_title")
        batch_op.drop_index("ix_deposit_created")
