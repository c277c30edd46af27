"""the change log without its own time and actor: the listing row holds both

Each change row carried `at` and `actor`, a copy of its listing's `created_at`/`created_by`
(an add) or `ended_at`/`ended_by` (a removal), and no query read them: 31 of a change row's
51 bytes on SQLite, and 10M copies of the same timestamp and name after an import of 10M
lines. Who changed what and when stays in the listing rows (and the audit log).

Revision ID: 0009_slim_change_log
Revises: 0008_traps
Create Date: 2026-12-01 17:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_slim_change_log"
down_revision = "0008_traps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("changes") as table:
        table.drop_column("actor")
        table.drop_column("at")


def downgrade() -> None:
    with op.batch_alter_table("changes") as table:
        table.add_column(sa.Column("at", sa.DateTime(), nullable=True))
        table.add_column(sa.Column("actor", sa.String(128), nullable=True))
    # Back from the listing rows, where they were copied from.
    of = "(SELECT l.{} FROM listings l WHERE l.id = changes.listing_id)"
    for action, at, actor in (
        ("add", "created_at", "created_by"),
        ("remove", "ended_at", "ended_by"),
    ):
        op.execute(
            f"UPDATE changes SET at = {of.format(at)}, actor = {of.format(actor)}"
            f" WHERE action = '{action}'"
        )
