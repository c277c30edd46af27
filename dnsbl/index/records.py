"""A zone's listings as the records of a standard DNS zone (for AXFR and BIND-style export).

The index answers by longest-prefix match; a standard zone can only hold names and wildcards.
This module turns the one into the other so that a standard server (NSD, Knot, BIND) loaded
with the records gives the same A and TXT answers as the index for every address:

- The address space of each family is first flattened into *segments*: maximal runs of
  addresses that share one answer (the tuple of values `ZoneIndex.lookup` gives, so
  categories, exclusions, longest-prefix match and the RFC 5782 test addresses are all
  accounted for, exactly).
- The label tree (octets for IPv4, nibbles for IPv6, both under the same zone) is then walked
  from the apex. At each node a wildcard `*.node` stands for the children whose whole subtree
  has one answer, and the children that differ become explicit names, recursively. A wildcard
  only matches names whose closest encloser is its parent (RFC 4592), so a child that must
  answer *nothing* cannot sit under a wildcard: a name without records does not exist and the
  wildcard would cover it. A node with such a child therefore gets no wildcard, and its listed
  children are written out one by one (each with its own wildcard when it is uniform). That is
  the "expand where needed" case: a /8 with one excluded /32 costs two wildcards and the 255
  other names of the excluded address's /24.
- IPv4 and IPv6 names share labels where octets are single digits (`2.ZONE` is under both
  2.0.0.0/8 and 2000::/4); the walk treats such a node as one and only uses a wildcard that is
  right for both families.

Known differences from the index (they concern no well-formed RFC 5782 query's A answer):

- TXT under a wildcard: the queried address is not known when the record is written, so `$`
  is rendered with the network the wildcard stands for (`10.1.0.0/16`), not the address.
- Names that are not whole addresses (fewer or more labels than an address has) may be
  answered by a wildcard here, where the server answers NXDOMAIN or NODATA; and an IPv4
  name that is also an empty non-terminal of IPv6 names answers NODATA instead of NXDOMAIN.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from dnsbl.addresses import Network, address_text
from dnsbl.config import ZoneSettings
from dnsbl.index.txt_template import render_txt
from dnsbl.index.values import TEST_LISTED, TEST_UNLISTED, TEST_UNLISTED_MAPPED, Value
from dnsbl.index.zone_index import Table, ZoneIndex

Record = tuple[str, str, int, str]  # owner (FQDN, no trailing dot), type, ttl, rdata text
Answer = tuple[Value, ...]
_Ranges = list[tuple[int, int]]  # (low, high) address ranges of one family

_MIXED: None = None  # a subtree whose addresses do not all share one answer
_EMPTY: Answer = ()
_NIBBLES = "0123456789abcdef"
_QUOTED = frozenset('"\\')


@dataclass(frozen=True, slots=True)
class _Family:
    """One address family's shape in the label tree: bits per label and labels per address."""

    family: int
    label_bits: int
    depth: int  # labels in a full address name

    @property
    def bits(self) -> int:
        return self.label_bits * self.depth

    def label(self, index: int) -> str:
        return str(index) if self.family == 4 else _NIBBLES[index]

    def index_of(self, label: str) -> int | None:
        """The child index a label stands for, or None when it is no label of this family."""
        if self.family == 4:
            if label.isdigit() and (label == "0" or not label.startswith("0")):
                value = int(label)
                return value if value < 256 else None
            return None
        return _NIBBLES.find(label) if len(label) == 1 and label in _NIBBLES else None


_V4 = _Family(4, 8, 4)
_V6 = _Family(6, 4, 32)


