"""backups: the restore guard (no serving until the purge after a restore has succeeded)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restore_guard",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("backup_id", sa.String(length=32), nullable=False),
        sa.Column("restored_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_restore_guard_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_restore_guard")),
    )


def downgrade() -> None:
    op.drop_table("restore_guard")
