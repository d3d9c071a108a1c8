"""resumable uploads (tus): the state of files uploaded in pieces

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resumable_upload",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deposit_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=False),
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("object_key", sa.String(length=200), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("header", sa.LargeBinary(), nullable=False),
        sa.Column("store_upload_id", sa.String(length=1024), nullable=False),
        sa.Column("digest_state", sa.LargeBinary(), nullable=False),
        sa.Column("parts", sa.Text(), nullable=False),
        sa.Column("busy_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_resumable_upload_deposit_id_deposit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resumable_upload")),
        sa.UniqueConstraint("file_id", name=op.f("uq_resumable_upload_file_id")),
        sa.UniqueConstraint("object_key", name=op.f("uq_resumable_upload_object_key")),
    )
    with op.batch_alter_table("resumable_upload", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resumable_upload_deposit_id"), ["deposit_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_resumable_upload_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("resumable_upload", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resumable_upload_expires_at"))
        batch_op.drop_index(batch_op.f("ix_resumable_upload_deposit_id"))
    op.drop_table("resumable_upload")
