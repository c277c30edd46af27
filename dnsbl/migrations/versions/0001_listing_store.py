"""listing store

Revision ID: 0001
Revises:
Create Date: 2026-11-28 12:33:59.085043
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listing_values",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        sa.Column("code", sa.String(length=15), nullable=True),
        sa.Column("txt", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listing_values")),
    )
    with op.batch_alter_table("listing_values", schema=None) as batch_op:
        batch_op.create_index(
            "ix_listing_values_all", ["category", "excluded", "code", "txt"], unique=False
        )

    op.create_table(
        "zones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zones")),
        sa.UniqueConstraint("name", name=op.f("uq_zones_name")),
    )
    op.create_table(
        "listings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.Column("value_id", sa.Integer(), nullable=False),
        sa.Column("family", sa.SmallInteger(), nullable=False),
        sa.Column("start_key", sa.String(length=32), nullable=False),
        sa.Column("prefixlen", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=128), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["value_id"], ["listing_values.id"], name=op.f("fk_listings_value_id_listing_values")
        ),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"], name=op.f("fk_listings_zone_id_zones")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_listings")),
    )
    with op.batch_alter_table("listings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_listings_expiry",
            ["expires_at"],
            unique=False,
            sqlite_where=sa.text("ended_at IS NULL AND expires_at IS NOT NULL"),
            postgresql_where=sa.text("ended_at IS NULL AND expires_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_listings_load",
            ["zone_id", "family", "prefixlen", "value_id", "start_key"],
            unique=False,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.create_index("ix_listings_start", ["family", "start_key"], unique=False)

    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column(
            "listing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.id"], name=op.f("fk_changes_listing_id_listings")
        ),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"], name=op.f("fk_changes_zone_id_zones")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
    )
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.create_index("ix_changes_zone_serial", ["zone_id", "serial"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("changes", schema=None) as batch_op:
        batch_op.drop_index("ix_changes_zone_serial")

    op.drop_table("changes")
    with op.batch_alter_table("listings", schema=None) as batch_op:
        batch_op.drop_index("ix_listings_start")
        batch_op.drop_index(
            "ix_listings_load",
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
        batch_op.drop_index(
            "ix_listings_expiry",
            sqlite_where=sa.text("ended_at IS NULL AND expires_at IS NOT NULL"),
            postgresql_where=sa.text("ended_at IS NULL AND expires_at IS NOT NULL"),
        )

    op.drop_table("listings")
    op.drop_table("zones")
    with op.batch_alter_table("listing_values", schema=None) as batch_op:
        batch_op.drop_index("ix_listing_values_all")

    op.drop_table("listing_values")
