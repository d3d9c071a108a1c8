"""ProConnect log-in: organisations that opt in, accounts linked to their (issuer, sub)

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("proconnect_enabled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "federated_identity",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_federated_identity_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_federated_identity")),
        sa.UniqueConstraint("issuer", "subject", name=op.f("uq_federated_identity_issuer_subject")),
        sa.UniqueConstraint("user_id", "issuer", name=op.f("uq_federated_identity_user_issuer")),
    )
    op.create_index(
        op.f("ix_federated_identity_user_id"), "federated_identity", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_federated_identity_user_id", table_name="federated_identity")
    op.drop_table("federated_identity")
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.drop_column("proconnect_enabled")
