"""What a listing answers, the rule that fills in what it leaves open, and the RFC 5782 test
addresses that every zone answers the same way.

A listing may leave its A code and its TXT template to the zone (None): the code is then the
category's code in the zone (`[zones.categories]`), else the zone's default code, and the text
is the zone's TXT template. A TXT of "" means "no TXT record". That rule is `ValueDefaults`;
the index, the lookup pages and the admin API all answer through it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

# RFC 5782 §5: 127.0.0.2 (and its IPv6 form) is always listed, 127.0.0.1 (and ::1) never.
TEST_LISTED = {
    4: int(ipaddress.IPv4Address("127.0.0.2")),
    6: int(ipaddress.IPv6Address("::ffff:7f00:2")),
}
TEST_UNLISTED = {4: int(ipaddress.IPv4Address("127.0.0.1")), 6: int(ipaddress.IPv6Address("::1"))}
TEST_UNLISTED_MAPPED = int(ipaddress.IPv6Address("::ffff:7f00:1"))
NEVER_LISTED = {
    4: frozenset({TEST_UNLISTED[4]}),
    6: frozenset({TEST_UNLISTED[6], TEST_UNLISTED_MAPPED}),
}
TEST_CATEGORY = "test"


def is_test_listed(family: int, address: int) -> bool:
    """Whether `address` is the RFC 5782 test address that is always listed."""
    return TEST_LISTED[family] == address


def is_never_listed(family: int, address: int) -> bool:
    """Whether `address` is an RFC 5782 test address that is never listed."""
    return address in NEVER_LISTED[family]


@dataclass(frozen=True, slots=True)
class Value:
    """What a listing answers: its category, its A return code, and its TXT template.

    `txt` is None when the entry has no text (no TXT record is answered); `$` in it stands
    for the queried address.
    """

    category: str
    code: str
    txt: str | None

    @property
    def code_rdata(self) -> bytes:
        return ipaddress.IPv4Address(self.code).packed


class ZoneValueSettings(Protocol):
    """The part of a zone's configuration that fills in a listing's values."""

    @property
    def default_code(self) -> str: ...

    @property
    def txt(self) -> str: ...

    @property
    def categories(self) -> Mapping[str, str]: ...


_NO_CATEGORIES: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ValueDefaults:
    """A zone's answers for what a listing leaves open: the default rule, in one place."""

    default_code: str = "127.0.0.2"
    txt: str | None = None  # the zone's TXT template; None or "": no TXT
    categories: Mapping[str, str] = field(default_factory=lambda: _NO_CATEGORIES, hash=False)

    @classmethod
    def of(cls, zone: ZoneValueSettings) -> ValueDefaults:
        return cls(zone.default_code, zone.txt, MappingProxyType(dict(zone.categories)))

    def code(self, category: str, code: str | None = None) -> str:
        """The A code of a listing in `category` whose own code is `code` (None: the zone's)."""
        return code if code is not None else self.categories.get(category, self.default_code)

    def text(self, txt: str | None = None) -> str | None:
        """The TXT template of a listing whose own is `txt` (None: the zone's; "": none)."""
        return (txt if txt is not None else self.txt) or None

    def value(self, category: str, code: str | None, txt: str | None) -> Value:
        """What a listing with these (possibly open) values answers."""
        return Value(category, self.code(category, code), self.text(txt))

    @property
    def test_value(self) -> Value:
        """What 127.0.0.2 answers where no listing covers it: the zone's own code and text."""
        return Value(TEST_CATEGORY, self.default_code, self.text())


RBLDNSD_DEFAULTS = ValueDefaults()
"""Without a zone's say: 127.0.0.2 and no TXT, as rbldnsd answers an entry without values."""
