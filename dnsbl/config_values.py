"""The checks of configuration values that several settings share: domain names, return
codes, listening endpoints (networks and secrets are in dnsbl.access.settings). Each gives the
value back or raises a ValueError that names it (pydantic reports it under the key)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator

from dnsbl.addresses import parse_return_code
from dnsbl.errors import ReturnCodeError

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?$"
)


def domain_name(value: str) -> str:
    name = value.strip().rstrip(".").lower()
    if not _HOSTNAME.match(name):
        raise ValueError(f"{value!r} is not a valid domain name")
    return name


def return_code(value: str) -> str:
    try:
        return parse_return_code(value)
    except ReturnCodeError as exc:
        raise ValueError(exc.detail) from None


def parse_endpoint(value: str, default_port: int) -> tuple[str, int]:
    """Split `host:port`, `[v6]:port` or a bare host into (host, port)."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, str(default_port)
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} out of range")
    return host, number


def endpoint(value: str, default_port: int) -> str:
    """`value` if it is a valid listening endpoint, else a ValueError naming the problem."""
    try:
        parse_endpoint(value, default_port)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not ADDRESS:PORT ({exc})") from None
    return value


DnsEndpoint = Annotated[str, AfterValidator(lambda value: endpoint(value, 53))]


def smtp_listen(value: str | list[str]) -> str | list[str]:
    """One SMTP endpoint or a non-empty list of them."""
    if isinstance(value, str):
        return endpoint(value, 25)
    if not value:
        raise ValueError("give at least one ADDRESS:PORT")
    return [endpoint(item, 25) for item in value]


def smtp_endpoints(listen: str | list[str]) -> list[tuple[str, int]]:
    return [parse_endpoint(text, 25) for text in ([listen] if isinstance(listen, str) else listen)]
