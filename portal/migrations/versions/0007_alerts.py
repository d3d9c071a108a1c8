"""security alerts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_national", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    op.create_table(
        "security_alert",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=True),
        sa.Column("organisation_id", sa.String(length=32), nullable=True),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("first_event_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_event_seq", sa.BigInteger(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by_id", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "status IN ('new', 'acknowledged')", name=op.f("ck_security_alert_status_known")
        ),
        sa.CheckConstraint("occurrences >= 1", name=op.f("ck_security_alert_occurrences_positive")),
        sa.CheckConstraint(
            "last_seen_at >= first_seen_at", name=op.f("ck_security_alert_seen_in_order")
        ),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_id"],
            ["user_account.id"],
            name=op.f("fk_security_alert_acknowledged_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_alert")),
    )
    with op.batch_alter_table("security_alert", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_security_alert_departement_code"), ["departement_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_security_alert_organisation_id"), ["organisation_id"], unique=False
        )
        batch_op.create_index(
            "ix_security_alert_open_subject",
            ["kind", "subject_type", "subject_id", "status"],
            unique=False,
        )

    op.create_table(
        "alert_job_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chain_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chain_is_valid", sa.Boolean(), nullable=True),
        sa.Column("chain_checked_rows", sa.BigInteger(), nullable=True),
        sa.Column("chain_first_broken_seq", sa.BigInteger(), nullable=True),
        sa.Column("chain_reason", sa.String(length=64), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_alert_job_state_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_job_state")),
    )


def downgrade() -> None:
    op.drop_table("alert_job_state")
    with op.batch_alter_table("security_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_security_alert_open_subject")
        batch_op.drop_index(batch_op.f("ix_security_alert_organisation_id"))
        batch_op.drop_index(batch_op.f("ix_security_alert_departement_code"))
    op.drop_table("security_alert")
    with op.batch_alter_table("organisation", schema=None) as batch_op:
        batch_op.drop_column("is_national")
