"""Bulk import: rbldnsd data files and plain address lists into a zone, in one transaction.

The files are read as one rbldnsd dataset (`dnsbl.rbldnsd.data`, which documents the syntax
and rbldnsd's semantics), the dataset is turned into CIDR entries that answer as rbldnsd
answers, and those are written with one `ListingStore.add` call: either everything is
imported or nothing is. A bad line is reported (`FILE:LINE: problem`) and skipped; a file that
cannot be read or an unknown zone stops the import before anything is written.

Values: every entry is stored with an explicit A code and TXT template, so that the zone
answers what rbldnsd answers for the same file — an entry with no value and no default line
answers 127.0.0.2 and no TXT, as in rbldnsd. With `zone_values`, such entries instead take
the zone's code for the category and the zone's TXT template (for plain lists of addresses
that should answer like the zone's own listings).
"""

from __future__ import annotations

import dataclasses
import gc
import gzip
import io
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Protocol, TextIO

from dnsbl.addresses import Network
from dnsbl.config import ZoneSettings
from dnsbl.errors import DnsblError, ImportFormatError, NeverListed
from dnsbl.listings.manual import ListingRule
from dnsbl.listings.rows import LoadGroup, Source
from dnsbl.listings.store import ListingStore, WriteResult
from dnsbl.rbldnsd.data import DatasetType, DataValue, LineProblem, RbldnsdData
from dnsbl.rbldnsd.ip4set import tie_category

_RBLDNSD_DEFAULT = DataValue("127.0.0.2", None)


@dataclass(slots=True)
class ImportResult:
    """What an import read and wrote."""

    files: int = 0
    lines: int = 0
    entries: int = 0
    problems: list[LineProblem] = field(default_factory=list)
    write: WriteResult | None = None


class ImportProgress(Protocol):
    """Where an import reports how far it is (the CLI draws a bar from it)."""

    def update(self, lines: int, done_bytes: int) -> None: ...

    def message(self, text: str) -> None: ...


def open_data(path: Path) -> TextIO:
    """Open a data file for reading (gzip-compressed ones too, as rbldnsd does)."""
    try:
        raw = path.open("rb")
        magic = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
        if magic == b"\x1f\x8b":
            raw.close()
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
        return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None


class _Counter:
    """Tells `progress` how far the reading of all the files is (`RbldnsdData.read`'s tick)."""

    def __init__(self, progress: ImportProgress) -> None:
        self.progress = progress
        self.lines = 0
        self.characters = 0

    def tick(self, lines: int, characters: int) -> None:
        self.lines += lines
        self.characters += characters
        self.progress.update(self.lines, self.characters)


def import_files(
    store: ListingStore,
    zone: ZoneSettings,
    paths: Sequence[Path],
    *,
    kind: DatasetType = DatasetType.AUTO,
    kinds: Sequence[DatasetType | None] | None = None,
    category: str = "imported",
    replace: bool = False,
    zone_values: bool = False,
    actor: str = "import",
    report: Callable[[LineProblem], None] | None = None,
    progress: ImportProgress | None = None,
) -> ImportResult:
    """Import `paths` (read as one rbldnsd dataset of type `kind`) into `zone`.

    `kinds` may give a type for each path (None: `kind`), as rbldnsd's `zone:type:file`
    arguments do; per address family the files must agree (see `dataset_kinds`). With
    `replace`, the category's active listings that the files do not contain are ended in
    the same transaction. Problems with lines are passed to `report` as they are found.
    """
    file_kinds = [each or kind for each in (kinds or [None] * len(paths))]
    auto4, auto6 = dataset_kinds(file_kinds)
    result = ImportResult(files=len(paths))
    handles = [open_data(path) for path in paths]  # every file readable, or nothing happens
    # Millions of small objects and no cycles among them: the collector's full passes over
    # them would only cost time.
    rule = ListingRule.load(store)
    # Lines that would list never-list addresses are reported and skipped as they are read.
    screen = rule.never_list_refusal if rule.never_list else None
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _import(
            store,
            zone,
            paths,
            handles,
            result,
            file_kinds,
            RbldnsdData(DatasetType.AUTO, auto4=auto4, auto6=auto6, screen=screen),
            rule,
            category,
            replace,
            zone_values,
            actor,
            report,
            progress,
        )
    finally:
        if collecting:
            gc.enable()


