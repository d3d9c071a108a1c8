"""habilitations, suspension reasons, notices before suspension, annual review, incidents

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
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
        sa.Column("form_object_key", sa.String(length=64), nullable=True),
        sa.Column("form_size", sa.BigInteger(), nullable=True),
        sa.Column("form_uploaded_at", sa.DateTime(timezone=True), nullable=True),
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

    op.create_table(
        "incident",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("partner_notice_hours", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.String(length=32), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("partner_reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cnil_reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('violation', 'indisponibilite', 'activite_suspecte')",
            name=op.f("ck_incident_kind_known"),
        ),
        sa.CheckConstraint(
            "partner_notice_hours BETWEEN 1 AND 168", name=op.f("ck_incident_hours_sane")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_incident_created_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
        sa.UniqueConstraint("number", name=op.f("uq_incident_number")),
    )
    op.create_table(
        "incident_link",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("ref", sa.String(length=32), nullable=False),
        sa.CheckConstraint("kind IN ('event', 'alert')", name=op.f("ck_incident_link_kind_known")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_link_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_link")),
        sa.UniqueConstraint("incident_id", "kind", "ref", name="uq_incident_link_once"),
    )
    op.create_table(
        "incident_notice",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipients", sa.String(length=500), nullable=False),
        sa.Column("recorded_by_id", sa.String(length=32), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('partenaires', 'cnil')", name=op.f("ck_incident_notice_kind_known")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_notice_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["user_account.id"],
            name=op.f("fk_incident_notice_recorded_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_notice")),
    )
    op.create_table(
        "incident_scope",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=True),
        sa.Column("organisation_id", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "(departement_code IS NULL) != (organisation_id IS NULL)",
            name=op.f("ck_incident_scope_one_of_both"),
        ),
        sa.ForeignKeyConstraint(
            ["departement_code"],
            ["departement.code"],
            name=op.f("fk_incident_scope_departement_code_departement"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_incident_scope_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_incident_scope_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_scope")),
    )
    for table in ("incident_link", "incident_notice", "incident_scope"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f"ix_{table}_incident_id", ["incident_id"], unique=False)


def downgrade() -> None:
    for table in ("incident_scope", "incident_notice", "incident_link"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_incident_id")
        op.drop_table(table)
    op.drop_table("incident")
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
