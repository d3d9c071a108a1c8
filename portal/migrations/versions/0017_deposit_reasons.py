"""deposits without free text (reasons) and the weekly experimentation files' category

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08

- The free-text message of deposits is erased and its column dropped: the conventions limit
  the exchange "strictement aux données listées", with "aucune rubrique permettant du texte
  libre". The messages are first set to NULL (a dropped column's values would otherwise stay
  in the table's pages on PostgreSQL until each row is rewritten), then the column goes; the
  way back brings an empty column, never the messages. A reason from a closed list replaces
  them (`portal.deposits.models.REASON_LABELS`).
- The category `hebdo_experimentation` (weekly files of the experimentation conventions, kept
  `FILR_WEEKLY_FILE_LIFETIME_DAYS`, 7 days by default): the check constraint takes it, and its
  trigram search index is created where 0008 could create pg_trgm, and the column widens
  to 32 characters. The way back turns such deposits into documents.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# Copied, not imported, so that this migration keeps its meaning whatever the code becomes.
OLD_CATEGORIES = ("fiche_liaison", "flux_xml", "document")
CATEGORIES = (*OLD_CATEGORIES, "hebdo_experimentation")
REASONS = (
    "transmission_reguliere",
    "complement_demande",
    "correction",
    "suite_a_donner",
    "pour_information",
)
TRIGRAM_INDEX = "ix_deposit_title_trgm_hebdo_experimentation"


def _in_list(column: str, values: tuple[str, ...]) -> str:
    codes = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({codes})"


def _has_pg_trgm(bind: sa.Connection) -> bool:
    if bind.dialect.name != "postgresql":
        return False
    return bool(
        bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").scalar()
    )


def upgrade() -> None:
    op.execute(sa.text("UPDATE deposit SET message = NULL WHERE message IS NOT NULL"))
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.drop_column("message")
        batch_op.add_column(sa.Column("reason", sa.String(length=32), nullable=True))
        # "hebdo_experimentation" is longer than the 16 characters of 0002.
        batch_op.alter_column(
            "category",
            existing_type=sa.String(length=16),
            type_=sa.String(length=32),
            existing_nullable=False,
        )
        batch_op.create_check_constraint(
            op.f("ck_deposit_reason_known"), f"reason IS NULL OR {_in_list('reason', REASONS)}"
        )
        batch_op.drop_constraint(op.f("ck_deposit_category_known"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_deposit_category_known"), _in_list("category", CATEGORIES)
        )
    bind = op.get_bind()
    if _has_pg_trgm(bind):
        op.create_index(
            TRIGRAM_INDEX,
            "deposit",
            ["title_sort"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"title_sort": "gin_trgm_ops"},
            postgresql_where=sa.text("category = 'hebdo_experimentation'"),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(TRIGRAM_INDEX, table_name="deposit", if_exists=True)
    op.execute(
        sa.text("UPDATE deposit SET category = 'document' WHERE category = 'hebdo_experimentation'")
    )
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_deposit_category_known"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_deposit_category_known"), _in_list("category", OLD_CATEGORIES)
        )
        batch_op.drop_constraint(op.f("ck_deposit_reason_known"), type_="check")
        batch_op.alter_column(
            "category",
            existing_type=sa.String(length=32),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
        batch_op.drop_column("reason")
        batch_op.add_column(sa.Column("message", sa.String(length=1000), nullable=True))
