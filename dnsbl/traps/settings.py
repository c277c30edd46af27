"""The `[traps]` and `[reports]` sections of the configuration (read by dnsbl.config)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dnsbl.access.settings import NetworkText
from dnsbl.config_values import domain_name, smtp_endpoints, smtp_listen


class TrapsSettings(BaseModel):
    """The `[traps]` section: the spam-trap sink (none runs without `domains` or `addresses`)
    and how long the sources it sees are listed (see dnsbl.traps.escalation)."""

    model_config = ConfigDict(extra="forbid")

    listen: str | list[str] = "127.0.0.1:2526"
    domains: list[str] = []
    addresses: list[str] = []
    zone: str | None = None  # None: the first configured zone
    category: str = "spam-source"
    first_days: Annotated[float, Field(gt=0)] = 15.0
    extra_days: Annotated[float, Field(ge=0)] = 15.0
    max_days: Annotated[float, Field(gt=0)] = 90.0
    trusted_relays: list[NetworkText] = []
    max_message_size: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 256 * 1024
    hits_per_source_per_hour: Annotated[int, Field(ge=1)] = 60  # beyond: 451, nothing kept

    _check_domains = field_validator("domains")(
        classmethod(lambda cls, v: list(map(domain_name, v)))
    )

    _check_listen = field_validator("listen")(classmethod(lambda cls, v: smtp_listen(v)))

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        checked = []
        for value in values:
            local, at, domain = value.strip().rpartition("@")
            if not at or not local:
                raise ValueError(f"{value!r} is not an email address")
            checked.append(f"{local.lower()}@{domain_name(domain)}")
        return checked

    @property
    def enabled(self) -> bool:
        return bool(self.domains or self.addresses)

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return smtp_endpoints(self.listen)


class ReportsSettings(BaseModel):
    """`[reports]`: a reported source is listed once `threshold` reporters saw it in the window."""

    model_config = ConfigDict(extra="forbid")

    threshold: Annotated[int, Field(ge=1)] = 1
    window_days: Annotated[float, Field(gt=0)] = 7.0
