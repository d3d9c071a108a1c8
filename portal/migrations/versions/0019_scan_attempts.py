"""antivirus: failed scan attempts per pending file

Revision ID: 0019
Revises: 0015
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deposit_file") as batch:
        batch.add_column(
            sa.Column("scan_attempts", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("deposit_file") as batch:
        batch.drop_column("scan_attempts")
