"""spam traps and reports: the evidence of each hit or report, and each source's history

Revision ID: 0008_traps
Revises: 0007_access_keys
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_traps"
down_revision = "0007_access_keys"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "spam_evidence",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("delivered_by", sa.String(45), nullable=True),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("helo", sa.String(255), nullable=True),
        sa.Column("mail_from", sa.Text(), nullable=True),
        sa.Column("sender_domain", sa.String(253), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("trap", sa.Text(), nullable=True),
        sa.Column("trap_domain", sa.String(253), nullable=True),
        sa.Column("reporter", sa.String(128), nullable=True),
        sa.Column(
            "listing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.id"], name="fk_spam_evidence_listing_id_listings"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_spam_evidence"),
    )
    op.create_index("ix_spam_evidence_address", "spam_evidence", ["address", "received_at"])
    op.create_table(
        "spam_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zone", sa.String(253), nullable=False),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("listed_days", sa.Float(), nullable=False),
        sa.Column("listed_since", _TIME, nullable=False),
        sa.Column("removed_at", _TIME, nullable=True),
        sa.Column("relisted_at", _TIME, nullable=True),
        sa.Column("removals", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_spam_sources"),
        sa.UniqueConstraint("zone", "address", name="uq_spam_sources_zone_address"),
    )


def downgrade() -> None:
    op.drop_table("spam_sources")
    op.drop_index("ix_spam_evidence_address", table_name="spam_evidence")
    op.drop_table("spam_evidence")
