"""audit role, retention checkpoint

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

- ``audit_checkpoint``: where the retention purge cut the chain (verification starts there);
- search indexes ending with ``seq`` (keyset pages of a filtered search over millions of rows),
  one of them partial (failures and refusals);
- PostgreSQL: a trigger refusing UPDATE, DELETE and TRUNCATE on the trail to every role but a
  superuser (who can disable triggers anyway) and the owner's retention purge, which sets
  ``filr.audit_retention`` for its own transaction; and, when ``FILR_DATABASE_APP_ROLE`` names
  the application's role, its privileges: INSERT and SELECT only on ``audit_event``.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context, op

from audit.privileges import grant_app_role, revoke_app_role

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OLD_INDEXES = ("action", "actor_id", "target_departement", "target_id")
_NEW_INDEXES = (
    "action",
    "actor_id",
    "actor_org_id",
    "target_departement",
    "target_id",
    "source_ip",
)

APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION filr_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A superuser can disable triggers anyway: tampering by one is what `filr audit verify`
    -- and the daily head hash sent to the security officers detect.
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    -- The retention purge: run by the owner, which flags its own transaction.
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_event'
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
       AND coalesce(current_setting('filr.audit_retention', true), '') = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def _app_role() -> str | None:
    role = context.config.attributes.get("filr_app_role") or os.environ.get(
        "FILR_DATABASE_APP_ROLE"
    )
    return str(role) if role else None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("rows_deleted", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoint")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_checkpoint_seq")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        for column in _OLD_INDEXES:
            batch_op.drop_index(f"ix_audit_event_{column}")
        for column in _NEW_INDEXES:
            batch_op.create_index(f"ix_audit_event_{column}_seq", [column, "seq"], unique=False)
        batch_op.create_index(
            "ix_audit_event_outcome_seq",
            ["outcome", "seq"],
            unique=False,
            postgresql_where=sa.text("outcome <> 'success'"),
            sqlite_where=sa.text("outcome <> 'success'"),
        )

    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(APPEND_ONLY_FUNCTION)
    for table in ("audit_event", "audit_checkpoint"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION filr_audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION filr_audit_append_only()"
        )
    role = _app_role()
    if role:
        grant_app_role(op.get_bind(), role)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        role = _app_role()
        if role:
            revoke_app_role(op.get_bind(), role)
        for table in ("audit_event", "audit_checkpoint"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS filr_audit_append_only()")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_event_outcome_seq")
        for column in _NEW_INDEXES:
            batch_op.drop_index(f"ix_audit_event_{column}_seq")
        for column in _OLD_INDEXES:
            batch_op.create_index(f"ix_audit_event_{column}", [column], unique=False)
    op.drop_table("audit_checkpoint")
