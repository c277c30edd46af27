"""rbldnsd data files: their syntax, and what rbldnsd answers for them, as CIDR entries.

This reads the IP dataset types of rbldnsd (ip4set, ip4trie, ip6trie, ip6tset) the way
rbldnsd 1.0 reads them, and turns each dataset into entries — (network, value or None for an
exclusion) — that the zone index's longest-prefix match answers exactly as rbldnsd answers.
What rbldnsd does, checked against its source and a running rbldnsd:

- Lines: leading and trailing blanks are ignored; empty lines and lines starting with `#` or
  `;` are comments. `$X`, `#$X` and `:$X` lines are specials: `$n text` (n a digit) and
  `$= text` (base template) define substitution variables, the first definition in a dataset
  winning; `$SOA`, `$NS`, `$TTL`, `$TIMESTAMP` are not data (dnsbl takes them from its own
  configuration: a warning, then ignored); `$MAXRANGE4` drops larger IPv4 entries.
- Addresses. ip4set: `a.b.c.d`, abbreviated prefixes (`10.1` is 10.1.0.0/16, `10.1.2` a /24;
  a bare `10` is refused: write `10/8`), CIDR (`10.1/16`, `10.1.2.0/24`), and ranges
  `a-b` between prefixes of the same length (`10.1.2.3-10.1.2.9`, `10.1-10.3` = 10.1.0.0 to
  10.3.255.255, and a one-number end is the last octet: `10.1.2.3-9`). ip4trie: prefixes and
  CIDR only. A CIDR with host bits set is refused (rbldnsd's default, without `-e`).
  ip6trie: groups of hex (`2001:db8` is a /32, `2001:db8:1:2` a /64, a lone group refused),
  `::` compression (a full /128), and `/n`. ip6tset: /64s as four groups, exclusions as /128.
- Values (`:A:TXT`). After the address: nothing or a comment → the default value; `:A:TXT`;
  `:A` (TXT from the default); `:A:` (no TXT); otherwise the text is the TXT with the default
  A. `A` may be abbreviated: `:5` is 127.0.0.5, `:1.2` is 1.0.0.2, `:1.2.3` is 1.2.0.3. A line
  starting with `:` sets the default value for the rest of the *file* (each file starts with
  A 127.0.0.2 and no TXT); ip6tset has one value for the whole dataset, the first default
  line's, and ignores per-entry values.
- TXT: `$` is the queried address, `$$` a dollar sign, `$n` the variable (literally `$n` when
  undefined), `$=` the entry's own text under a base template. Texts are cut at 255 bytes.
- Longest-prefix match and ties. ip4trie and ip6trie keep the *first* entry for a network
  (a later duplicate, even an exclusion, is warned about and ignored) and answer the longest
  matching prefix. ip4set works on octet boundaries: each entry is cut into /32, /24, /16 and
  /8 units, a query takes the units of the longest of those four lengths that has one, and
  when several entries give the same unit an exclusion wins, else rbldnsd answers *all* their
  distinct values (several A and TXT records). dnsbl keeps one value per network and
  category, so the first value goes to the dataset's category and the n-th distinct one to
  the *tie category* `CATEGORY+n` (`tie_groups`), which lists the unit and excludes every
  more specific unit inside it, just as ip4set would not look at the unit there. Because of the
  octet levels, a listed /26 inside an excluded /25 is not listed in ip4set (both are /32
  units; the exclusion wins) but is in ip4trie; the entries produced carry ip4set's answer
  exactly, by merging each level's units back into CIDRs no shorter than the level
  (`dnsbl.rbldnsd.ip4set`).
- ip6tset: listed if the /64 is listed and the address is not an excluded /128.

The `auto` type reads IPv4 lines as ip4set (the classic and most used rbldnsd dataset) and
IPv6 lines as ip6trie (the general one), as two datasets of the same files; a dataset can
say otherwise per family (`auto4`, `auto6`), and each file can be read as a type of its own
(`read(…, kind=…)`), as rbldnsd's `zone:type:file` arguments do.
"""

from __future__ import annotations

