"""The exceptions of dnsbl. Every one derives from `DnsblError`; a class's docstring is its message."""

from __future__ import annotations


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
