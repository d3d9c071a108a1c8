"""flow deposits, follow-up and calendar reminders

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_deposit",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deposit_id", sa.String(length=32), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=False),
        sa.Column("sender_org_id", sa.String(length=32), nullable=False),
        sa.Column("flow_type", sa.String(length=8), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("version", sa.String(length=8), nullable=True),
        sa.Column("periodicite", sa.String(length=1), nullable=True),
        sa.Column("date_reference", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("nature_counts_json", sa.Text(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        sa.Column("report_sealed", sa.Text(), nullable=True),
        sa.Column("sanity_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unusable_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unusable_by_id", sa.String(length=32), nullable=True),
        sa.Column("unusable_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint(
            "status IN ('valid', 'rejected')", name=op.f("ck_flow_deposit_status_known")
        ),
        sa.CheckConstraint(
            "flow_type IS NULL OR flow_type IN ('CGPEM', 'PECGM', 'PECDH')",
            name=op.f("ck_flow_deposit_flow_type_known"),
        ),
        sa.CheckConstraint(
            "status = 'rejected' OR flow_type IS NOT NULL",
            name=op.f("ck_flow_deposit_valid_has_type"),
        ),
        sa.CheckConstraint(
            "record_count >= 0 AND error_count >= 0", name=op.f("ck_flow_deposit_counts_positive")
        ),
        sa.CheckConstraint(
            "(unusable_at IS NULL) = (unusable_reason IS NULL)",
            name=op.f("ck_flow_deposit_unusable_with_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_flow_deposit_deposit_id_deposit")
        ),
        sa.ForeignKeyConstraint(
            ["departement_code"],
            ["departement.code"],
            name=op.f("fk_flow_deposit_departement_code_departement"),
        ),
        sa.ForeignKeyConstraint(
            ["sender_org_id"],
            ["organisation.id"],
            name=op.f("fk_flow_deposit_sender_org_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["unusable_by_id"],
            ["user_account.id"],
            name=op.f("fk_flow_deposit_unusable_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_deposit")),
        sa.UniqueConstraint("deposit_id", name=op.f("uq_flow_deposit_deposit_id")),
    )
    with op.batch_alter_table("flow_deposit", schema=None) as batch_op:
        batch_op.create_index(
            "ix_flow_deposit_follow_up",
            ["departement_code", "period_start", "flow_type"],
            unique=False,
        )

    op.create_table(
        "flow_reminder",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=False),
        sa.Column("flow_type", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('before_deadline', 'deadline_passed')",
            name=op.f("ck_flow_reminder_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["departement_code"],
            ["departement.code"],
            name=op.f("fk_flow_reminder_departement_code_departement"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_reminder")),
        sa.UniqueConstraint(
            "departement_code",
            "flow_type",
            "period_start",
            "kind",
            name=op.f("uq_flow_reminder_once_per_period"),
        ),
    )


def downgrade() -> None:
    op.drop_table("flow_reminder")
    with op.batch_alter_table("flow_deposit", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_deposit_follow_up")
    op.drop_table("flow_deposit")
