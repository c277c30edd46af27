"""A zone's listings as the records of a standard DNS zone (for AXFR and BIND-style export).

The index answers by longest-prefix match; a standard zone can only hold names and wildcards.
This module turns the one into the other so that a standard server (NSD, Knot, BIND) loaded
with the records gives the same A and TXT answers as the index for every address:

- The address space of each family is first flattened into *segments*: maximal runs of
  addresses that share one answer (`dnsbl.index.segments`).
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
  right for both families. Below a node of one family — nearly every name of a large zone —
  the same rules are applied straight to the segments' lists (`_Writer.one_family`), without
  a node object per name, and a run of nodes with one child each is passed in one step.
- The walk decides names and answers; a `RecordForm` writes them: as zone-file text
  (`TextForm`, for export and for comparing serials) or as wire records (the transfers').

Known differences from the index (they concern no well-formed RFC 5782 query's A answer):

- TXT under a wildcard: the queried address is not known when the record is written, so `$`
  is rendered with the network the wildcard stands for (`10.1.0.0/16`), not the address.
- Names that are not whole addresses (fewer or more labels than an address has) may be
  answered by a wildcard here, where the server answers NXDOMAIN or NODATA; and an IPv4
  name that is also an empty non-terminal of IPv6 names answers NODATA instead of NXDOMAIN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Generic, Protocol, TypeVar

from dnsbl.addresses import Network, address_text
from dnsbl.config import ZoneSettings
from dnsbl.index.segments import EMPTY, MIXED, Answer, Ranges, Run, Segments, children_of
from dnsbl.index.txt_template import render_txt
from dnsbl.index.zone_index import ZoneIndex

Record = tuple[str, str, int, str]  # owner (FQDN, no trailing dot), type, ttl, rdata text
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

_NIBBLES = "0123456789abcdef"
_QUOTED = frozenset('"\\')
_OCTETS = [str(octet) for octet in range(256)]


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
        return _OCTETS[index] if self.family == 4 else _NIBBLES[index]

    def shift(self, depth: int) -> int:
        """The bits of an address below a node at `depth`."""
        return self.bits - depth * self.label_bits

    def size(self, depth: int) -> int:
        """The addresses under a node at `depth`."""
        return 1 << self.shift(depth)

    def deepest(self, low: int, high: int) -> tuple[int, int]:
        """The depth and first address of the deepest node holding [low, high]."""
        depth = min((self.bits - (low ^ high).bit_length()) // self.label_bits, self.depth)
        shift = self.shift(depth)
        return depth, low >> shift << shift

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


def _labels(family: int, start: int, depth: int) -> list[str]:
    """The first `depth` labels of the address `start`, most significant first."""
    if family == 4:
        return [_OCTETS[start >> (24 - 8 * i) & 255] for i in range(depth)]
    return list(f"{start:032x}"[:depth])


class RecordForm(Protocol[R_co]):
    """How the walk's names are written as records (each method: the records of one name)."""

    def named(self, labels: tuple[str, ...], answer: Answer, text: str) -> Sequence[R_co]:
        """The name of `labels` (most significant first, maybe ending in `*`); `text` is
        what `$` in a TXT template stands for there."""
        ...

    def address(self, family: int, address: int, answer: Answer) -> Sequence[R_co]:
        """The name of `address`."""
        ...

    def wildcard(self, family: int, start: int, depth: int, answer: Answer) -> Sequence[R_co]:
        """`*` under the first `depth` labels (octets or nibbles) of `start`."""
        ...


class TextForm:
    """Records as zone-file text: (owner FQDN, "A" or "TXT", TTL, data)."""

    def __init__(self, zone: ZoneSettings) -> None:
        self.zone = zone.name
        self.ttl = zone.ttl

    def named(self, labels: tuple[str, ...], answer: Answer, text: str) -> list[Record]:
        return self.records(".".join((*reversed(labels), self.zone)), answer, text)

    def address(self, family: int, address: int, answer: Answer) -> list[Record]:
        labels = _labels(family, address, _V4.depth if family == 4 else _V6.depth)
        owner = ".".join((*reversed(labels), self.zone))
        return self.records(owner, answer, address_text(family, address))

    def wildcard(self, family: int, start: int, depth: int, answer: Answer) -> list[Record]:
        owner = ".".join(("*", *reversed(_labels(family, start, depth)), self.zone))
        fam = _V4 if family == 4 else _V6
        return self.records(owner, answer, str(Network(family, start, depth * fam.label_bits)))

    def records(self, owner: str, answer: Answer, text: str) -> list[Record]:
        """A records for the answer's distinct codes, then TXT for its distinct texts."""
        ttl = self.ttl
        found: list[Record] = [
            (owner, "A", ttl, code) for code in dict.fromkeys(value.code for value in answer)
        ]
        texts = dict.fromkeys(
            render_txt(value.txt, text) for value in answer if value.txt is not None
        )
        found += [(owner, "TXT", ttl, txt_rdata(txt)) for txt in texts]
        return found


