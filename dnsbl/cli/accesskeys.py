"""`dnsbl accesskey …`: issue, list and revoke the access keys of the DNS zones."""

from __future__ import annotations

import argparse
from typing import Any

from dnsbl.cli.context import Context


def register(subparsers: Any) -> None:
    accesskey = subparsers.add_parser(
        "accesskey", help="access keys: names under KEY.<zone> answered from anywhere"
    )
    actions = accesskey.add_subparsers(dest="accesskey_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="issue a key (printed once, stored hashed)")
    create.add_argument("--name", required=True, help="who the key is for (unique)")
    create.add_argument(
        "--daily-quota", type=int, metavar="N", help="queries answered per UTC day (no limit)"
    )
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="show every key and its use today (no secrets)")
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by its name")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_revoke)


def _create(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.access import keys

    issued = keys.create(context.engine, args.name, args.daily_quota)
    quota = issued.info.daily_quota
    print(
        f"access key {issued.info.name!r} ({f'{quota} queries a day' if quota else 'no quota'})"
        ": query d.c.b.a.KEY.<zone>; store the key now, it is not shown again:"
    )
    print(issued.key)
    return 0


def _list(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.access import keys

    print("name\tstate\tdaily quota\tused today")
    for key in keys.list_all(context.engine):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        quota = str(key.daily_quota) if key.daily_quota is not None else "-"
        print(f"{key.name}\t{state}\t{quota}\t{key.used_today}")
    return 0


def _revoke(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.access import keys

    info = keys.revoke(context.engine, args.name)
    print(f"access key {info.name!r} revoked")
    return 0
