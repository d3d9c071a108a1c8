"""habilitations, suspension reasons, notices before suspension, annual review

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspension_reason", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("reactivated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("inactivity_notice_at", sa.DateTime(timezone=True), nullable=True)
        )
    # Accounts suspended before this revision were suspended by a person.
    op.get_bind().execute(
        sa.text("UPDATE user_account SET suspension_reason = 'manager' WHERE status = 'suspended'")
    )

    op.create_table(
        "habilitation",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("function", sa.String(length=40), nullable=False),
        sa.Column("function_label", sa.String(length=80), nullable=True),
        sa.Column("granted_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("granted_by_id", sa.String(length=32), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notice_14_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notice_1_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "ends_on IS NULL OR ends_on > granted_on",
            name=op.f("ck_habilitation_ends_after_grant"),
        ),
        sa.CheckConstraint(
            "(function = 'autre') = (function_label IS NOT NULL)",
            name=op.f("ck_habilitation_label_iff_autre"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_habilitation_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["granted_by_id"],
            ["user_account.id"],
            name=op.f("fk_habilitation_granted_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_habilitation")),
    )
    with op.batch_alter_table("habilitation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_habilitation_ends_on"), ["ends_on"], unique=False)

    op.create_table(
        "review_campaign",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("opens_on", sa.Date(), nullable=False),
        sa.Column("closes_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("is_manual", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reminder_on", sa.Date(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "closes_on >= opens_on", name=op.f("ck_review_campaign_closes_after_opening")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("ck_review_campaign_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_review_campaign_organisation_id_organisation"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_campaign")),
        sa.UniqueConstraint(
            "organisation_id", "opens_on", name=op.f("uq_review_campaign_one_per_opening")
        ),
    )
    with op.batch_alter_table("review_campaign", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_review_campaign_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "review_decision",
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=12), nullable=False),
        sa.Column("decided_by_id", sa.String(length=32), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('confirmed', 'suspended')",
            name=op.f("ck_review_decision_decision_known"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["review_campaign.id"],
            name=op.f("fk_review_decision_campaign_id_review_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_review_decision_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["user_account.id"],
            name=op.f("fk_review_decision_decided_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "user_id", name=op.f("pk_review_decision")),
    )


def downgrade() -> None:
    op.drop_table("review_decision")
    with op.batch_alter_table("review_campaign", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_campaign_organisation_id"))
    op.drop_table("review_campaign")
    with op.batch_alter_table("habilitation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_habilitation_ends_on"))
    op.drop_table("habilitation")
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("inactivity_notice_at")
        batch_op.drop_column("reactivated_at")
        batch_op.drop_column("suspension_reason")
