"""rbldnsd data files: syntax, values, substitutions and the dataset types' semantics.

The expected answers are what rbldnsd 1.0 answered for the same lines (checked by hand, and
for random files by tests/rbldnsd/test_parity.py).
"""

from __future__ import annotations

import ipaddress

import pytest

from dnsbl.addresses import Network
from dnsbl.index.txt_template import render_txt
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ListingRow
from dnsbl.rbldnsd.data import DatasetType, RbldnsdData
from dnsbl.rbldnsd.ip4set import tie_category


class Answers:
    """The index built from a data file, asked like rbldnsd: (A codes, TXT texts)."""

    def __init__(self, *files: str, kind: DatasetType = DatasetType.AUTO) -> None:
        data = RbldnsdData(kind)
        for i, text in enumerate(files, 1):
            for _ in data.read(f"f{i}", text.splitlines()):
                pass
        self.problems = data.problems
        self.entries = list(data.entries())
        groups = [("c", value, networks) for value, networks in data.groups()]
        groups += [(tie_category("c", r), v, nets) for r, v, nets in data.tie_groups()]
        rows = [
            (
                category,
                net.family,
                net.first,
                net.prefixlen,
                value is None,
                value.code if value else None,
                (value.txt or "") if value else None,
            )
            for category, value, networks in groups
            for net in networks
        ]
        self.index = ZoneIndex.build("z", 1, [ListingRow(*each) for each in rows])

    def __call__(self, address: str) -> tuple[str | None, str | None]:
        """The one value answered for `address` (fails when there are several)."""
        ip = ipaddress.ip_address(address)
        values = self.index.lookup(ip.version, int(ip))
        if not values:
            return None, None
        [value] = values
        return value.code, render_txt(value.txt, address) if value.txt is not None else None

    def all(self, address: str) -> tuple[set[str], set[str]]:
        """Every A code and TXT text answered for `address` (ip4set ties answer several)."""
        ip = ipaddress.ip_address(address)
        values = self.index.lookup(ip.version, int(ip))
        texts = {render_txt(v.txt, address) for v in values if v.txt is not None}
        return {value.code for value in values}, texts

    @property
    def messages(self) -> list[str]:
        return [str(problem) for problem in self.problems]


def test_values_defaults_and_the_per_file_default() -> None:
    answer = Answers(
        ":3:default text $\n"
        "1.2.3.4\n"
        "1.2.3.5 :5\n"
        "1.2.3.6 :6:\n"
        "1.2.3.7 own text $\n"
        "1.2.3.8 :8:txt8 # not a comment\n"
        "1.2.3.9 ; comment\n"
        "1.2.3.11:11:glued\n"
        "9.1.2.9 :1.2.3\n"
        "9.1.2.7\t:8\t:\t w \n",
        "16.0.0.1\n",
    )
    assert answer("1.2.3.4") == ("127.0.0.3", "default text 1.2.3.4")
    assert answer("1.2.3.5") == ("127.0.0.5", "default text 1.2.3.5")
    assert answer("1.2.3.6") == ("127.0.0.6", None)
    assert answer("1.2.3.7") == ("127.0.0.3", "own text 1.2.3.7")
    assert answer("1.2.3.8") == ("127.0.0.8", "txt8 # not a comment")
    assert answer("1.2.3.9") == ("127.0.0.3", "default text 1.2.3.9")
    assert answer("1.2.3.11") == ("127.0.0.11", "glued")
    assert answer("9.1.2.9") == ("1.2.0.3", "default text 9.1.2.9")
    assert answer("9.1.2.7") == ("127.0.0.8", "w")
    # Each file starts again from rbldnsd's default: 127.0.0.2 and no TXT.
    assert answer("16.0.0.1") == ("127.0.0.2", None)
    assert answer("1.2.3.10") == (None, None)


