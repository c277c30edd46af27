"""Address text: the fast IPv6 writer says what `ipaddress` says, for any address (hypothesis,
addresses built of groups that are often zero, where the compression rules bite)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from dnsbl.addresses import Network, ipv6_text

_groups = st.lists(
    st.sampled_from([0, 0, 1, 0xFFFF]) | st.integers(0, 0xFFFF), min_size=8, max_size=8
)


@given(groups=_groups, prefixlen=st.integers(0, 128))
def test_ipv6_text_is_what_ipaddress_writes(groups: list[int], prefixlen: int) -> None:
    address = int.from_bytes(b"".join(group.to_bytes(2, "big") for group in groups), "big")
    assert ipv6_text(address) == str(ipaddress.IPv6Address(address))
    first = address >> (128 - prefixlen) << (128 - prefixlen)
    assert str(Network(6, first, prefixlen)) == str(ipaddress.IPv6Network((first, prefixlen)))
