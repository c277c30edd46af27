"""relay tests: the client address, TLS version and cipher, and greylisting retries

Revision ID: 0005_relay_sessions
Revises: 0004
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_relay_sessions"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("client_address", "tls_version", "tls_cipher", "retries", "retry_at")


def upgrade() -> None:
    with op.batch_alter_table("relay_tests") as table:
        table.add_column(sa.Column("client_address", sa.String(45), nullable=True))
        table.add_column(sa.Column("tls_version", sa.String(16), nullable=True))
        table.add_column(sa.Column("tls_cipher", sa.String(64), nullable=True))
        table.add_column(
            sa.Column("retries", sa.SmallInteger(), nullable=False, server_default=sa.text("0"))
        )
        table.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("relay_tests") as table:
        for name in reversed(_COLUMNS):
            table.drop_column(name)