def test_substitution_variables_dollars_and_the_base_template() -> None:
    answer = Answers(
        "$1 var one $\n"
        "1.2.3.7 own $ and $$ and $1 and $2 and $=\n"
        "$1 ignored: the first definition wins\n",
        "16.0.0.2 $1\n",
    )
    assert answer("1.2.3.7") == (
        "127.0.0.2",
        "own 1.2.3.7 and $ and var one $ and $2 and own $ and $$ and $1 and $2 and $=",
    )
    assert answer("16.0.0.2") == ("127.0.0.2", "var one $")
    based = Answers(
        "$= See http://x/bl?$= ($) for $$ $1\n$1 one\n"
        "1.0.0.1 r123\n1.0.0.2\n1.0.0.3 =See other $ here\n1.0.0.4 :4:\n1.0.0.6 :6:t$=x\n"
    )
    assert based("1.0.0.1") == ("127.0.0.2", "See http://x/bl?r123 (1.0.0.1) for $ one")
    assert based("1.0.0.2") == ("127.0.0.2", "See http://x/bl?1.0.0.2 (1.0.0.2) for $ one")
    assert based("1.0.0.3") == ("127.0.0.2", "See other 1.0.0.3 here")
    assert based("1.0.0.4") == ("127.0.0.4", "See http://x/bl?1.0.0.4 (1.0.0.4) for $ one")
    assert based("1.0.0.6") == ("127.0.0.6", "See http://x/bl?t$=x (1.0.0.6) for $ one")


def test_ip4set_prefixes_ranges_and_cidr() -> None:
    answer = Answers(
        "10.1\n10.2.3 :4:abbrev\n!10.2.3.7\n13.1-13.2\n14.1.2.3-14.1.2.10\n"
        "14.1.3.1-5\n127.16-31\n20/8\n"
    )
    assert answer("10.1.9.9")[0] == "127.0.0.2"
    assert answer("10.2.3.8") == ("127.0.0.4", "abbrev")
    assert answer("10.2.3.7") == (None, None)
    assert answer("13.2.255.1")[0] and not answer("13.3.0.0")[0] and not answer("13.0.255.255")[0]
    assert [answer(f"14.1.2.{i}")[0] is not None for i in (2, 3, 10, 11)] == [
        False,
        True,
        True,
        False,
    ]
    assert answer("14.1.3.5")[0] and not answer("14.1.3.6")[0]
    assert answer("127.31.255.255")[0] and not answer("127.32.0.0")[0]
    assert answer("20.255.0.1")[0]


def test_bad_lines_are_reported_and_skipped() -> None:
    answer = Answers(
        "1.2.3.4/24\n5\n1.2.3.9-1.2.3.2\n1.2-1.2.3.4\n7.1.2.3/33\n8.1.2.3 :0\n"
        "9.1.2.3 :300\n9.1.2.6 : 7 :z\n9.1.2.8 :9 junk\n1.2.3.4.5\n$BOGUS x\n"
        "$SOA 0 ns hm 0 1 1 1 1\n$1\n300.1.2.3\n"
    )
    assert answer.entries == []
    assert answer.messages == [
        "f1:1: invalid range (non-zero host part)",
        "f1:2: invalid address",
        "f1:3: invalid address",
        "f1:4: invalid address",
        "f1:5: invalid address",
        "f1:6: invalid A RR",
        "f1:7: invalid A RR",
        "f1:8: invalid A RR",
        "f1:9: unrecognized value for an entry",
        "f1:10: invalid address",
        "f1:11: invalid or unrecognized special entry",
        "f1:12: $SOA ignored: dnsbl takes it from its configuration",
        "f1:13: invalid or unrecognized special entry",
        "f1:14: invalid address",
    ]


def test_ip4set_levels_exclusions_win_and_ties_answer_every_value() -> None:
    answer = Answers(
        "11.0.0.0/25 :9:a\n11.0.0.0/26 :10:b\n!12.0.0.0/25\n12.0.0.0/26\n"
        "2.2.2.0/24\n!2.2.2.0/24\n1.2.3.0/24\n1.2.3.4 :5\n"
    )
    # Both /25 and /26 are /32 units in ip4set: rbldnsd answers both values, and so does dnsbl.
    assert answer.all("11.0.0.5") == ({"127.0.0.9", "127.0.0.10"}, {"a", "b"})
    assert answer.all("11.0.0.100") == ({"127.0.0.9"}, {"a"})
    # An exclusion wins a tie whatever the order: the /26 inside the excluded /25 is not listed.
    assert answer("12.0.0.5") == (None, None)
    assert answer("2.2.2.1") == (None, None)
    assert answer("1.2.3.4")[0] == "127.0.0.5"
    assert answer("1.2.3.5")[0] == "127.0.0.2"


