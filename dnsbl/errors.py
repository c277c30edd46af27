"""The exceptions of dnsbl: every one derives from `DnsblError`; a docstring is its message."""

from __future__ import annotations

import math
from datetime import UTC, datetime


class DnsblError(Exception):
    """dnsbl failed."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or (self.__doc__ or "").strip())

    @property
    def detail(self) -> str:
        return str(self)


class ConfigError(DnsblError):
    """The configuration is invalid."""


class AddressError(DnsblError, ValueError):
    """Not a valid IP address or network."""


class UnknownZoneError(DnsblError, LookupError):
    """No such zone is configured."""


class NotListedError(DnsblError, LookupError):
    """No active listing matches."""


class ImportFormatError(DnsblError):
    """The data file cannot be imported."""


class PolicyRefused(DnsblError):
    """Policy forbids testing (or listing) this address."""


class NeverListed(PolicyRefused):
    """The network meets a network on the never-list list."""


class NotYourAddress(DnsblError):
    """A self-test tests only the address the request comes from."""


class ReturnCodeError(DnsblError, ValueError):
    """Not a return code: an IPv4 address in 127.0.0.0/8 (RFC 5782)."""


class TxtTooLong(DnsblError, ValueError):
    """The TXT is longer than a zone serves."""


class ExpiryError(DnsblError, ValueError):
    """The expiry is not in the future."""


class RateLimited(DnsblError):
    """Too many requests; try again later."""

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail or f"too many requests; retry after {retry_after} s")
        self.retry_after = retry_after

    @classmethod
    def until(cls, moment: datetime, detail: str) -> RateLimited:
        """Refused until `moment` (timezone-aware): when the oldest request counted against
        the limit leaves its window."""
        seconds = (moment - datetime.now(UTC)).total_seconds()
        return cls(max(1, math.ceil(seconds)), detail)


class ConfirmationRequired(DnsblError):
    """Confirm that the host has been fixed before asking for its removal."""
