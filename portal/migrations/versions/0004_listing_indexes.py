"""index for the inbox sorted by title

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deposit_space_title", ["departement_code", "title_sort", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.drop_index("ix_deposit_space_title")
