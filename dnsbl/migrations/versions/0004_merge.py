"""Join the relay-testing (0002) and API (0003) branches, both built on the listing store.

Revision ID: 0004
Revises: 0002, 0003
"""

from __future__ import annotations

revision = "0004"
down_revision = ("0002", "0003")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
