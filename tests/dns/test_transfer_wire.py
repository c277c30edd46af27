"""A full transfer's records written straight as wire (`transfer.WireForm`), walked as a large
zone's are (a range at a time), are the zone's text records (`zone_records`, its segments made
at once) encoded, record for record and in the same order (for a zone of single addresses,
written from its arrays: the same records).

Random zones (hypothesis): nested IPv4 and IPv6 networks, the names the two families share,
exclusions, several categories, TXT templates with `$`, `$$`, none and a long one, and an
overlay of changes on top.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from itertools import pairwise
from unittest.mock import patch

import dns.message
from dnslib import DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsbl.dns import transfer
from dnsbl.dns.zones import ZoneTable
from dnsbl.index import segments
from dnsbl.index.single_addresses import single_addresses
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow
from tests.dns_support import ZONE, make_index, zone_settings
from tests.index.test_difference import _rows

_TXT = [None, "", "t $", "$$ and $", "x" * 240 + " $", "no address"]
_listings = st.builds(lambda row, txt: replace(row, txt=txt), _rows, st.sampled_from(_TXT))


def _records(messages: Iterable[bytes]) -> list[str]:
    return [rrset.to_text() for wire in messages for rrset in dns.message.from_wire(wire).answer]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_listings, min_size=1, max_size=12), added=st.lists(_listings, max_size=4))
def test_the_wire_records_are_the_text_records_encoded(
    rows: list[ListingRow], added: list[ListingRow]
) -> None:
    index = make_index(rows)
    if added:
        changes = [ChangeRecord(2, ChangeAction.ADD, row) for row in added]
        changes.append(ChangeRecord(2, ChangeAction.REMOVE, rows[0]))
        index = index.with_changes(2, changes)
    zone, _ = ZoneTable([zone_settings()]).publish(index)
    assert zone.index is not None
    query = DNSRecord.question(ZONE, "AXFR")
    text = transfer.axfr_messages(query, zone, transfer.default_records(zone.index, zone.settings))
    # The wire records as a large zone's: segments made a few entries' worth at a time, what
    # a range holding more answers read from the arrays.
    with patch.object(segments, "AT_ONCE", 2):
        wire = list(transfer.zone_axfr(query, zone))
    if single_addresses(zone.index) is None:  # the walk's order, byte for byte
        assert [message[2:] for message in wire] == [message[2:] for message in text]
    else:  # straight from the arrays, in address order (AXFR's order is free)
        assert sorted(_records(wire)) == sorted(_records(text))


def _greedy(records: list[bytes], room: int) -> list[list[bytes]]:
    """Records in order, each message taking as many as fit (one too large goes alone)."""
    messages: list[list[bytes]] = [[]]
    used = 0
    for record in records:
        if messages[-1] and used + len(record) > room:
            messages.append([])
            used = 0
        messages[-1].append(record)
        used += len(record)
    return messages


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000) | st.sampled_from([70000, 20000]), max_size=120),
    cuts=st.lists(st.integers(0, 120), max_size=10),
)
def test_messages_take_as_many_records_as_fit(sizes: list[int], cuts: list[int]) -> None:
    records = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    bounds = sorted({0, len(records), *(cut for cut in cuts if cut <= len(records))})
    chunks = [records[a:b] for a, b in pairwise(bounds)]
    query = DNSRecord.question(ZONE, "AXFR")
    header = len(DNSRecord(q=query.q).pack())  # the header and the question
    messages = list(transfer._messages(query, chunks))
    expected = _greedy(records, transfer.MESSAGE_LIMIT - header)
    assert [message[header:] for message in messages] == [b"".join(m) for m in expected]
    assert [int.from_bytes(message[6:8]) for message in messages] == [len(m) for m in expected]
