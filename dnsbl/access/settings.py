"""The settings of who may ask and how much: `[zones.access]`, `[dns.rate_limit]`,
`[dns.cookies]`, and the checked text types they share with the rest of `dnsbl.config`.

Apart from `dnsbl.config` (which builds on them) so that it stays one readable file; nothing
here imports the rest of dnsbl.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _network(value: str) -> str:
    """`value` if it is an IP address or network, else a ValueError naming it."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network") from None
    return value


def _secret(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(decoded) < 16:
        raise ValueError("shorter than 16 bytes: make one with `tsig-keygen` or `openssl rand`")
    return value


# Lists of these are checked item by item: every bad entry is reported, by its index.
NetworkText = Annotated[str, AfterValidator(_network)]
Secret = Annotated[str, AfterValidator(_secret)]  # base64 of at least 16 bytes
EVERYONE = ("0.0.0.0/0", "::/0")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccessSettings(_Section):
    """`[zones.access]`: who a zone answers (dnsbl.dns.access); by default, anyone."""

    allow: list[NetworkText] = list(EVERYONE)  # sources answered without a key
    keys: bool = False  # names under KEY.<zone> are answered for a valid access key
    denied: Literal["refused", "code"] = "refused"  # what the others get

    @property
    def open(self) -> bool:
        """Whether the zone answers everyone as it always did (no check needed)."""
        networks = {str(ipaddress.ip_network(text, strict=False)) for text in self.allow}
        return not self.keys and networks.issuperset(EVERYONE)


class RateLimitSettings(_Section):
    """`[dns.rate_limit]`: response rate limiting over UDP as BIND's (dnsbl.dns.ratelimit)."""

    responses_per_second: int = Field(0, ge=0, le=1_000_000)  # per client network; 0 = off
    window: int = Field(15, ge=1, le=3600)  # seconds a client's excess is remembered
    slip: int = Field(2, ge=0, le=10)  # every Nth limited answer goes out with TC=1; 0: none
    exempt: list[NetworkText] = []  # networks never limited (your own resolvers)
    log_only: bool = False  # count and log what would be limited, but answer everything


class CookieSettings(_Section):
    """`[dns.cookies]`: the secret of the DNS server cookies (RFC 7873, RFC 9018).

    Nodes given the same `secret` accept each other's cookies; without one, each process
    draws its own at start. The secret in use is derived from it anew every `rotate` seconds
    (the previous one still verifies), so no cookie stays valid for long whatever the secret.
    """

    secret: Secret | None = None  # `openssl rand -base64 16`
    rotate: int = Field(3600, ge=60, le=30 * 86400)
