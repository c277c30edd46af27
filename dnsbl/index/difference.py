"""The condensed difference (RFC 1995) between two serials' zone records, from the changes.

An IXFR sends the records only one of two zones has. Both zones are `zone_records` of an
index, and an address's answer can only differ between them inside the networks the change
log names. So the difference is found under the smallest names that contain the changes,
without walking the rest of the zone:

- Start at the deepest name that holds a changed network (the /24 of a /32, the /16 of a
  /20). How its parent writes it depends only on the name's *answer*: one answer for its whole
  subtree, none, or mixed (`records._Writer.children`), and the parent's wildcard depends only
  on its children's answers. When the answer is the same in both serials, nothing outside the
  name's subtree changes: every record there is the same in both zones.
- When the answer differs, the parent may write the name another way and pick another
  wildcard, so go up one label and ask again; a top-level label (a child of the apex) is as
  far as it goes, since the apex never has a wildcard here (checked first, see
  `records.apex_may_have_wildcard`).
- The difference is then the records of those names' subtrees in each serial, compared.
  (For a change of more than `CLIMB_LIMIT` networks, the top-level labels they touch are the
  names: one walk per label costs less than following each network up.)
  A name whose answer is one answer (or none) in both serials has the same records in both.

IPv4 and IPv6 names share labels where octets are single digits (`1.2.ZONE` is under
2.1.0.0/16 and 2100::/8); a name's answer there is the one both families give (see
`records._Writer.children`), so a shared name is treated as one, as the zone walk does.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from dnsbl.addresses import Network
from dnsbl.config import ZoneSettings
from dnsbl.index.records import (
    _V4,
    _V6,
    Record,
    TextForm,
    _Node,
    _Writer,
    apex_may_have_wildcard,
    top_labels,
)
from dnsbl.index.segments import MIXED, Answer, Ranges
from dnsbl.index.zone_index import ZoneIndex

# Names are tuples of labels, most significant first; () is the apex.
_Name = tuple[str, ...]
CLIMB_LIMIT = 2000  # changed networks up to which each is followed from its own smallest name


def zone_difference(
    old: ZoneIndex,
    new: ZoneIndex,
    zone: ZoneSettings,
    networks: Iterable[Network],
    climb_limit: int = CLIMB_LIMIT,
) -> tuple[set[Record], set[Record]] | None:
    """The records only `old`'s zone has and those only `new`'s has, when the answers of the
    two indexes differ only inside `networks`; None when the apex of either may hold a
    wildcard (then every name matters: send the whole zone)."""
    if apex_may_have_wildcard(old) or apex_may_have_wildcard(new):
        return None
    networks = list(networks)
    names: set[_Name] = set()
    for network in networks:
        for start in _deepest_names(network):
            # Climbing costs a few range reads per network (more on an index with a large
            # overlay of changes); past `climb_limit` networks the top-level labels they
            # touch, read once each, cost less.
            if len(networks) > climb_limit:
                names.add(start[:1])
                continue
            name, mixed = _climbed(old, new, zone, start)
            if mixed or len(name) == 1:  # else its records are the same in both serials
                names.add(name)
    # A name inside another one's subtree is already counted with it.
    roots = {name for name in names if not any(name[:i] in names for i in range(1, len(name)))}
    before: set[Record] = set()
    after: set[Record] = set()
    for name in roots:
        before |= _subtree_records(old, zone, name)
        after |= _subtree_records(new, zone, name)
    return before - after, after - before


def _deepest_names(network: Network) -> list[_Name]:
    """The deepest names whose subtrees hold all of `network`: one, or a top-level label per
    child of the apex it spans when it is wider than one label (a /7, a /0)."""
    fam = _V4 if network.family == 4 else _V6
    depth = min(network.prefixlen // fam.label_bits, fam.depth)
    if depth == 0:
        return [(label,) for label in sorted(top_labels(network))]
    labels = []
    for level in range(depth):
        shift = fam.bits - (level + 1) * fam.label_bits
        labels.append(fam.label(network.first >> shift & ((1 << fam.label_bits) - 1)))
    return [tuple(labels)]


def _node(name: _Name) -> _Node:
    """The label-tree node of `name`, with the start of each family it is a name of."""
    node = _Node((), 0, 0)
    for label in name:
        node = _Writer.child(node, label)
    return node


def _ranges(node: _Node) -> dict[int, Ranges]:
    """Each family's addresses under `node`."""
    ranges: dict[int, Ranges] = {4: [], 6: []}
    depth = len(node.labels)
    for fam, start in node.states():
        size = 1 << (fam.bits - depth * fam.label_bits)
        ranges[fam.family].append((start, start + size - 1))
    return ranges


def _answer(index: ZoneIndex, zone: ZoneSettings, node: _Node) -> Answer | None:
    """The answer of `node`'s whole subtree as its parent sees it (`_Writer.children`)."""
    writer = _Writer(index, zone, TextForm(zone), _ranges(node))
    depth = len(node.labels)
    answers = set()
    for fam, start in node.states():
        size = 1 << (fam.bits - depth * fam.label_bits)
        answers.add(writer.segments[fam.family].answer(start, start + size - 1))
    return answers.pop() if len(answers) == 1 else MIXED


def _climbed(old: ZoneIndex, new: ZoneIndex, zone: ZoneSettings, name: _Name) -> tuple[_Name, bool]:
    """`name`, or its nearest ancestor whose answer is the same in both serials (at most a
    top-level label), and whether that answer is mixed (False for a top-level label that
    differs)."""
    while len(name) > 1:
        node = _node(name)
        answer = _answer(old, zone, node)
        if answer == _answer(new, zone, node):
            return name, answer is MIXED
        name = name[:-1]
    return name, False


def _subtree_records(index: ZoneIndex, zone: ZoneSettings, name: _Name) -> set[Record]:
    """The records `zone_records` gives for `name` and below, read from its addresses alone.

    A top-level label is written as the apex writes it (the apex has no wildcard). A deeper
    name is only asked for when its answer is mixed in both serials: its records are its
    walk. (When it is one answer or none in both, its records are the same in both serials.)
    """
    node = _node(name)
    writer = _Writer(index, zone, TextForm(zone), _ranges(node))
    if len(name) == 1:
        root = _Node((), 0, 0)
        return set(chain.from_iterable(writer.subtree(root, name[0], writer.children(root), None)))
    return set(chain.from_iterable(writer.walk(node)))