class _Writer(Generic[R]):
    """Walks the label tree of one zone and yields its records in `form`."""

    def __init__(
        self,
        index: ZoneIndex,
        zone: ZoneSettings,
        form: RecordForm[R],
        ranges: dict[int, Ranges] | None = None,
    ) -> None:
        self.form = form
        self.segments = {
            family: Segments(index, family, bits, ranges[family] if ranges else None)
            for family, bits in ((4, 32), (6, 128))
        }

    def walk(self, node: _Node) -> Iterator[Sequence[R]]:
        depth = len(node.labels)
        if node.v4 is None or node.v6 is None:  # a name of one family: nearly every name
            fam, start = next(node.states())
            if depth < fam.depth:
                yield from self.one_family(fam, start, depth)
                return
        form = self.form
        for fam, start in node.states():
            if depth == fam.depth:
                answer = self.segments[fam.family].answer(start, start)
                if answer:
                    yield form.named(node.labels, answer, address_text(fam.family, start))
        children = self.children(node)
        if not children:
            return
        wildcard = self.wildcard_answer(node, children)
        if wildcard:
            fam, start = next(node.states())
            network = Network(fam.family, start, depth * fam.label_bits)
            yield form.named((*node.labels, "*"), wildcard, str(network))
        for label in children:
            yield from self.subtree(node, label, children, wildcard)

    def subtree(
        self, node: _Node, label: str, children: dict[str, Answer | None], wildcard: Answer | None
    ) -> Iterator[Sequence[R]]:
        """The records of the child `label` of `node` and below (none for a child that meets
        no listed address, or that the node's wildcard answers)."""
        if label not in children:
            return
        answer = children[label]
        if answer is MIXED:
            yield from self.walk(self.child(node, label))
        elif answer != wildcard:
            yield from self.uniform(self.child(node, label), answer)

    def one_family(self, fam: _Family, start: int, depth: int) -> Iterator[Sequence[R]]:
        """The records of a node of one family whose addresses do not all share one answer,
        and of everything under it: the rules of `walk`, on the segments' lists (no node
        object or generator per name: a transfer's records pass through here by the
        million). A node of more entries than its segments should be made for at once has
        its children's answers read from the arrays, and is taken a child at a time."""
        segments = self.segments[fam.family]
        size = fam.size(depth)
        if segments.small(start, start + size - 1):
            run, first, end = segments.span(start, start + size - 1)
            out: list[R] = []
            if end > first:
                self._fill(fam, run, start, depth, first, end, out)
            yield out
            return
        listed = segments.listed_within(start, start + size - 1)
        if listed is not None:
            # Only the entries inside answer: the nodes down to the deepest holding them all
            # have one child each (as `_fill` passes them).
            shared, node = fam.deepest(*listed)
            if shared > depth:
                answer = segments.answer_in(node, node + fam.size(shared) - 1)
                if answer is MIXED:
                    yield from self.one_family(fam, node, shared)
                elif answer:
                    yield self._uniform(fam, node, shared, answer)
                return
        step = size >> fam.label_bits
        kids = [
            (child, answer)
            for child in range(start, start + size, step)
            if (answer := segments.answer_in(child, child + step - 1)) is not EMPTY
        ]
        wildcard = _wildcard([answer for _, answer in kids], 1 << fam.label_bits)
        if wildcard is not None:
            yield self.form.wildcard(fam.family, start, depth, wildcard)
        for child, answer in kids:
            if answer is MIXED:
                yield from self.one_family(fam, child, depth + 1)
            elif answer is not wildcard:
                yield self._uniform(fam, child, depth + 1, answer)

    def _fill(
        self, fam: _Family, run: Run, start: int, depth: int, first: int, end: int, out: list[R]
    ) -> None:
        """Append the records of the mixed node of `fam` at `start` and below to `out`; the
        segments meeting it are run[first:end]."""
        lows, highs, answers = run
        # The deepest node holding every address met: the nodes down to it have one child
        # each, so no wildcard and no record of their own.
        shared, node = fam.deepest(
            max(lows[first], start), min(highs[end - 1], start + fam.size(depth) - 1)
        )
        if shared > depth:
            depth, start = shared, node
            last = start + fam.size(depth) - 1
            if end - first == 1 and lows[first] <= start and highs[first] >= last:
                out += self._uniform(fam, start, depth, answers[first])
                return
        if depth == fam.depth - 1:
            self._leaves(fam, run, start, first, end, out)
            return
        count = 1 << fam.label_bits
        kids = children_of(run, start, fam.shift(depth + 1), count, first, end)
        wildcard = _wildcard([answer for _, answer, _, _ in kids], count)
        if wildcard is not None:
            out += self.form.wildcard(fam.family, start, depth, wildcard)
        leaves = depth + 2 == fam.depth  # the children's children are addresses
        wildcard_of = self.form.wildcard  # (the children are not addresses: see above)
        family = fam.family
        for child, answer, child_first, child_end in kids:
            if answer is MIXED and leaves:  # the common case, without the narrowing above
                self._leaves(fam, run, child, child_first, child_end, out)
            elif answer is MIXED:
                self._fill(fam, run, child, depth + 1, child_first, child_end, out)
            elif answer is not wildcard:
                out += wildcard_of(family, child, depth + 1, answer)

    def _leaves(
        self, fam: _Family, run: Run, start: int, first: int, end: int, out: list[R]
    ) -> None:
        """Append the records of a mixed node whose children are addresses (each meets one
        segment at most)."""
        lows, highs, answers = run
        address_of = self.form.address
        family = fam.family
        count = 1 << fam.label_bits
        last = start + count - 1
        if end - first == 1 and not (lows[first] <= start and highs[first] >= last):
            # the common case: some of its addresses, of one answer
            answer = answers[first]
            for address in range(max(lows[first], start), min(highs[first], last) + 1):
                out += address_of(family, address, answer)
            return
        spans = [(max(lows[i], start), min(highs[i], last), answers[i]) for i in range(first, end)]
        each = [answer for low, high, answer in spans for _ in range(low, high + 1)]
        wildcard = _wildcard(each, count)  # (when every address is listed)
        if wildcard is not None:
            out += self.form.wildcard(family, start, fam.depth - 1, wildcard)
        for low, high, answer in spans:
            if answer is not wildcard:
                for address in range(low, high + 1):
                    out += address_of(family, address, answer)

    def _uniform(self, fam: _Family, start: int, depth: int, answer: Answer) -> Sequence[R]:
        """The records of a node of one family whose whole subtree has one answer."""
        if depth == fam.depth:
            return self.form.address(fam.family, start, answer)
        return self.form.wildcard(fam.family, start, depth, answer)

    def uniform(self, node: _Node, answer: Answer) -> Iterator[Sequence[R]]:
        """The records of a node whose whole subtree has one (non-empty) answer."""
        depth = len(node.labels)
        deeper = None
        for fam, start in node.states():
            if depth == fam.depth:
                text = address_text(fam.family, start)
                yield self.form.named(node.labels, answer, text)
            elif deeper is None:
                deeper = Network(fam.family, start, depth * fam.label_bits)
        if deeper is not None:
            yield self.form.named((*node.labels, "*"), answer, str(deeper))

    def children(self, node: _Node) -> dict[str, Answer | None]:
        """The children of `node` that meet a listed address of either family, with answers,
        in label order.

        A child label is a child of both families where an octet and a nibble share it; its
        answer is then the one both families' subtrees give, or `MIXED`.
        """
        depth = len(node.labels)
        per_family: list[tuple[_Family, dict[int, Answer | None]]] = []
        labels: set[str] = set()
        for fam, start in node.states():
            if depth >= fam.depth:
                continue
            child_bits = fam.shift(depth + 1)
            found = self.segments[fam.family].children(start, child_bits, 1 << fam.label_bits)
            per_family.append((fam, found))
            labels.update(fam.label(child) for child in found)
        result: dict[str, Answer | None] = {}
        for label in sorted(labels, key=_label_order):
            answers = set()
            for fam, found in per_family:
                index = fam.index_of(label)
                if index is not None:
                    answers.add(found.get(index, EMPTY))
            answer = answers.pop() if len(answers) == 1 else MIXED
            result[label] = answer
        return result

    @staticmethod
    def child(node: _Node, label: str) -> _Node:
        depth = len(node.labels)
        starts: dict[int, int | None] = {4: None, 6: None}
        for fam, start in node.states():
            index = fam.index_of(label) if depth < fam.depth else None
            if index is not None:
                starts[fam.family] = start + (index << fam.shift(depth + 1))
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
        return _wildcard(list(children.values()), labels)


def _wildcard(answers: Sequence[Answer | None], count: int) -> Answer | None:
    """The answer of the wildcard of a node whose children answer `answers` (those that meet
    a listed address) of its `count`: none unless every child is there, else the answer
    given most often by a child with one answer (of equals, the first given), if any is."""
    if len(answers) < count:
        return None
    counts: dict[Answer, int] = {}
    for answer in answers:
        if answer is not MIXED:
            counts[answer] = counts.get(answer, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else None


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
    return chain.from_iterable(written_records(index, zone, TextForm(zone)))


def written_records(
    index: ZoneIndex, zone: ZoneSettings, form: RecordForm[R]
) -> Iterator[Sequence[R]]:
    """`zone_records`, written in `form`, in lists (a name's records, or a run of names')."""
    return _Writer(index, zone, form).walk(_Node((), 0, 0))