def test_ip4set_ties_answer_at_their_level_only() -> None:
    # Checked against rbldnsd 1.0: the /8 is given twice (A 3 and 7), the range and two single
    # addresses meet at /32 units, and identical values count once.
    answer = Answers(
        ":2:default\n10.0.0.0/8 :3:three $\n10.0.0.0/8 :7:seven\n"
        "10.1.2.3-10.1.2.9 :4:four\n10.1.2.5 :5:five\n10.1.2.5 :5:five\n"
        "10.1.2.6 :4:four\n10.2.0.0/16 :6:six\n10.2.0.0/16 :6:six\n"
        "10.1.2.7 :4:other\n!10.1.2.8\n"
    )
    assert answer.all("10.0.0.1") == ({"127.0.0.3", "127.0.0.7"}, {"three 10.0.0.1", "seven"})
    # More specific units hide the tied /8: ip4set answers the longest level that has a unit.
    assert answer.all("10.1.2.5") == ({"127.0.0.4", "127.0.0.5"}, {"four", "five"})
    assert answer.all("10.1.2.6") == ({"127.0.0.4"}, {"four"})
    assert answer.all("10.1.2.7") == ({"127.0.0.4"}, {"four", "other"})
    assert answer.all("10.1.2.8") == (set(), set())
    assert answer.all("10.2.0.1") == ({"127.0.0.6"}, {"six"})
    assert answer.all("10.1.3.1") == ({"127.0.0.3", "127.0.0.7"}, {"three 10.1.3.1", "seven"})
    assert not answer.problems


def test_ip4trie_keeps_the_first_entry_and_matches_the_longest_prefix() -> None:
    answer = Answers(
        "1.2.3.4\n1.2.3.0/24 :4:net\n1.2.3.0/24 :5:dup\n10.1\n!1.2.3.4\n"
        "20.0.0.0/8 :7\n20.1.0.0/16 :8:x\n!11.0.0.0/25\n11.0.0.0/26\n",
        kind=DatasetType.IP4TRIE,
    )
    assert answer("1.2.3.4") == ("127.0.0.2", None)
    assert answer("1.2.3.5") == ("127.0.0.4", "net")
    assert answer("20.1.1.1") == ("127.0.0.8", "x")
    assert answer("20.2.1.1") == ("127.0.0.7", None)
    assert answer("11.0.0.5")[0] == "127.0.0.2"  # unlike ip4set: the /26 is longer
    assert answer("11.0.0.100") == (None, None)
    assert [m for m in answer.messages if "duplicated" in m] == [
        "f1:3: duplicated entry for 1.2.3.0/24 (the first one is kept)",
        "f1:5: duplicated entry for 1.2.3.4/32 (the first one is kept)",
    ]
    bad = Answers("13.1-13.2\n", kind=DatasetType.IP4TRIE)
    assert bad.messages == ["f1:1: invalid address"]


def test_ip6trie_syntax() -> None:
    answer = Answers(
        ":127.0.1.2: Listed, see $\n2001:21ab:c000/36\n"
        "2001:21ab:def7:4242 :127.0.1.3: This one smells funny\n2605:6001:42::/52\n"
        "!2605:6001:42::bead\n2001:db8 :4\n2001:db8:0:0:0:0:0:1/128 :5:full\n2001\n"
        "2001:db8::1/32\n",
        kind=DatasetType.IP6TRIE,
    )
    assert answer("2001:21ab:c000::1") == ("127.0.1.2", "Listed, see 2001:21ab:c000::1")
    assert answer("2001:21ab:d000::1") == (None, None)
    assert answer("2001:21ab:def7:4242::5") == ("127.0.1.3", "This one smells funny")
    assert answer("2605:6001:42::bead") == (None, None)
    assert answer("2605:6001:42::beef")[0] == "127.0.1.2"
    assert answer("2001:db8::1") == ("127.0.0.5", "full")
    assert answer("2001:db8::2") == ("127.0.0.4", "Listed, see 2001:db8::2")
    assert answer.messages == ["f1:8: invalid address", "f1:9: invalid range (non-zero host part)"]