import enum
import socket
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from dnsbl.addresses import Network, ipv4_text
from dnsbl.rbldnsd.ip4set import Ip4SetUnits
from dnsbl.rbldnsd.syntax import (
    IP4,
    LINE_BLANKS,
    BadLine,
    abbreviated_address,
    ip4_cidr,
    ip4_range,
    ip6_cidr,
    ip6_prefix,
    maxrange,
    plain_addresses,
)
from dnsbl.rbldnsd.trie_entries import TrieEntries
from dnsbl.rbldnsd.txt_subst import dnsbl_template

# Longer lines are refused: no rbldnsd line is near this (a value's TXT is at most
# MAX_TXT_BYTES), and it keeps every number on a line far below Python's 4,300-digit limit.
MAX_LINE = 4096
_DIGIT_CHARS = frozenset("0123456789")
_BLOCK = 16384  # lines read at a time
_BLANK = " \t"
_AFTER_ADDRESS = " \t#;:"


class DatasetType(enum.StrEnum):
    """The rbldnsd dataset types that hold IP addresses (and `auto`, see the module doc)."""

    AUTO = "auto"
    IP4SET = "ip4set"
    IP4TRIE = "ip4trie"
    IP6TRIE = "ip6trie"
    IP6TSET = "ip6tset"

    @property
    def family(self) -> int:
        return 6 if self in (DatasetType.IP6TRIE, DatasetType.IP6TSET) else 4


@dataclass(frozen=True, slots=True)
class DataValue:
    """What an entry answers: its A code and its TXT template in dnsbl's syntax (None: no TXT)."""

    code: str
    txt: str | None


@dataclass(frozen=True, slots=True)
class _RawValue:
    """An A code and a TXT text as rbldnsd keeps them, before substitution."""

    code: str
    text: str


_GLOBAL_DEFAULT = _RawValue("127.0.0.2", "")
_TSET_LISTED = _RawValue("", "")  # an ip6tset /64: the dataset's one value, known at the end
DataEntry = tuple[Network, DataValue | None]  # None: an exclusion


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line that was skipped (or a warning about one), as FILE:LINE: message."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        if not self.line:  # about the dataset as a whole, found after reading it
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


Screen = Callable[[int, int, int], str | None]
"""Asked (family, first, last address) of an entry; a reason to leave it out, or None."""


