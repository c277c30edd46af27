"""PostgreSQL: the listings' and change log's references checked by the store, not per row

On PostgreSQL a foreign key is a trigger call per inserted row: the four references a listing
and its change-log entry carry (zone and value; zone and listing) cost 13 of the 19 seconds
of an import of a million addresses, and would cost two minutes at ten million. The store
is their only writer and takes every id it writes from rows it holds under the zone lock (the
zone row, the values it read or made, the listings it just wrote), and nothing deletes a
zone, a value, a listing or a change, so the references hold by construction there. SQLite
keeps them: there a foreign key is an index probe inside the insert. The models declare them
with `info={"dialects": ("sqlite",)}`, which the migration environment's comparison honours.

Revision ID: 0010_bulk_listing_keys
Revises: 0009_slim_change_log
Create Date: 2026-12-01 17:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0010_bulk_listing_keys"
down_revision = "0009_slim_change_log"
branch_labels = None
depends_on = None

# (table, constraint, column, referenced table)
_KEYS = (
    ("listings", "fk_listings_zone_id_zones", "zone_id", "zones"),
    ("listings", "fk_listings_value_id_listing_values", "value_id", "listing_values"),
    ("changes", "fk_changes_zone_id_zones", "zone_id", "zones"),
    ("changes", "fk_changes_listing_id_listings", "listing_id", "listings"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, _, _ in _KEYS:
        op.drop_constraint(name, table, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, column, referenced in _KEYS:
        op.create_foreign_key(name, table, referenced, [column], ["id"])
