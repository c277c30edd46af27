"""relay testing: jobs, relay tests and their evidence, nominations, delist requests, policy

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 12:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ACTIVE = "status IN ('waiting', 'running')"


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        _when("run_after", nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        _when("lease_until"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _when("created_at", nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        _when("finished_at"),
        sa.Column("test_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_claim", "jobs", ["status", "run_after"])
    op.create_index(
        "uq_jobs_active_target",
        "jobs",
        ["target"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )

    op.create_table(
        "relay_tests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        _when("started_at", nullable=False),
        _when("finished_at"),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("banner", sa.Text(), nullable=True),
        sa.Column("ehlo_reply", sa.Text(), nullable=True),
        sa.Column("reverse_name", sa.String(255), nullable=True),
        sa.Column("forward_matches", sa.Boolean(), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_relay_tests_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_tests")),
    )
    op.create_index("ix_relay_tests_address", "relay_tests", ["address"])

    op.create_table(
        "test_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("form", sa.String(64), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("mail_from", sa.Text(), nullable=True),
        sa.Column("rcpt_to", sa.Text(), nullable=True),
        sa.Column("mail_reply", sa.Text(), nullable=True),
        sa.Column("rcpt_reply", sa.Text(), nullable=True),
        sa.Column("data_reply", sa.Text(), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_id"], ["relay_tests.id"], name=op.f("fk_test_tokens_test_id_relay_tests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_tokens")),
        sa.UniqueConstraint("token", name=op.f("uq_test_tokens_token")),
    )
    op.create_index("ix_test_tokens_test_id", "test_tokens", ["test_id"])

    op.create_table(
        "token_arrivals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("delivered_by", sa.String(45), nullable=False),
        sa.Column("mail_from", sa.Text(), nullable=True),
        sa.Column("rcpt_tos", sa.Text(), nullable=True),
        _when("received_at", nullable=False),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_arrivals")),
    )
    op.create_index("ix_token_arrivals_token", "token_arrivals", ["token"])

    op.create_table(
        "relay_test_listings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column(
            "listing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["test_id"],
            ["relay_tests.id"],
            name=op.f("fk_relay_test_listings_test_id_relay_tests"),
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listings.id"],
            name=op.f("fk_relay_test_listings_listing_id_listings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relay_test_listings")),
    )
    op.create_index("ix_relay_test_listings_test_id", "relay_test_listings", ["test_id"])
    op.create_index("ix_relay_test_listings_listing_id", "relay_test_listings", ["listing_id"])

    op.create_table(
        "nominations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("submitter", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("refusal_reason", sa.Text(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("test_id", sa.Integer(), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=True),
        _when("created_at", nullable=False),
        _when("finished_at"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_nominations_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["test_id"], ["relay_tests.id"], name=op.f("fk_nominations_test_id_relay_tests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nominations")),
    )
    op.create_index("ix_nominations_address", "nominations", ["address"])
    op.create_index("ix_nominations_job_id", "nominations", ["job_id"])
    op.create_index("ix_nominations_submitter", "nominations", ["submitter", "created_at"])

    op.create_table(
        "delist_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("requester", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("test_id", sa.Integer(), nullable=True),
        _when("created_at", nullable=False),
        _when("finished_at"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_delist_requests_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["test_id"], ["relay_tests.id"], name=op.f("fk_delist_requests_test_id_relay_tests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delist_requests")),
    )
    op.create_index("ix_delist_requests_address", "delist_requests", ["address"])
    op.create_index("ix_delist_requests_requester", "delist_requests", ["requester"])
    op.create_index("ix_delist_requests_job_id", "delist_requests", ["job_id"])

    op.create_table(
        "policy_networks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("network", sa.String(49), nullable=False),
        sa.Column("family", sa.SmallInteger(), nullable=False),
        sa.Column("first_key", sa.String(32), nullable=False),
        sa.Column("last_key", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _when("created_at", nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
        _when("removed_at"),
        sa.Column("removed_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_networks")),
    )
    op.create_index(
        "ix_policy_networks_range", "policy_networks", ["family", "first_key", "last_key"]
    )


def downgrade() -> None:
    for table in (
        "policy_networks",
        "delist_requests",
        "nominations",
        "relay_test_listings",
        "token_arrivals",
        "test_tokens",
        "relay_tests",
        "jobs",
    ):
        op.drop_table(table)