def _import(
    store: ListingStore,
    zone: ZoneSettings,
    paths: Sequence[Path],
    handles: list[TextIO],
    result: ImportResult,
    file_kinds: list[DatasetType],
    data: RbldnsdData,
    rule: ListingRule,
    category: str,
    replace: bool,
    zone_values: bool,
    actor: str,
    report: Callable[[LineProblem], None] | None,
    progress: ImportProgress | None,
) -> ImportResult:
    tick = None if progress is None else _Counter(progress).tick
    try:
        for path, handle, kind in zip(paths, handles, file_kinds, strict=True):
            with handle:
                for problem in data.read(str(path), handle, kind, tick):
                    if report is not None:
                        report(problem)
    finally:
        for handle in handles:
            handle.close()
    result.lines = data.lines
    read_problems = len(data.problems)
    groups = _groups(data, category, zone_values)
    # Problems found while resolving the dataset (ip4set ties, a trie's networks given
    # twice) come after the reading.
    if report is not None:
        for problem in data.problems[read_problems:]:
            report(problem)
    result.problems = data.problems
    name = paths[0].name if len(paths) == 1 else "import"

    def refused(problem: DnsblError) -> None:
        # An entry the lines made (a merged range, a tie) that the listing rule refuses.
        found = LineProblem(name, 0, problem.detail)
        result.problems.append(found)
        if report is not None:
            report(found)

    groups = [kept for group in groups if (kept := _passed(group, rule, refused)) is not None]
    result.entries = sum(len(group.starts) for group in groups)
    if progress is not None:
        progress.message(f"read {result.lines:,} lines: {result.entries:,} entries; writing")
    result.write = store.add_groups(
        zone.name,
        groups,
        actor=actor,
        source=Source.IMPORT,
        replace_categories=_replaced(store, category) if replace else (),
    )
    return result


def _passed(
    group: LoadGroup, rule: ListingRule, refused: Callable[[DnsblError], None]
) -> LoadGroup | None:
    """The entries of `group` the listing rule lets through (None: none); the others are
    handed to `refused`. The values are checked once per group; the never-list only for
    networks wider than an address, since every line was screened as it was read."""
    first = Network(group.family, group.starts[0], group.prefixlen) if group.starts else None
    values = (group.code, group.txt)
    if first is not None and not group.excluded and rule.value_refusal(first, *values):
        for start in group.starts:
            problem = rule.value_refusal(Network(group.family, start, group.prefixlen), *values)
            assert problem is not None
            refused(problem)
        return None
    if group.excluded or group.prefixlen == (32 if group.family == 4 else 128):
        return group
    # A byte a network marks the refused, no list of the kept: a group can hold ten million.
    passed = bytearray(b"\1") * len(group.starts)
    for i, start in enumerate(group.starts):
        network = Network(group.family, start, group.prefixlen)
        why = rule.never_list.refusal_of(network)
        if why is not None:
            passed[i] = 0
            refused(NeverListed(f"{network}: {why}"))
    if all(passed):
        return group
    if not any(passed):
        return None
    kept = list(compress(group.starts, passed))
    return dataclasses.replace(group, starts=array("I", kept) if group.family == 4 else kept)


_FAMILY_KINDS = {
    4: (DatasetType.IP4SET, DatasetType.IP4TRIE),
    6: (DatasetType.IP6TRIE, DatasetType.IP6TSET),
}


def dataset_kinds(kinds: Iterable[DatasetType]) -> tuple[DatasetType, DatasetType]:
    """The IPv4 and IPv6 dataset types of an import whose files are of `kinds`.

    One import is one dataset per family (one category, one answer per network), so files
    of ip4set and ip4trie (or ip6trie and ip6tset) cannot be mixed in it: they would answer
    differently, and rbldnsd would hold them as two datasets. `auto` files follow the type
    the other files give their family, else ip4set and ip6trie.
    """
    found = set(kinds)
    chosen = []
    for family, default in ((4, DatasetType.IP4SET), (6, DatasetType.IP6TRIE)):
        named = sorted(found & set(_FAMILY_KINDS[family]))
        if len(named) > 1:
            raise ImportFormatError(
                f"{' and '.join(named)} files cannot be one import: rbldnsd reads them as two "
                "datasets, which answer differently; import them one at a time, each with "
                "its own --category"
            )
        chosen.append(named[0] if named else default)
    return chosen[0], chosen[1]


def _replaced(store: ListingStore, category: str) -> list[str]:
    """The categories an import into `category` replaces: it and its tie categories."""
    known = store.categories()
    ranks = (name.rpartition("+")[2] for name in known)
    ties = {tie_category(category, int(rank)) for rank in ranks if rank.isdigit()}
    return [category, *sorted(ties & known)]


def _groups(data: RbldnsdData, category: str, zone_values: bool) -> list[LoadGroup]:
    """The dataset's entries as groups for the store: explicit values (or the zone's, see
    `zone_values`), ip4set's n-th tie values in the tie category of rank n."""
    groups = []
    for rank, value, family, prefixlen, starts in data.packed_groups(last=True):
        group_category = category if rank == 1 else tie_category(category, rank)
        if value is None:
            groups.append(LoadGroup(family, prefixlen, group_category, True, None, None, starts))
            continue
        code: str | None = value.code
        txt: str | None = value.txt or ""
        if zone_values and value == _RBLDNSD_DEFAULT:
            code = txt = None
        groups.append(LoadGroup(family, prefixlen, group_category, False, code, txt, starts))
    return groups
