"""`dnsbl traps ADDR` and `dnsbl reports ADDR`: the trap hits and reports of an address.

For admins at the console: unlike the public lookup, these show the trap that was hit and the
reporter. `--evidence` adds the kept headers and the start of the body (both redacted).
"""

from __future__ import annotations

import argparse
from typing import Any

from dnsbl.addresses import parse_address
from dnsbl.cli.context import Context
from dnsbl.traps.escalation import source_history, spam_listings
from dnsbl.traps.evidence import EvidenceKind, EvidenceView, evidence_of


def register(subparsers: Any) -> None:
    for name, kind, what in (
        ("traps", EvidenceKind.TRAP, "the spam-trap hits of an address, and its listing"),
        ("reports", EvidenceKind.REPORT, "the spam reports of an address, and its listing"),
    ):
        command = subparsers.add_parser(name, help=f"show {what}")
        command.add_argument("address")
        command.add_argument("--evidence", action="store_true", help="print headers and body")
        command.add_argument("--limit", type=int, default=20, help="at most this many (newest)")
        command.set_defaults(handler=_show, kind=kind)


def _show(context: Context, args: argparse.Namespace) -> int:
    address = str(parse_address(args.address))
    engine = context.engine
    traps = context.settings.traps
    for listing in spam_listings(engine, traps, address):
        until = listing.expires_at.isoformat() if listing.expires_at else "no expiry"
        print(f"listed in {listing.zone.name} as {listing.category} until {until}")
        history = source_history(engine, listing.zone.name, address)
        if history is not None and history.relisted_at is not None and history.removed_at:
            print(f"  listed again after removal on {history.removed_at:%Y-%m-%d}")
    items = evidence_of(engine, address, args.kind, limit=args.limit)
    if not items:
        print(f"no {args.kind} evidence for {address}")
    for item in items:
        _print(item, args.evidence)
    return 0


def _print(item: EvidenceView, evidence: bool) -> None:
    print(f"#{item.id} {item.received_at:%Y-%m-%d %H:%M:%S} UTC {item.kind}")
    for label, value in (
        ("delivered by", item.delivered_by),
        ("HELO", item.helo),
        ("envelope sender", item.mail_from),
        ("subject", item.subject),
        ("message id", item.message_id),
        ("trap", item.trap),
        ("reporter", item.reporter),
        ("listing", item.listing_id),
    ):
        if value is not None:
            print(f"  {label}: {value}")
    if evidence:
        print("  headers:")
        print("\n".join(f"    {line}" for line in item.headers.splitlines()))
        print("  body (first 16 KB):")
        print("\n".join(f"    {line}" for line in item.body.splitlines()))
