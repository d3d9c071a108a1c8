"""fiches de liaison as structured forms: the inbox's columns (the values are encrypted objects)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fiche",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("form_id", sa.String(length=48), nullable=False),
        sa.Column("form_version", sa.Integer(), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=False),
        sa.Column("sender_id", sa.String(length=32), nullable=False),
        sa.Column("sender_org_id", sa.String(length=32), nullable=False),
        sa.Column("recipient_org_id", sa.String(length=32), nullable=False),
        sa.Column("forwarded_org_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("values_key", sa.String(length=200), nullable=True),
        sa.Column("person_sealed", sa.String(length=400), nullable=True),
        sa.Column("person_index", sa.String(length=64), nullable=True),
        sa.Column("replaces_id", sa.String(length=32), nullable=True),
        sa.Column("replaced_by_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(length=3), nullable=True),
        sa.Column("decided_on", sa.Date(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.String(length=32), nullable=True),
        sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("forwarded_by_id", sa.String(length=32), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_7_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_2_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('oui', 'non')", name=op.f("ck_fiche_decision_known")
        ),
        sa.CheckConstraint(
            "state IN ('draft', 'sent', 'received', 'accepted', 'refused', 'withdrawn', 'destroyed')",
            name=op.f("ck_fiche_state_known"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["user_account.id"], name=op.f("fk_fiche_decided_by_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["departement_code"],
            ["departement.code"],
            name=op.f("fk_fiche_departement_code_departement"),
        ),
        sa.ForeignKeyConstraint(
            ["forwarded_by_id"],
            ["user_account.id"],
            name=op.f("fk_fiche_forwarded_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["forwarded_org_id"],
            ["organisation.id"],
            name=op.f("fk_fiche_forwarded_org_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["recipient_org_id"],
            ["organisation.id"],
            name=op.f("fk_fiche_recipient_org_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["replaced_by_id"], ["fiche.id"], name=op.f("fk_fiche_replaced_by_id_fiche")
        ),
        sa.ForeignKeyConstraint(
            ["replaces_id"], ["fiche.id"], name=op.f("fk_fiche_replaces_id_fiche")
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["user_account.id"], name=op.f("fk_fiche_sender_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["sender_org_id"], ["organisation.id"], name=op.f("fk_fiche_sender_org_id_organisation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fiche")),
    )
    with op.batch_alter_table("fiche", schema=None) as batch_op:
        batch_op.create_index("ix_fiche_due", ["state", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_fiche_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_fiche_forwarded_org_id"), ["forwarded_org_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_fiche_person_index"), ["person_index"], unique=False)
        batch_op.create_index(
            "ix_fiche_recipient_sent", ["recipient_org_id", "sent_at", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_fiche_sender_id"), ["sender_id"], unique=False)
        batch_op.create_index(
            "ix_fiche_sender_org_created", ["sender_org_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_fiche_space_sent", ["departement_code", "sent_at", "id"], unique=False
        )

    op.create_table(
        "fiche_attachment",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("fiche_id", sa.String(length=32), nullable=False),
        sa.Column("field_id", sa.String(length=48), nullable=False),
        sa.Column("object_key", sa.String(length=200), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("scan", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["fiche_id"], ["fiche.id"], name=op.f("fk_fiche_attachment_fiche_id_fiche")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fiche_attachment")),
        sa.UniqueConstraint("object_key", name=op.f("uq_fiche_attachment_object_key")),
    )
    with op.batch_alter_table("fiche_attachment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fiche_attachment_fiche_id"), ["fiche_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("fiche_attachment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fiche_attachment_fiche_id"))
    op.drop_table("fiche_attachment")
    with op.batch_alter_table("fiche", schema=None) as batch_op:
        batch_op.drop_index("ix_fiche_space_sent")
        batch_op.drop_index("ix_fiche_sender_org_created")
        batch_op.drop_index(batch_op.f("ix_fiche_sender_id"))
        batch_op.drop_index("ix_fiche_recipient_sent")
        batch_op.drop_index(batch_op.f("ix_fiche_person_index"))
        batch_op.drop_index(batch_op.f("ix_fiche_forwarded_org_id"))
        batch_op.drop_index(batch_op.f("ix_fiche_expires_at"))
        batch_op.drop_index("ix_fiche_due")

    op.drop_table("fiche")
