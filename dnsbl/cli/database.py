"""`dnsbl db upgrade`: the schema, through Alembic only."""

from __future__ import annotations

import argparse
from typing import Any

from dnsbl.cli.context import Context


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="database schema")
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = actions.add_parser("upgrade", help="apply migrations up to the newest")
    upgrade.set_defaults(handler=_upgrade)


def _upgrade(context: Context, args: argparse.Namespace) -> int:
    context.migrate()
    print(f"database at {context.engine.url.render_as_string()} is up to date")
    return 0
