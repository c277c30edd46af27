"""`dnsbl list`, `dnsbl delist` and `dnsbl check`: manual operations on listings."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from dnsbl.addresses import Network, parse_networks
from dnsbl.cli.context import Context
from dnsbl.errors import AddressError
from dnsbl.listings.covering import in_force, listings_containing
from dnsbl.listings.manual import list_entries
from dnsbl.listings.rows import Source
from dnsbl.listings.store import Entry
from dnsbl.models import utcnow


def register(subparsers: Any) -> None:
    listing = subparsers.add_parser("list", help="list addresses or networks in a zone")
    listing.add_argument("zone")
    listing.add_argument("addresses", nargs="+", metavar="ADDR", help="address, CIDR or a-b range")
    listing.add_argument("--category", default="manual")
    listing.add_argument("--code", help="A return code (default: the category's or the zone's)")
    listing.add_argument("--txt", help="TXT template ($ = the queried address)")
    listing.add_argument("--reason", help="why; shown to whoever looks the address up")
    listing.add_argument("--exclude", action="store_true", help="add as exclusion (never listed)")
    listing.add_argument("--expires-in", type=float, metavar="DAYS", help="expire after DAYS days")
    listing.set_defaults(handler=_list)

    delisting = subparsers.add_parser("delist", help="end the listings of addresses in a zone")
    delisting.add_argument("zone")
    delisting.add_argument("addresses", nargs="+", metavar="ADDR")
    delisting.add_argument("--category", help="only in this category")
    delisting.add_argument("--reason", default="delisted by operator")
    delisting.set_defaults(handler=_delist)

    check = subparsers.add_parser("check", help="show the listings that cover an address")
    check.add_argument("address")
    check.add_argument("--history", action="store_true", help="include ended listings")
    check.set_defaults(handler=_check)


def _networks(texts: list[str]) -> list[Network]:
    networks: list[Network] = []
    for text in texts:
        try:
            networks.extend(parse_networks(text))
        except AddressError as exc:
            raise AddressError(f"{text}: {exc}") from None
    return networks


def _list(context: Context, args: argparse.Namespace) -> int:
    zone = context.settings.zone(args.zone)
    expires = utcnow() + timedelta(days=args.expires_in) if args.expires_in else None
    entries = [
        Entry(
            net,
            category=args.category,
            excluded=args.exclude,
            code=args.code,
            txt=args.txt,
            reason=args.reason,
            expires_at=expires,
        )
        for net in _networks(args.addresses)
    ]
    result = list_entries(context.store, zone.name, entries, actor="cli", source=Source.MANUAL)
    print(
        f"{zone.name}: {result.added} listed, {result.unchanged} unchanged, "
        f"{result.removed} replaced; serial {result.serial}"
    )
    return 0


def _delist(context: Context, args: argparse.Namespace) -> int:
    zone = context.settings.zone(args.zone)
    result = context.store.end(
        zone.name,
        _networks(args.addresses),
        actor="cli",
        reason=args.reason,
        category=args.category,
    )
    print(f"{zone.name}: {result.removed} delisted; serial {result.serial}")
    return 0 if result.removed else 1


def _check(context: Context, args: argparse.Namespace) -> int:
    listings = listings_containing(context.engine, args.address, active_only=not args.history)
    if not listings:
        print(f"{args.address}: not listed")
        return 1
    for listing in listings:
        state = (
            "ACTIVE"
            if listing.active
            else f"ended {listing.ended_at:%Y-%m-%d %H:%M} ({listing.end_reason})"
        )
        kind = "excluded" if listing.excluded else f"code {listing.code or 'default'}"
        print(
            f"{listing.zone.name}\t{listing.network}\t{listing.category}\t{kind}\t{state}\t"
            f"since {listing.created_at:%Y-%m-%d %H:%M}\t{listing.reason or ''}"
        )
    listed = in_force(listing for listing in listings if listing.active)
    return 0 if listed else 1
