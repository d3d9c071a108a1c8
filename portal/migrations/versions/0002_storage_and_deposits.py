"""storage keyring and deposits

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deposit",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("departement_code", sa.String(length=3), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("title_sort", sa.String(length=200), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=True),
        sa.Column("sender_id", sa.String(length=32), nullable=False),
        sa.Column("sender_org_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_downloads", sa.Integer(), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("taken_by_id", sa.String(length=32), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_7_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_1_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "category IN ('fiche_liaison', 'flux_xml', 'document')",
            name=op.f("ck_deposit_category_known"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'available', 'withdrawn', 'destroyed')",
            name=op.f("ck_deposit_status_known"),
        ),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_deposit_expires_after_creation")
        ),
        sa.CheckConstraint(
            "max_downloads IS NULL OR max_downloads > 0",
            name=op.f("ck_deposit_max_downloads_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["departement_code"],
            ["departement.code"],
            name=op.f("fk_deposit_departement_code_departement"),
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["user_account.id"], name=op.f("fk_deposit_sender_id_user_account")
        ),
        sa.ForeignKeyConstraint(
            ["sender_org_id"],
            ["organisation.id"],
            name=op.f("fk_deposit_sender_org_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["taken_by_id"], ["user_account.id"], name=op.f("fk_deposit_taken_by_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit")),
    )
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deposit_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deposit_sender_id"), ["sender_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_deposit_sender_org_id"), ["sender_org_id"], unique=False
        )
        batch_op.create_index(
            "ix_deposit_space_created", ["departement_code", "created_at", "id"], unique=False
        )

    op.create_table(
        "deposit_file",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deposit_id", sa.String(length=32), nullable=False),
        sa.Column("object_key", sa.String(length=200), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=120), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_deposit_file_deposit_id_deposit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_file")),
        sa.UniqueConstraint("object_key", name=op.f("uq_deposit_file_object_key")),
    )
    with op.batch_alter_table("deposit_file", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deposit_file_deposit_id"), ["deposit_id"], unique=False
        )

    op.create_table(
        "deposit_recipient",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deposit_id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=True),
        sa.Column("user_id", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "(organisation_id IS NULL) != (user_id IS NULL)",
            name=op.f("ck_deposit_recipient_organisation_xor_user"),
        ),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_deposit_recipient_deposit_id_deposit")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_deposit_recipient_organisation_id_organisation"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_deposit_recipient_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deposit_recipient")),
    )
    with op.batch_alter_table("deposit_recipient", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deposit_recipient_deposit_id"), ["deposit_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deposit_recipient_organisation_id"), ["organisation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_deposit_recipient_user_id"), ["user_id"], unique=False)

    op.create_table(
        "download_counter",
        sa.Column("deposit_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_download_counter_deposit_id_deposit")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_download_counter_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("deposit_id", "user_id", name=op.f("pk_download_counter")),
    )
    op.create_table(
        "download_receipt",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("deposit_id", sa.String(length=32), nullable=False),
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("downloaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deposit_id"], ["deposit.id"], name=op.f("fk_download_receipt_deposit_id_deposit")
        ),
        sa.ForeignKeyConstraint(
            ["file_id"], ["deposit_file.id"], name=op.f("fk_download_receipt_file_id_deposit_file")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_download_receipt_user_id_user_account")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_receipt")),
    )
    with op.batch_alter_table("download_receipt", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_download_receipt_deposit_id"), ["deposit_id"], unique=False
        )

    op.create_table(
        "storage_kek",
        sa.Column("departement", sa.String(length=3), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_storage_kek_version_positive")),
        sa.PrimaryKeyConstraint("departement", "version", name=op.f("pk_storage_kek")),
    )
    op.create_table(
        "storage_data_key",
        sa.Column("object_key", sa.String(length=200), nullable=False),
        sa.Column("departement", sa.String(length=3), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(shredded_at IS NULL AND wrapped_key IS NOT NULL AND sha256 IS NOT NULL) OR (shredded_at IS NOT NULL AND wrapped_key IS NULL AND sha256 IS NULL)",
            name=op.f("ck_storage_data_key_live_or_shredded"),
        ),
        sa.CheckConstraint("size >= 0", name=op.f("ck_storage_data_key_size_not_negative")),
        sa.ForeignKeyConstraint(
            ["departement", "kek_version"],
            ["storage_kek.departement", "storage_kek.version"],
            name=op.f("fk_storage_data_key_departement_storage_kek"),
        ),
        sa.PrimaryKeyConstraint("object_key", name=op.f("pk_storage_data_key")),
    )
    with op.batch_alter_table("storage_data_key", schema=None) as batch_op:
        batch_op.create_index(
            "ix_storage_data_key_departement_kek_version",
            ["departement", "kek_version"],
            unique=False,
        )

    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("daily_digest", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("last_digest_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("last_digest_at")
        batch_op.drop_column("daily_digest")

    with op.batch_alter_table("storage_data_key", schema=None) as batch_op:
        batch_op.drop_index("ix_storage_data_key_departement_kek_version")

    op.drop_table("storage_data_key")
    op.drop_table("storage_kek")
    with op.batch_alter_table("download_receipt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_download_receipt_deposit_id"))

    op.drop_table("download_receipt")
    op.drop_table("download_counter")
    with op.batch_alter_table("deposit_recipient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deposit_recipient_user_id"))
        batch_op.drop_index(batch_op.f("ix_deposit_recipient_organisation_id"))
        batch_op.drop_index(batch_op.f("ix_deposit_recipient_deposit_id"))

    op.drop_table("deposit_recipient")
    with op.batch_alter_table("deposit_file", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deposit_file_deposit_id"))

    op.drop_table("deposit_file")
    with op.batch_alter_table("deposit", schema=None) as batch_op:
        batch_op.drop_index("ix_deposit_space_created")
        batch_op.drop_index(batch_op.f("ix_deposit_sender_org_id"))
        batch_op.drop_index(batch_op.f("ix_deposit_sender_id"))
        batch_op.drop_index(batch_op.f("ix_deposit_expires_at"))

    op.drop_table("deposit")
