"""deposit lifecycle (withdrawal races, pending content removal, erasure)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The values `portal.deposits.purge` writes when it destroys a deposit, copied here so that
# this migration keeps its meaning whatever the code becomes.
DESTROYED_TITLE = "Dépôt détruit"
DESTROYED_TITLE_SORT = "depot detruit"
DESTROYED_FILENAME = "Fichier détruit"
ERASED_REASON = "Motif effacé à la destruction du flux."


def upgrade() -> None:
    with op.batch_alter_table("deposit_file", schema=None) as batch_op:
        batch_op.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_deposit_file_removal", ["removed_at", "destroyed_at"])

    # Deposits destroyed before this revision kept their titles, messages, file names and flow
    # reports: erase them as a destruction now does. Flow titles are written by the portal
    # (type, space, period), never typed by a person, and stay for the follow-up.
    # `removed_at` stays NULL on their files: whether the store removed each ciphertext is not
    # known, so the next purge removes them again (removing twice is not an error).
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE deposit SET title = :title, title_sort = :title_sort "
            "WHERE status = 'destroyed' AND category <> 'flux_xml'"
        ),
        {"title": DESTROYED_TITLE, "title_sort": DESTROYED_TITLE_SORT},
    )
    bind.execute(sa.text("UPDATE deposit SET message = NULL WHERE status = 'destroyed'"))
    bind.execute(
        sa.text("UPDATE deposit_file SET filename = :name WHERE destroyed_at IS NOT NULL"),
        {"name": DESTROYED_FILENAME},
    )
    # A refused flow's report is its sender's answer and ages out with `forget_old_reports`;
    # a delivered flow's report goes with its content.
    bind.execute(
        sa.text(
            "UPDATE flow_deposit SET report_sealed = NULL, unusable_reason = CASE "
            "WHEN unusable_reason IS NULL THEN NULL ELSE :reason END "
            "WHERE status = 'valid' AND deposit_id IN "
            "(SELECT id FROM deposit WHERE status = 'destroyed')"
        ),
        {"reason": ERASED_REASON},
    )


def downgrade() -> None:
    # The erased values are gone for good: only the column and its index are taken back.
    with op.batch_alter_table("deposit_file", schema=None) as batch_op:
        batch_op.drop_index("ix_deposit_file_removal")
        batch_op.drop_column("removed_at")