class _Segments:
    """One family's address space as sorted, disjoint runs of addresses with one answer each."""

    def __init__(
        self, index: ZoneIndex, family: int, bits: int, ranges: _Ranges | None = None
    ) -> None:
        """`ranges`: only the answers inside these (low, high) ranges are needed (all if None).
        Elsewhere the segments may be missing or wrong."""
        self.lows: list[int] = []
        self.highs: list[int] = []
        self.answers: list[Answer] = []
        specials = [TEST_LISTED[family], TEST_UNLISTED[family]]
        if family == 6:
            specials.append(TEST_UNLISTED_MAPPED)
        tables = [table for (_, each), table in index.tables.items() if each == family]
        if len(tables) > 1:
            pieces = _looked_up(index, family, bits, specials, ranges)
        else:
            table = tables[0] if tables else None
            pieces = _flattened(index, table, family, specials, ranges)
        for low, high, answer in pieces:
            if not answer or high < low:
                continue
            if self.highs and self.highs[-1] == low - 1 and self.answers[-1] == answer:
                self.highs[-1] = high
            else:
                self.lows.append(low)
                self.highs.append(high)
                self.answers.append(answer)

    def answer(self, low: int, high: int) -> Answer | None:
        """The one answer of every address in [low, high], or `_MIXED`."""
        i = bisect_left(self.highs, low)
        if i == len(self.highs) or self.lows[i] > high:
            return _EMPTY
        if self.lows[i] <= low and self.highs[i] >= high:
            return self.answers[i]
        return _MIXED

    def children(self, low: int, child_bits: int, count: int) -> dict[int, Answer | None]:
        """The answer of each child of the node at `low` that meets a segment (others: none)."""
        high = low + (count << child_bits) - 1
        found: dict[int, Answer | None] = {}
        i = bisect_left(self.highs, low)
        while i < len(self.lows) and self.lows[i] <= high:
            seg_low, seg_high = self.lows[i], self.highs[i]
            first = (max(seg_low, low) - low) >> child_bits
            last = (min(seg_high, high) - low) >> child_bits
            for child in range(first, last + 1):
                child_low = low + (child << child_bits)
                child_high = child_low + (1 << child_bits) - 1
                whole = seg_low <= child_low and seg_high >= child_high
                # Segments are disjoint: a child met by two of them has two answers.
                found[child] = _MIXED if child in found or not whole else self.answers[i]
            i += 1
        return found


def _entries(
    index: ZoneIndex, table: Table, ranges: _Ranges | None
) -> Iterator[tuple[int, int, int]]:
    """A table's (prefix length, start, value id): all, or those meeting one of `ranges`."""
    if ranges is None:
        yield from table.entries()
        return
    seen: set[tuple[int, int]] = set()
    for low, high in ranges:
        for length, start, value_id in table.entries_meeting(low, high):
            if (length, start) not in seen:  # a short prefix can meet several ranges
                seen.add((length, start))
                yield length, start, value_id


def _looked_up(
    index: ZoneIndex, family: int, bits: int, specials: list[int], ranges: _Ranges | None
) -> Iterator[tuple[int, int, Answer]]:
    """Runs with one answer, asking `lookup` once between each two entry boundaries."""
    top = (1 << bits) - 1
    points = {0}
    for (_, each), table in index.tables.items():
        if each == family:
            for length, start, _ in _entries(index, table, ranges):
                points.add(start)
                points.add(start + (1 << (bits - length)))
    for low, high in ranges or ():
        points.update((low, high + 1))
    for address in specials:
        points.update((address, address + 1))
    starts = sorted(p for p in points if p <= top)
    for i, low in enumerate(starts):
        high = starts[i + 1] - 1 if i + 1 < len(starts) else top
        yield low, high, index.lookup(family, low)


def _flattened(
    index: ZoneIndex, table: Table | None, family: int, specials: list[int], ranges: _Ranges | None
) -> Iterator[tuple[int, int, Answer]]:
    """Runs with one answer for a family with one table: one sweep of its nested CIDRs.

    The test addresses (`specials`) are cut out and answered by `lookup` itself.
    """
    values = index.values
    bits = 32 if family == 4 else 128
    pieces: list[tuple[int, int, Answer]] = []

    def emit(low: int, high: int, value_id: int) -> None:
        value = values[value_id]
        if low <= high and value is not None:
            pieces.append((low, high, (value,)))

    if table is not None:
        rows = sorted(
            (start, length, value_id) for length, start, value_id in _entries(index, table, ranges)
        )
        stack: list[tuple[int, int]] = []  # (last address, value id) of the open networks
        position = 0
        previous = (-1, -1)
        for start, length, value_id in rows:
            if (start, length) == previous:
                continue  # the same network twice: the level's bisection finds the first
            previous = (start, length)
            while stack and stack[-1][0] < start:
                last, open_id = stack.pop()
                emit(position, last, open_id)
                position = last + 1
            if stack:
                emit(position, start - 1, stack[-1][1])
            position = start
            stack.append((start + (1 << (bits - length)) - 1, value_id))
        while stack:
            last, open_id = stack.pop()
            emit(position, last, open_id)
            position = last + 1
    cut: list[tuple[int, int, Answer]] = []
    for low, high, answer in pieces:
        for special in sorted(specials):
            if low <= special <= high:
                cut.append((low, special - 1, answer))
                low = special + 1
        cut.append((low, high, answer))
    cut += [(address, address, index.lookup(family, address)) for address in specials]
    cut.sort(key=lambda piece: piece[0])
    return iter(cut)


