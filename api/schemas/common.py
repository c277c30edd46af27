"""Shapes shared by several resources: pages of results and the address fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from dnsbl.timestamps import aware

T = TypeVar("T")

# A moment in UTC; SQLite hands timestamps back naive, and they were written in UTC.
UtcDatetime = Annotated[datetime, AfterValidator(aware)]

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"({_OCTET}\.){{3}}{_OCTET}"
_H = "[0-9a-fA-F]{1,4}"
_IPV6 = (
    f"(({_H}:){{7}}{_H}|({_H}:){{1,7}}:|({_H}:){{1,6}}:{_H}|({_H}:){{1,5}}(:{_H}){{1,2}}"
    f"|({_H}:){{1,4}}(:{_H}){{1,3}}|({_H}:){{1,3}}(:{_H}){{1,4}}|({_H}:){{1,2}}(:{_H}){{1,5}}"
    f"|{_H}:(:{_H}){{1,6}}|:((:{_H}){{1,7}}|:)|::(ffff(:0{{1,4}})?:)?{_IPV4}"
    f"|({_H}:){{1,4}}:{_IPV4})"
)
# An address, or a CIDR network, in the usual notations (what `ipaddress` reads, less the
# rarely used ones), so that a client generating values from the schema makes valid ones.
ADDRESS_PATTERN = rf"^({_IPV4}|{_IPV6})$"
NETWORK_PATTERN = rf"^({_IPV4}(/(3[0-2]|[12]?[0-9]))?|{_IPV6}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$"
ADDRESS_SCHEMA: dict[str, object] = {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}

# Checked by the routes (a precise 400 "bad address"), described as ipv4 or ipv6 in the schema.
AddressText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="An IPv4 or IPv6 address",
        examples=["192.0.2.25", "2001:db8::25"],
        json_schema_extra=ADDRESS_SCHEMA,
    ),
]
NetworkText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=NETWORK_PATTERN,
        description="An address or a CIDR network",
        examples=["192.0.2.25", "192.0.2.0/24", "2001:db8::/48"],
    ),
]
RETURN_CODE_PATTERN = rf"^127\.{_OCTET}\.{_OCTET}\.{_OCTET}$"
# Loose on purpose (mail admins have odd addresses); whitespace spelled out, because regex
# engines disagree on what `\s` covers.
EMAIL_PATTERN = r"^[^@ \t\r\n\x00]+@[^@ \t\r\n\x00]+$"
Email = Annotated[
    str,
    Field(
        max_length=254,
        pattern=EMAIL_PATTERN,
        description="Where to reach the requester (optional)",
    ),
]
Note = Annotated[str, Field(max_length=2000)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]


# Text a client sends: PostgreSQL cannot store NUL, and nothing legitimate contains one.
TEXT_PATTERN = r"^[^\x00]*$"


def _no_nul(value: object) -> object:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class Input(BaseModel):
    """A request body: unknown fields are refused, and no text field may hold a NUL."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return _no_nul(value)


class Public(BaseModel):
    """A response model read from library objects by attribute."""

    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of a longer result: its items, how many there are in all, and where it starts."""

    items: list[T]
    total: int = Field(description="How many items match, across all pages")
    limit: int
    offset: int