def test_ip6tset_one_value_and_128_bit_exclusions() -> None:
    answer = Answers(
        ":4:first\n:5:second\n2001:db8:1:2\n2001:db8:1:3 :6:x\n"
        "!2001:db8:1:2::1\n!2001:db8:1:4\n2001:db8::/64\n",
        kind=DatasetType.IP6TSET,
    )
    assert answer("2001:db8:1:2::1") == (None, None)
    assert answer("2001:db8:1:2::2") == ("127.0.0.4", "first")
    assert answer("2001:db8:1:3::2") == ("127.0.0.4", "first")
    assert answer.messages == [
        "f1:6: invalid address for exclusion (should be 128 bits)",
        "f1:7: invalid address",
    ]


def test_auto_reads_ipv4_as_ip4set_and_ipv6_as_ip6trie() -> None:
    answer = Answers(
        ":3:t $\n11.0.0.0/25\n!11.0.0.0/26\n2001:db8::/32\n!2001:db8::1\n::1 :4\n1.2.3.4:5:x\n"
    )
    assert answer("11.0.0.100") == ("127.0.0.3", "t 11.0.0.100")
    assert answer("11.0.0.1") == (None, None)
    assert answer("2001:db8::2") == ("127.0.0.3", "t 2001:db8::2")
    assert answer("2001:db8::1") == (None, None)
    assert answer("1.2.3.4") == ("127.0.0.5", "x")


def test_ip4set_units_merge_back_into_few_cidrs() -> None:
    data = RbldnsdData(DatasetType.IP4SET)
    list(data.read("f", ["10.0.0.0-10.0.3.255", "10.0.4.0-10.0.4.127", "10.0.4.128/25 :3"]))
    networks = {str(net): value for net, value in data.entries()}
    assert set(networks) == {"10.0.0.0/22", "10.0.4.0/25", "10.0.4.128/25"}


@pytest.mark.parametrize(
    ("template", "address", "text"),
    [
        ("a $ b", "1.2.3.4", "a 1.2.3.4 b"),
        ("$$$", "x", "$x"),
        ("$$$$", "x", "$$"),
        ("no dollar", "x", "no dollar"),
        ("$", "::1", "::1"),
    ],
)
def test_render_txt(template: str, address: str, text: str) -> None:
    assert render_txt(template, address) == text


def _by_rank(data: RbldnsdData) -> dict[tuple[int, str | None], set[str]]:
    """What `packed_groups` gives (what an import writes): networks by (rank, A code)."""
    found: dict[tuple[int, str | None], set[str]] = {}
    for rank, value, family, length, starts in data.packed_groups():
        key = (rank, value.code if value else None)
        found.setdefault(key, set()).update(str(Network(family, s, length)) for s in starts)
    return found


def test_single_addresses_and_ranges_meet_in_the_order_read() -> None:
    # The first value read for a /32 unit is the category's, the next one rank 2's: a single
    # address read before a range that covers it comes first, one read after it second.
    data = RbldnsdData(DatasetType.IP4SET)
    lines = ["10.1.2.5 :5", "10.1.2.4-10.1.2.6 :4", "10.1.2.6 :6", "10.9.9.9", "10.9.9.9"]
    list(data.read("f", lines))
    assert _by_rank(data) == {
        (1, "127.0.0.5"): {"10.1.2.5/32"},
        (1, "127.0.0.4"): {"10.1.2.4/32", "10.1.2.6/32"},
        (1, "127.0.0.2"): {"10.9.9.9/32"},
        (2, "127.0.0.4"): {"10.1.2.5/32"},
        (2, "127.0.0.6"): {"10.1.2.6/32"},
    }


def test_packed_groups_hold_what_groups_and_tie_groups_hold() -> None:
    text = "1.2.3.4\n1.2.3.4 :3\n5.6.7.0/24 :4\n5.6.7.8\n!5.6.7.9\n9.9.9.9\n2001:db8::/32\n"
    data = RbldnsdData()
    list(data.read("f", text.splitlines()))
    packed = _by_rank(data)
    expected: dict[tuple[int, str | None], set[str]] = {}
    for value, networks in data.groups():
        expected.setdefault((1, value.code if value else None), set()).update(map(str, networks))
    for rank, value, networks in data.tie_groups():
        expected.setdefault((rank, value.code if value else None), set()).update(map(str, networks))
    assert packed == expected