class RbldnsdData:
    """rbldnsd data files read into one dataset (two for `auto`: IPv4 and IPv6)."""

    def __init__(
        self,
        kind: DatasetType = DatasetType.AUTO,
        *,
        auto4: DatasetType = DatasetType.IP4SET,
        auto6: DatasetType = DatasetType.IP6TRIE,
        screen: Screen | None = None,
    ) -> None:
        """`screen` is asked about the addresses of every entry that lists (not about
        exclusions): a reason it gives reports the line and leaves the entry out."""
        self.kind = kind
        self.screen = screen
        self.auto = {4: auto4, 6: auto6}  # what `auto` lines of each family are read as
        self.variables: dict[str, str] = {}  # "0".."9" and "=" (the base template)
        self.maxrange4 = 0
        self._default = _GLOBAL_DEFAULT
        self._tset_default: _RawValue | None = None
        self._values: dict[tuple[str, str], _RawValue] = {}
        self._tries: dict[int, TrieEntries[_RawValue]] = {4: TrieEntries(4), 6: TrieEntries(6)}
        self._ip4set: Ip4SetUnits[_RawValue] = Ip4SetUnits()
        self._tset: TrieEntries[_RawValue] = TrieEntries(6, quiet=True)
        self._tries_resolved = False
        # Every line has a number over all the files (`_at`: the one being read); the files
        # start at these, to name a line found at the end (a trie's duplicate).
        self._file_starts: list[int] = []
        self._file_names: list[str] = []
        self._at = 0
        self._resolved: dict[int, tuple[_RawValue, DataValue]] = {}
        self.problems: list[LineProblem] = []
        self.lines = 0

    # -- reading ---------------------------------------------------------------------------

    def read(
        self,
        name: str,
        lines: Iterable[str],
        kind: DatasetType | None = None,
        tick: Callable[[int, int], None] | None = None,
    ) -> Iterator[LineProblem]:
        """Read one file's lines (as `kind`, else the dataset's type); yields the problems of
        its bad lines as they are found. `tick` is told (lines, characters) read, every few
        thousand lines."""
        if kind is not None:
            self.kind = kind
        self._default = _GLOBAL_DEFAULT
        v4_kind = self.auto[4] if self.kind is DatasetType.AUTO else self.kind
        singles = self._ip4set.singles if v4_kind is DatasetType.IP4SET else None
        screen = self.screen
        source = iter(lines)
        number = 0
        self._file_starts.append(self.lines)
        self._file_names.append(name)
        while block := list(islice(source, _BLOCK)):
            if tick is not None:
                tick(len(block), sum(map(len, block)))
            # A block of plain addresses (as a rule, every line of a large file) at C speed;
            # where the screen refuses one of them, the line by line way reports it.
            found = None if singles is None else plain_addresses(block)
            if found is not None and not (screen and any(screen(4, a, a) for a in found)):
                assert singles is not None
                singles.add_block(found, self._default)
            else:
                yield from self._lines(name, block, number, v4_kind)
            number += len(block)
        self.lines += number

    def _lines(
        self, name: str, block: list[str], number: int, v4_kind: DatasetType
    ) -> Iterator[LineProblem]:
        """Read lines one by one (`number`: the lines of the file before them)."""
        # The common line, a dotted quad (with a value after a blank, or none), skips the
        # general parser: inet_pton takes exactly a.b.c.d with octets up to 255, which means
        # the same to rbldnsd. Anything unusual goes the general way, which reports it.
        fast = v4_kind in (DatasetType.IP4SET, DatasetType.IP4TRIE)
        before = self.lines
        singles = self._ip4set.singles if v4_kind is DatasetType.IP4SET else None
        trie = self._tries[4]
        screen = self.screen
        pton = socket.inet_pton
        from_bytes = int.from_bytes
        for raw in block:
            number += 1
            line = raw.strip(LINE_BLANKS)
            if not line:
                continue
            if len(line) > MAX_LINE or "\0" in line:
                why = f"longer than {MAX_LINE} characters" if len(line) > MAX_LINE else "a NUL byte"
                problem = LineProblem(name, number, f"not a data line: {why}")
                self.problems.append(problem)
                yield problem
                continue
            if fast and line[0] in _DIGIT_CHARS:
                blank = line.find(" ")
                value: _RawValue | None
                try:
                    if blank < 0:
                        address = from_bytes(pton(socket.AF_INET, line), "big")
                        value = self._default
                    else:
                        address = from_bytes(pton(socket.AF_INET, line[:blank]), "big")
                        value = self._entry_value(line[blank:], False)
                except (OSError, BadLine):
                    pass
                else:
                    if screen is not None and (refusal := screen(4, address, address)):
                        problem = LineProblem(name, number, refusal)
                        self.problems.append(problem)
                        yield problem
                        continue
                    if singles is not None:
                        singles.add(address, value)
                    else:
                        trie.add(address, 32, before + number, value)
                    continue
            elif line[0] in "#;" and not line.startswith("#$"):
                continue
            self._at = before + number
            try:
                warning = self._line(line)
            except BadLine as exc:
                warning = str(exc)
            if warning:
                problem = LineProblem(name, number, warning)
                self.problems.append(problem)
                yield problem

    def _line(self, line: str) -> str | None:
        first = line[0]
        if first == "$" or (first in "#:" and line[1:2] == "$"):
            return self._special(line[1:] if first == "$" else line[2:])
        if first == ":" and line[1:2] != ":":
            value = self._value(line, _GLOBAL_DEFAULT)
            self._default = value
            if self._tset_default is None:
                self._tset_default = value
            return None
        excluded = first == "!"
        text = line[1:].lstrip(_BLANK) if excluded else line
        kind = self.kind
        if kind is DatasetType.AUTO:
            token_end = len(text)
            for stop in " \t#;":
                found = text.find(stop)
                if 0 <= found < token_end:
                    token_end = found
            colon = text.find(":", 0, token_end)
            # An IPv4 entry's first colon starts its value: `1.2.3.4:5` (no dot after it).
            ipv6 = colon >= 0 and (colon == 0 or "." not in text[:colon])
            kind = self.auto[6 if ipv6 else 4]
        if kind is DatasetType.IP4SET:
            return self._ip4set_line(text, excluded)
        if kind is DatasetType.IP4TRIE:
            return self._ip4trie_line(text, excluded)
        if kind is DatasetType.IP6TRIE:
            return self._ip6trie_line(text, excluded)
        return self._ip6tset_line(text, excluded)

    def _special(self, word: str) -> str | None:
        keyword = word.split(None, 1)[0].lower() if word.strip() else ""
        if keyword in ("soa", "ns", "ttl", "timestamp"):
            return f"${keyword.upper()} ignored: dnsbl takes it from its configuration"
        if keyword == "maxrange4":
            argument = word.split(None, 1)[1:] or [""]
            size = maxrange(argument[0].strip())
            if self.maxrange4 and size > self.maxrange4:
                return "ignoring an attempt to increase $MAXRANGE4"
            self.maxrange4 = size
            return None
        if word[:1] and word[0] in "0123456789=" and word[1:2] in (" ", "\t"):
            text = word[2:].lstrip(_BLANK)
            if not text:
                raise BadLine("invalid or unrecognized special entry")
            self.variables.setdefault(word[0], text)
            return None
        raise BadLine("invalid or unrecognized special entry")

    def _value(self, text: str, default: _RawValue) -> _RawValue:
        """The value after an address (or of a default line), as rbldnsd's parse_a_txt."""
        key = (text, default.text if text.startswith(":") else default.code)
        cached = self._values.get(key)
        if cached is not None:
            return cached
        if text.startswith(":"):
            match = IP4.match(text, 1)
            parts = [int(g) for g in match.groups() if g is not None] if match else []
            if not parts or any(part > 255 for part in parts):
                raise BadLine("invalid A RR")
            code_int = abbreviated_address(parts)
            if not code_int:
                raise BadLine("invalid A RR")
            assert match is not None
            rest = text[match.end() :].lstrip(_BLANK)
            if rest.startswith(":"):
                txt = rest[1:].lstrip(_BLANK)
            elif rest:
                raise BadLine("unrecognized value for an entry")
            else:
                txt = default.text
            code = ipv4_text(code_int)
        else:
            code, txt = default.code, text
        value = self._values[key] = _RawValue(code, txt)
        return value

    def _entry_value(self, rest: str, excluded: bool) -> _RawValue | None:
        """The value of an entry whose address is followed by `rest` (None: an exclusion)."""
        if rest and rest[0] not in _AFTER_ADDRESS:
            raise BadLine("invalid address")
        if excluded:
            return None  # whatever follows an exclusion is ignored
        rest = rest.lstrip(_BLANK)
        if not rest or rest[0] in "#;":
            return self._default
        return self._value(rest, self._default)

    def _check_range(self, size: int) -> None:
        if self.maxrange4 and size > self.maxrange4:
            raise BadLine(f"too large range ({size}) ignored ({self.maxrange4} max)")

    def _screened(self, family: int, first: int, last: int, excluded: bool) -> None:
        """Raise `BadLine` when the screen refuses an entry that lists [first, last]."""
        if self.screen is not None and not excluded:
            refusal = self.screen(family, first, last)
            if refusal:
                raise BadLine(refusal)

    def _ip4set_line(self, text: str, excluded: bool) -> str | None:
        first, last, end = ip4_range(text)
        value = self._entry_value(text[end:], excluded)
        self._check_range(last - first + 1)
        self._screened(4, first, last, excluded)
        self._ip4set.add_range(first, last, value)
        return None

    def _ip4trie_line(self, text: str, excluded: bool) -> str | None:
        first, bits, end = ip4_cidr(text)
        value = self._entry_value(text[end:], excluded)
        self._check_range(1 << (32 - bits))
        self._screened(4, first, first | ((1 << (32 - bits)) - 1), excluded)
        self._trie_add(4, first, bits, value)
        return None

    def _ip6trie_line(self, text: str, excluded: bool) -> str | None:
        first, bits, end = ip6_cidr(text)
        value = self._entry_value(text[end:], excluded)
        self._screened(6, first, first | ((1 << (128 - bits)) - 1), excluded)
        self._trie_add(6, first, bits, value)
        return None

    def _trie_add(self, family: int, first: int, bits: int, value: _RawValue | None) -> None:
        # A network given twice is reported once every line is read (`_trie_groups`).
        self._tries[family].add(first, bits, self._at, value)

    def _ip6tset_line(self, text: str, excluded: bool) -> str | None:
        address, bits, end = ip6_prefix(text)
        rest = text[end:]
        if rest and rest[0] not in _AFTER_ADDRESS:
            raise BadLine("invalid address")
        wanted = 128 if excluded else 64
        if bits != wanted:
            kind = "exclusion" if excluded else "regular entry"
            raise BadLine(f"invalid address for {kind} (should be {wanted} bits)")
        self._screened(6, address, address | ((1 << 64) - 1), excluded)
        self._tset.add(address, wanted, self._at, None if excluded else _TSET_LISTED)
        return None

    # -- answering -------------------------------------------------------------------------

    def entries(self) -> Iterator[DataEntry]:
        """Every entry to store: CIDR networks whose longest-prefix match answers as rbldnsd."""
        for value, networks in self.groups():
            for network in networks:
                yield network, value

    def packed_groups(
        self, last: bool = False
    ) -> Iterator[tuple[int, DataValue | None, int, int, Sequence[int]]]:
        """Every entry to store, for a bulk write, as arrays: (rank: 1, n for ip4set's n-th tie
        values; value, family, prefix length, sorted starts). `last`: nothing is asked after."""
        for rank, value, length, starts in self._ip4set.bulk(self._convert, last):
            yield rank, value, 4, length, starts
        for trie, value, length, kept in self._trie_groups():
            yield 1, value, trie.family, length, kept

    def groups(self) -> Iterator[tuple[DataValue | None, list[Network]]]:
        """The same entries as `entries`, as (value, networks) groups: a million entries are
        made several times faster by list comprehensions than one by one."""
        for trie, value, length, starts in self._trie_groups():
            yield value, [Network(trie.family, start, length) for start in starts]
        yield from self._ip4set.groups(self._convert)

    def _trie_groups(
        self,
    ) -> Iterator[tuple[TrieEntries[_RawValue], DataValue | None, int, Sequence[int]]]:
        """(trie, value, prefix length, sorted starts) of the ip4trie, ip6trie and ip6tset
        entries; the first time, the networks given twice are reported."""
        tries = (self._tries[4], self._tries[6], self._tset)
        if not self._tries_resolved:
            self._tries_resolved = True
            for trie in tries:
                duplicates = sorted(trie.resolve())
                for at, first, bits in duplicates:
                    network = Network(trie.family, first, bits)
                    message = f"duplicated entry for {network} (the first one is kept)"
                    self.problems.append(self._problem_at(at, message))
        tset_value = self._tset_default or _GLOBAL_DEFAULT
        for trie in tries:
            for raw, length, starts in trie.groups():
                value = self._convert(tset_value if raw is _TSET_LISTED else raw)
                yield trie, value, length, starts

    def _problem_at(self, at: int, message: str) -> LineProblem:
        """The problem `message` of the line numbered `at` over all the files."""
        i = bisect_right(self._file_starts, at) - 1
        return LineProblem(self._file_names[i], at - self._file_starts[i], message)

    def _convert(self, raw: _RawValue | None) -> DataValue | None:
        """The stored value of a value as read (None stays None: an exclusion)."""
        if raw is None:
            return None
        # By identity: the reader hands out one object per distinct value.
        found = self._resolved.get(id(raw))
        if found is None:
            stored = DataValue(raw.code, dnsbl_template(raw.text, self.variables))
            found = self._resolved[id(raw)] = (raw, stored)
        return found[1]

    def tie_groups(self) -> Iterator[tuple[int, DataValue | None, list[Network]]]:
        """The further values of ip4set units given several, as (rank, value, networks): see
        `dnsbl.rbldnsd.ip4set`. Call after `groups`, which finds the ties."""
        return self._ip4set.tie_groups(self._convert)
