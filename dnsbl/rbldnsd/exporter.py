"""Export: a zone's active listings as rbldnsd data (for rbldnsd mirrors) or a BIND zone file.

rbldnsd format. Each (category, family) of the zone becomes one trie dataset — ip4trie or
ip6trie syntax: `network :code:txt`, `:code:` for an entry without TXT, `!network` for an
exclusion — whose longest-prefix match is the index's. A zone with one such dataset is written
as a plain ip4trie/ip6trie file; a zone with several (both families, or several categories of
an aggregate zone, which answer one A record each) as one rbldnsd `combined` file with a
`$DATASET` section per dataset. The header comment says how to load the file. `$SOA`, `$NS` and
`$TTL` lines carry the zone's own, and the RFC 5782 test addresses are written out so that the
mirror answers them as the server does (127.0.0.2 listed, 127.0.0.1 not).

TXT templates are written in rbldnsd's syntax, which is dnsbl's: `$` is the address and `$$`
a dollar sign. One thing has no rbldnsd spelling: the address followed directly by a digit or
`=` (`$1` is a variable to rbldnsd); such a template is written as it is, and a warning says so.

BIND format. `$ORIGIN`, `$TTL`, the SOA and NS records, then `zone_records` (wildcards and names;
see `dnsbl.index.records` for how they answer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy import Engine

from dnsbl.addresses import Network
from dnsbl.config import ZoneSettings
from dnsbl.errors import DnsblError
from dnsbl.index.records import zone_records
from dnsbl.index.values import TEST_LISTED, TEST_UNLISTED, TEST_UNLISTED_MAPPED, Value
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.node.loader import load_index

log = logging.getLogger(__name__)
FORMATS = ("rbldnsd", "bind")
_TRIE = {4: "ip4trie", 6: "ip6trie"}


def export_zone(
    engine: Engine,
    zone: ZoneSettings,
    out: TextIO,
    fmt: str = "rbldnsd",
    *,
    family: int | None = None,
) -> None:
    """Write the active content of `zone` to `out` in `fmt` ("rbldnsd" or "bind")."""
    index = load_index(engine, zone)
    if fmt == "rbldnsd":
        out.writelines(rbldnsd_lines(index, zone, family=family))
    elif fmt == "bind":
        if family is not None:
            raise DnsblError("--family applies to the rbldnsd format only")
        out.writelines(bind_lines(index, zone))
    else:
        raise DnsblError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")


# -- rbldnsd -----------------------------------------------------------------------------------


def rbldnsd_lines(
    index: ZoneIndex, zone: ZoneSettings, *, family: int | None = None
) -> Iterator[str]:
    """The zone as rbldnsd data, one line at a time (see the module docstring)."""
    datasets = _datasets(index, family)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    yield f"# dnsbl export of zone {zone.name}, serial {index.serial}, {stamp}\n"
    if len(datasets) == 1:
        [(_, kind)] = datasets
        yield f"# load it as an {_TRIE[kind]} dataset: rbldnsd ... {zone.name}:{_TRIE[kind]}:FILE\n"
    else:
        yield f"# load it as a combined dataset: rbldnsd ... {zone.name}:combined:FILE\n"
        yield "# (one nested dataset per category and address family)\n"
    yield from _metadata(index, zone)
    for category, kind in datasets:
        if len(datasets) > 1:
            yield f"$DATASET {_TRIE[kind]}:{category} @\n"
        for network, value in _dataset_entries(index, category, kind):
            yield _entry_line(network, value)


def _datasets(index: ZoneIndex, family: int | None) -> list[tuple[str, int]]:
    """(category, family) of every dataset to write; at least one IPv4 one for 127.0.0.2."""
    found = sorted(key for key in index.tables if family is None or key[1] == family)
    if not found:
        found = [("test", family or 4)]
    return found


def _dataset_entries(
    index: ZoneIndex, category: str, family: int
) -> Iterator[tuple[Network, Value | None]]:
    """One dataset's entries, with the test addresses made to answer as the server does."""
    entries: dict[Network, Value | None] = {
        network: value
        for entry_category, network, value in index.entries()
        if entry_category == category and network.family == family
    }
    table = index.tables.get((category, family))
    unlisted = [TEST_UNLISTED[family]] + ([TEST_UNLISTED_MAPPED] if family == 6 else [])
    for address in unlisted:
        if table is not None and table.match(address):
            entries[Network(family, address, 32 if family == 4 else 128)] = None
    first = next(iter(sorted(key for key in index.tables if key[1] == family)), None)
    if first is None or first == (category, family):
        listed = TEST_LISTED[family]
        if index.lookup(family, listed) == (index.test_value,):
            entries[Network(family, listed, 32 if family == 4 else 128)] = index.test_value
    yield from entries.items()


def _entry_line(network: Network, value: Value | None) -> str:
    if value is None:
        return f"!{network}\n"
    if value.txt is None:
        return f"{network} :{value.code}:\n"
    text = value.txt
    if _unspellable(text):
        log.warning(
            "%s: TXT %r has $ before a digit or '=', which rbldnsd reads otherwise", network, text
        )
    return f"{network} :{value.code}:{text}\n"


def _unspellable(template: str) -> bool:
    """Whether the address is followed by a digit or `=` (rbldnsd's `$n` and `$=`)."""
    position = 0
    while (dollar := template.find("$", position)) >= 0:
        following = template[dollar + 1 : dollar + 2]
        if following == "$":
            position = dollar + 2
            continue
        if following and (following.isdigit() or following == "="):
            return True
        position = dollar + 1
    return False


def _metadata(index: ZoneIndex, zone: ZoneSettings) -> Iterator[str]:
    hostmaster = zone.hostmaster
    yield (
        f"$SOA {zone.ttl} {zone.ns[0]} {hostmaster} {index.serial} {zone.refresh} "
        f"{zone.retry} {zone.expire} {zone.negative_ttl}\n"
    )
    yield f"$NS {zone.ttl} {' '.join(zone.ns)}\n"
    yield f"$TTL {zone.ttl}\n"


# -- BIND ----------------------------------------------------------------------------------------


def bind_lines(index: ZoneIndex, zone: ZoneSettings) -> Iterator[str]:
    """The zone as a BIND-style zone file, one line at a time."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    yield f"; dnsbl export of zone {zone.name}, serial {index.serial}, {stamp}\n"
    yield f"$ORIGIN {zone.name}.\n"
    yield f"$TTL {zone.ttl}\n"
    yield (
        f"@ {zone.ttl} IN SOA {zone.ns[0]}. {zone.hostmaster}. {index.serial} {zone.refresh} "
        f"{zone.retry} {zone.expire} {zone.negative_ttl}\n"
    )
    for ns in zone.ns:
        yield f"@ {zone.ttl} IN NS {ns}.\n"
    suffix = "." + zone.name
    for owner, rtype, ttl, rdata in zone_records(index, zone):
        name = owner[: -len(suffix)] if owner.endswith(suffix) else owner + "."
        yield f"{name} {ttl} IN {rtype} {rdata}\n"
