"""`dnsbl apikey …`: issue, list and revoke the keys of the admin API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dnsbl.cli.context import Context
from dnsbl.models.api import ROLES


def register(subparsers: Any) -> None:
    apikey = subparsers.add_parser("apikey", help="API keys for the admin API")
    actions = apikey.add_subparsers(dest="apikey_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="issue a key (printed once, stored hashed)")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", help="what the key is for (shown in listings)")
    create.set_defaults(handler=_create)
    listing = actions.add_parser("list", help="show every key (never the secrets)")
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(handler=_revoke)


def _create(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.apikeys import create_key

    issued = create_key(context.engine, args.role, args.name)
    print(issued.key)
    print(
        f"key {issued.info.id} ({issued.info.role}, {issued.info.name!r}): "
        "store it now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def _list(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.apikeys import list_keys

    for key in list_keys(context.engine):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        print(f"{key.id}\t{key.role}\t{state}\tlast used {used}\t{key.name}")
    return 0


def _revoke(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.apikeys import revoke_key
    from dnsbl.errors import DnsblError

    info = revoke_key(context.engine, args.key_id)
    if info is None:
        raise DnsblError(f"no API key {args.key_id}")
    print(f"key {info.id} revoked")
    return 0
