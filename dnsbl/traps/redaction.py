"""Taking the trap addresses out of what is shown: a published trap is a dead trap.

Every address in a trap domain, every single trap address and the trap domains themselves are
replaced, in any case, whether written `a@b`, URL-encoded (`a%40b`) or quoted-printable
(`a=40b`). Evidence is stored redacted, and redacted again when shown (with the configuration
of the day, should a trap have been added since).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dnsbl.config import TrapsSettings

ADDRESS = "[redacted address]"
DOMAIN = "[redacted domain]"
_AT = r"(?:@|%40|=40)"
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"


def _domain_pattern(domain: str) -> str:
    return r"(?<![A-Za-z0-9-])" + _after_at(domain)


def _after_at(domain: str) -> str:
    return re.escape(domain) + r"(?![A-Za-z0-9-])"


class Redactor:
    """Replaces the traps of a configuration (and any `extra` addresses) in text."""

    def __init__(self, traps: TrapsSettings, extra: Iterable[str] = ()) -> None:
        domains = sorted(set(traps.domains), key=len, reverse=True)
        addresses = sorted({*traps.addresses, *(a.lower() for a in extra if "@" in a)}, key=len)
        parts = [_LOCAL + _AT + _after_at(domain) for domain in domains]
        for address in reversed(addresses):
            local, _, domain = address.rpartition("@")
            parts.append(r"(?<![\w.+-])" + re.escape(local) + _AT + _after_at(domain))
        self._addresses = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self._domains = (
            re.compile("|".join(map(_domain_pattern, domains)), re.IGNORECASE) if domains else None
        )

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        if self._addresses is not None:
            text = self._addresses.sub(ADDRESS, text)
        if self._domains is not None:
            text = self._domains.sub(DOMAIN, text)
        return text

    def text(self, text: str) -> str:
        """`text` redacted (for a value that is never None)."""
        return self(text) or ""
