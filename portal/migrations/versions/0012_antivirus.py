"""antivirus: each file's scan status, deposits held until their files are scanned

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Files deposited before the antivirus were never scanned: they say so ('unscanned').
    with op.batch_alter_table("deposit_file", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "scan_status", sa.String(length=16), server_default="unscanned", nullable=False
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_deposit_file_scan_status_known"),
            "scan_status IN ('clean', 'pending', 'bypassed', 'unscanned')",
        )
        batch_op.create_index("ix_deposit_file_scan_status", ["scan_status"])
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_for_scan_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.drop_column("held_for_scan_at")
    with op.batch_alter_table("deposit_file", schema=None) as batch_op:
        batch_op.drop_index("ix_deposit_file_scan_status")
        batch_op.drop_constraint(op.f("ck_deposit_file_scan_status_known"), type_="check")
        batch_op.drop_column("scan_status")
