"""self-tests and dry runs: the kind of a nomination, its grace test, and dry relay tests

Revision ID: 0006_self_tests
Revises: 0005_relay_sessions
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_self_tests"
down_revision = "0005_relay_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nominations") as table:
        table.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default=sa.text("'nomination'"))
        )
        table.add_column(
            sa.Column(
                "grace_job_id",
                sa.Integer(),
                sa.ForeignKey("jobs.id", name="fk_nominations_grace_job"),
                nullable=True,
            )
        )
    with op.batch_alter_table("relay_tests") as table:
        table.add_column(
            sa.Column("dry_run", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_nominations_kind_address", "nominations", ["kind", "address", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_nominations_kind_address", table_name="nominations")
    with op.batch_alter_table("relay_tests") as table:
        table.drop_column("dry_run")
    with op.batch_alter_table("nominations") as table:
        table.drop_column("grace_job_id")
        table.drop_column("kind")