@dataclass(frozen=True, slots=True)
class _Node:
    """A name in the label tree: its labels (most significant first) and each family's start."""

    labels: tuple[str, ...]
    v4: int | None
    v6: int | None

    def states(self) -> Iterator[tuple[_Family, int]]:
        if self.v4 is not None:
            yield _V4, self.v4
        if self.v6 is not None:
            yield _V6, self.v6


class _Writer:
    """Walks the label tree of one zone and yields its records."""

    def __init__(
        self, index: ZoneIndex, zone: ZoneSettings, ranges: dict[int, _Ranges] | None = None
    ) -> None:
        self.zone = zone.name
        self.ttl = zone.ttl
        self.segments = {
            family: _Segments(index, family, bits, ranges[family] if ranges else None)
            for family, bits in ((4, 32), (6, 128))
        }

    def owner(self, labels: tuple[str, ...]) -> str:
        return ".".join((*reversed(labels), self.zone))

    def walk(self, node: _Node) -> Iterator[Record]:
        depth = len(node.labels)
        if node.v6 is None and node.v4 is not None and depth == _V4.depth - 1:
            yield from self.leaves(node, _V4, node.v4)
            return
        if node.v4 is None and node.v6 is not None and depth == _V6.depth - 1:
            yield from self.leaves(node, _V6, node.v6)
            return
        for fam, start in node.states():
            if depth == fam.depth:
                answer = self.segments[fam.family].answer(start, start)
                if answer:
                    text = address_text(fam.family, start)
                    yield from self.records(self.owner(node.labels), answer, text)
        children = self.children(node)
        if not children:
            return
        wildcard = self.wildcard_answer(node, children)
        if wildcard:
            fam, start = next(node.states())
            network = Network(fam.family, start, depth * fam.label_bits)
            yield from self.records(self.owner((*node.labels, "*")), wildcard, str(network))
        for label in sorted(children, key=_label_order):
            yield from self.subtree(node, label, children, wildcard)

    def subtree(
        self, node: _Node, label: str, children: dict[str, Answer | None], wildcard: Answer | None
    ) -> Iterator[Record]:
        """The records of the child `label` of `node` and below (none for a child that meets
        no listed address, or that the node's wildcard answers)."""
        if label not in children:
            return
        answer = children[label]
        if answer is _MIXED:
            yield from self.walk(self.child(node, label))
        elif answer != wildcard:
            yield from self.uniform(self.child(node, label), answer)

    def leaves(self, node: _Node, fam: _Family, start: int) -> Iterator[Record]:
        """The records of a node of one family whose children are whole addresses.

        The common case of a large zone (a /24 with a few listed addresses), kept short.
        """
        count = 1 << fam.label_bits
        found = self.segments[fam.family].children(start, 0, count)
        wildcard: Answer | None = None
        owner = self.owner(node.labels)
        if len(found) == count:
            counts = Counter(found.values())
            wildcard = counts.most_common(1)[0][0]
            network = Network(fam.family, start, fam.bits - fam.label_bits)
            yield from self.records("*." + owner, wildcard or (), str(network))
        label = fam.label
        for child in sorted(found):
            answer = found[child]
            if answer != wildcard and answer:
                text = address_text(fam.family, start + child)
                yield from self.records(f"{label(child)}.{owner}", answer, text)

    def uniform(self, node: _Node, answer: Answer) -> Iterator[Record]:
        """The records of a node whose whole subtree has one (non-empty) answer."""
        depth = len(node.labels)
        deeper = None
        for fam, start in node.states():
            if depth == fam.depth:
                text = address_text(fam.family, start)
                yield from self.records(self.owner(node.labels), answer, text)
            elif deeper is None:
                deeper = Network(fam.family, start, depth * fam.label_bits)
        if deeper is not None:
            yield from self.records(self.owner((*node.labels, "*")), answer, str(deeper))

    def children(self, node: _Node) -> dict[str, Answer | None]:
        """The children of `node` that meet a listed address of either family, with answers.

        A child label is a child of both families where an octet and a nibble share it; its
        answer is then the one both families' subtrees give, or `_MIXED`.
        """
        depth = len(node.labels)
        per_family: list[tuple[_Family, dict[int, Answer | None]]] = []
        labels: set[str] = set()
        for fam, start in node.states():
            if depth >= fam.depth:
                continue
            child_bits = fam.bits - (depth + 1) * fam.label_bits
            found = self.segments[fam.family].children(start, child_bits, 1 << fam.label_bits)
            per_family.append((fam, found))
            labels.update(fam.label(child) for child in found)
        result: dict[str, Answer | None] = {}
        for label in labels:
            answers = set()
            for fam, found in per_family:
                index = fam.index_of(label)
                if index is not None:
                    answers.add(found.get(index, _EMPTY))
            answer = answers.pop() if len(answers) == 1 else _MIXED
            result[label] = answer
        return result

    @staticmethod
    def child(node: _Node, label: str) -> _Node:
        depth = len(node.labels)
        starts: dict[int, int | None] = {4: None, 6: None}
        for fam, start in node.states():
            index = fam.index_of(label) if depth < fam.depth else None
            if index is not None:
                starts[fam.family] = start + (index << (fam.bits - (depth + 1) * fam.label_bits))
        return _Node((*node.labels, label), starts[4], starts[6])

    def wildcard_answer(self, node: _Node, children: dict[str, Answer | None]) -> Answer | None:
        """The answer `*.node` should give, or None when the node must have no wildcard.

        A wildcard is only possible when every child label meets a listed address: a child
        that must answer nothing cannot be kept from the wildcard (it would not exist).
        """
        depth = len(node.labels)
        present = {fam.family for fam, _ in node.states() if depth < fam.depth}
        # 256 octets, 16 nibbles; together 262, since nibbles 0-9 are octet labels too.
        labels = 262 if present == {4, 6} else 256 if present == {4} else 16
        if len(children) < labels:
            return None
        counts = Counter(answer for answer in children.values() if answer is not _MIXED)
        if not counts:
            return None
        return counts.most_common(1)[0][0]

    def records(self, owner: str, answer: Answer, text: str) -> Iterator[Record]:
        if len(answer) == 1:
            [value] = answer
            yield owner, "A", self.ttl, value.code
            if value.txt is not None:
                yield owner, "TXT", self.ttl, txt_rdata(render_txt(value.txt, text))
            return
        codes = dict.fromkeys(value.code for value in answer)
        for code in codes:
            yield owner, "A", self.ttl, code
        texts = dict.fromkeys(
            render_txt(value.txt, text) for value in answer if value.txt is not None
        )
        for txt in texts:
            yield owner, "TXT", self.ttl, txt_rdata(txt)


