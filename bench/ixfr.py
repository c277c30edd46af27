"""IXFR against AXFR on a large zone: what one change costs the primary to send.

Builds the index of N random single IPv4 listings (as a DNS node holds it), applies one
change (an address listed, another delisted), and times the records of a full transfer
against the difference an IXFR sends (`dnsbl.dns.transfer.ixfr_messages`), both encoded as
the TCP messages that go on the wire.

Usage: .venv/bin/python -m bench.ixfr [--count N]
"""

from __future__ import annotations

import argparse
import time

from dnslib import DNSRecord

from bench.common import ZONE, random_singles
from dnsbl.config import ZoneSettings
from dnsbl.dns.transfer import changed_since, ixfr_messages, zone_axfr
from dnsbl.dns.zones import ZoneTable
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    settings = ZoneSettings(name=ZONE, ns=["ns1.example.org"], hostmaster="hostmaster.example.org")
    addresses = random_singles(args.count)
    rows = [ListingRow("bench", 4, address, 32, False, "127.0.0.2", "") for address in addresses]
    table = ZoneTable([settings])
    base = ZoneIndex.build(ZONE, 1, rows)
    table.publish(base)
    change = [
        ChangeRecord(2, ChangeAction.ADD, ListingRow("bench", 4, 0x0A000001, 32, False, None, "")),
        ChangeRecord(
            2, ChangeAction.REMOVE, ListingRow("bench", 4, addresses[0], 32, False, None, "")
        ),
    ]
    zone, _ = table.publish(base.with_changes(2, change))
    axfr_query = DNSRecord.question(ZONE, "AXFR")
    started = time.perf_counter()
    full = sum(len(m) for m in zone_axfr(axfr_query, zone))
    axfr_seconds = time.perf_counter() - started
    found = changed_since(zone, 1)
    assert found is not None
    started = time.perf_counter()
    ixfr_query = DNSRecord.question(ZONE, "IXFR")
    diff = sum(len(m) for m in ixfr_messages(ixfr_query, zone, *found))
    ixfr_seconds = time.perf_counter() - started
    print(f"{args.count:,} listings, one address listed and one delisted:")
    print(f"  AXFR: {axfr_seconds:.2f} s to build, {full / 1e6:.1f} MB")
    print(f"  IXFR: {ixfr_seconds:.2f} s to build, {diff:,} bytes")
    print(f"  IXFR / AXFR: time {ixfr_seconds / axfr_seconds:.3f}, bytes {diff / full:.6f}")


if __name__ == "__main__":
    main()
