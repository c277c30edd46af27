"""Shapes shared by several resources: pages of results and the address fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dnsbl.timestamps import aware

T = TypeVar("T")

# A moment in UTC; SQLite hands timestamps back naive, and they were written in UTC.
UtcDatetime = Annotated[datetime, AfterValidator(aware)]

# Long enough for any textual IPv6 address (with an embedded IPv4 part) and a prefix.
AddressText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="An IPv4 or IPv6 address",
        examples=["192.0.2.25", "2001:db8::25"],
    ),
]
NetworkText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="An address or a CIDR network",
        examples=["192.0.2.25", "192.0.2.0/24", "2001:db8::/48"],
    ),
]
Email = Annotated[
    str,
    Field(
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="Where to reach the requester (optional)",
    ),
]
Note = Annotated[str, Field(max_length=2000)]
Reason = Annotated[str, Field(min_length=1, max_length=2000)]


class Public(BaseModel):
    """A response model read from library objects by attribute."""

    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    """One page of a longer result: its items, how many there are in all, and where it starts."""

    items: list[T]
    total: int = Field(description="How many items match, across all pages")
    limit: int
    offset: int