def _label_order(label: str) -> tuple[int, int, str]:
    """Numeric labels in numeric order, then the hex letters."""
    return (0, int(label), "") if label.isdigit() else (1, 0, label)


def txt_rdata(text: str) -> str:
    """`text` as TXT rdata in zone file syntax: quoted strings of at most 255 bytes each."""
    if len(text) <= 255 and text.isascii() and text.isprintable() and not _QUOTED & set(text):
        return f'"{text}"'
    data = text.encode()
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return " ".join('"' + "".join(_escape(byte) for byte in chunk) + '"' for chunk in chunks)


def _escape(byte: int) -> str:
    if byte in (0x22, 0x5C):
        return "\\" + chr(byte)
    if 0x20 <= byte < 0x7F:
        return chr(byte)
    return f"\\{byte:03d}"


def top_labels(network: Network) -> set[str]:
    """The labels just under the apex whose names can answer for `network`."""
    fam = _V4 if network.family == 4 else _V6
    shift = fam.bits - fam.label_bits
    return {fam.label(i) for i in range(network.first >> shift, (network.last >> shift) + 1)}


def apex_may_have_wildcard(index: ZoneIndex) -> bool:
    """Whether the zone of `index` may have a wildcard at the apex, which would make every
    top-level label depend on all the others: only when every one of its 262 labels meets a
    listed address, which needs IPv6 listings under all of a000::/4 … f000::/4. Checked as
    whether any IPv6 listing is under a000::/4 or above."""
    high = (1 << 128) - 1
    return any(
        any(True for _ in table.entries_meeting(0xA << 124, high))
        for (_, family), table in index.tables.items()
        if family == 6
    )


def zone_records(index: ZoneIndex, zone: ZoneSettings) -> Iterator[Record]:
    """The zone's data records as a standard DNS zone.

    Yields (owner FQDN without trailing dot, "A" or "TXT", ttl, rdata text); the apex SOA and
    NS are not included. A standard server loaded with them answers A queries for every
    address as `index.lookup` does (see the module docstring for the TXT difference).
    """
    writer = _Writer(index, zone)
    yield from writer.walk(_Node((), 0, 0))
