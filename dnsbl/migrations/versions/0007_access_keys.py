"""access keys of the DNS zones and their daily use per DNS process

Revision ID: 0007_access_keys
Revises: 0006_self_tests
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_access_keys"
down_revision = "0006_self_tests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("daily_quota", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_access_keys"),
        sa.UniqueConstraint("name", name="uq_access_keys_name"),
        sa.UniqueConstraint("hash", name="uq_access_keys_hash"),
    )
    op.create_table(
        "access_key_usage",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("queries", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"], ["access_keys.id"], name="fk_access_key_usage_key_id_access_keys"
        ),
        sa.PrimaryKeyConstraint("key_id", "day", "node", name="pk_access_key_usage"),
    )


def downgrade() -> None:
    op.drop_table("access_key_usage")
    op.drop_table("access_keys")
