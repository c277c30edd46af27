"""The configuration: a TOML file (`--config` / `DNSBL_CONFIG`) overridden by `DNSBL_*` variables.

Nested keys are reached with a double underscore (`DNSBL_DNS__LISTEN='["0.0.0.0:53"]'`).
A bad configuration is refused at start with a message that names the key and the problem.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from dnsbl.access.settings import (
    AccessSettings,
    CookieSettings,
    NetworkText,
    RateLimitSettings,
    Secret,
)
from dnsbl.config_values import DnsEndpoint, parse_endpoint
from dnsbl.config_values import domain_name as _domain
from dnsbl.config_values import endpoint as _endpoint
from dnsbl.config_values import return_code as _return_code
from dnsbl.config_values import smtp_endpoints as _smtp_endpoints
from dnsbl.config_values import smtp_listen as _listen
from dnsbl.errors import ConfigError
from dnsbl.index.txt_template import txt_too_long
from dnsbl.traps.settings import ReportsSettings, TrapsSettings

__all__ = ["ReportsSettings", "TrapsSettings", "parse_endpoint"]  # also read from here

DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")


def check_database_url(url: str) -> str:
    """`url` if it names a database dnsbl can use (SQLite or PostgreSQL), else a ValueError."""
    scheme, sep, rest = url.strip().partition("://")
    backend = scheme.split("+", 1)[0].lower()
    if not sep or not scheme or not (rest or backend == "sqlite"):  # sqlite:// is in memory
        raise ValueError(f"{url!r} is not a database URL: use sqlite:///PATH or postgresql://...")
    if backend not in DATABASE_SCHEMES:
        raise ValueError(
            f"unsupported database {scheme!r}: use sqlite:///PATH or postgresql://HOST/NAME"
        )
    return url


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")


class TsigKeySettings(_Section):
    """A `[[dns.transfer_keys]]` entry: a TSIG key (RFC 8945) shared with the secondaries."""

    name: str
    algorithm: str = "hmac-sha256"
    secret: Secret  # base64, as `tsig-keygen` and NSD/Knot/BIND configurations write it

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _domain(value)

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        algorithm = value.lower().rstrip(".")
        if algorithm not in TSIG_ALGORITHMS:
            raise ValueError(f"unsupported TSIG algorithm {value!r}: use one of {TSIG_ALGORITHMS}")
        return algorithm


class DnsSettings(_Section):
    """The `[dns]` section: where the DNS server listens and whom it serves transfers to."""

    listen: list[DnsEndpoint] = ["127.0.0.1:5353"]
    transfer_peers: list[NetworkText] = []
    # With keys, a transfer must also be signed with one of them (and replies are signed).
    transfer_keys: list[TsigKeySettings] = []
    notify: list[DnsEndpoint] = []
    sync_interval: float = Field(0.25, gt=0, le=60)
    max_udp_payload: int = Field(1232, ge=512, le=65535)
    # `dnsbl dns` forks this many answering processes on the same sockets (dnsbl.node.group)
    processes: int = Field(1, ge=1, le=64)
    # `dnsbl dns` serves its Prometheus metrics here (host:port; 9153 by convention)
    metrics_listen: str | None = None
    tcp_max_per_source: int = Field(8, ge=1, le=65535)  # TCP connections (RFC 7766 §6.2.2)
    rate_limit: RateLimitSettings = RateLimitSettings()
    cookies: CookieSettings = CookieSettings()
    # Who answers the common UDP query: the C extension (dnsbl.dns.native), the Python
    # engine, or ("auto") the C extension where it was built
    engine: Literal["auto", "native", "python"] = "auto"
    # The node's last-known-good index (dnsbl.node.snapshot): written after each full load and
    # compaction, read at start so that the node answers at once, even with the database down
    snapshot: Path | None = None

    @field_validator("metrics_listen")
    @classmethod
    def _metrics(cls, value: str | None) -> str | None:
        return None if value is None else _endpoint(value, 9153)


class ApiSettings(_Section):
    """The `[api]` section."""

    listen: str = "127.0.0.1:8000"
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = Field(65536, ge=1024, le=64 * 1024 * 1024)
    # The reverse proxies whose X-Forwarded-For / X-Forwarded-Proto count (addresses or
    # networks; uvicorn's forwarded_allow_ips). Empty: nobody's, the peer is the client.
    trusted_proxies: list[NetworkText] = []

    @field_validator("listen")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _endpoint(value, 8000)


class ZoneSettings(_Section):
    """One `[[zones]]` entry: a blocklist zone and the parameters of its SOA and answers."""

    name: str
    ns: list[str] = Field(min_length=1)
    hostmaster: str
    ttl: int = Field(2100, ge=0, le=2**31 - 1)
    negative_ttl: int = Field(300, ge=0, le=2**31 - 1)
    refresh: int = Field(3600, ge=1)
    retry: int = Field(600, ge=1)
    expire: int = Field(604800, ge=1)
    default_code: str = "127.0.0.2"
    txt: str = "Listed: see http://127.0.0.1:8000/lookup/$"
    categories: dict[str, str] = {}
    access: AccessSettings = AccessSettings()

    _check_name = field_validator("name", "hostmaster")(classmethod(lambda cls, v: _domain(v)))
    _check_code = field_validator("default_code")(classmethod(lambda cls, v: _return_code(v)))

    @field_validator("ns")
    @classmethod
    def _ns(cls, values: list[str]) -> list[str]:
        return [_domain(v) for v in values]

    @field_validator("txt")
    @classmethod
    def _txt(cls, value: str) -> str:
        if problem := txt_too_long(value):
            raise ValueError(problem)
        return value

    @field_validator("categories")
    @classmethod
    def _categories(cls, values: dict[str, str]) -> dict[str, str]:
        return {name: _return_code(code) for name, code in values.items()}


class TesterSettings(_Section):
    """The `[tester]` section: how the relay tester probes hosts and where its collector listens.

    `testable_networks` empty means every globally routable unicast address (`is_global`);
    a lab lists its own networks (e.g. `127.0.0.0/8`). `never_test` always wins.

    `collector_listen` is one endpoint or a list (one per family: `["0.0.0.0:25", "[::]:25"]`);
    `source_address` one address or a list of at most one per family, the tester sending
    from the one of the tested host's family (and letting the kernel choose for the other).
    """

    __test__: ClassVar[bool] = False  # its name starts with "Test"; pytest must not collect it

    collector_domain: str = "relaytest.example"
    collector_listen: str | list[str] = "127.0.0.1:2525"
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    testable_networks: list[NetworkText] = []
    never_test: list[NetworkText] = []
    source_address: str | list[str] | None = None
    connect_timeout: Annotated[float, Field(gt=0, le=3600)] = 15.0
    command_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    data_timeout: Annotated[float, Field(gt=0, le=3600)] = 60.0
    session_timeout: Annotated[float, Field(gt=0, le=86400)] = 300.0
    wait_window: Annotated[float, Field(ge=0, le=86400)] = 120.0
    max_message_size: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 64 * 1024
    helo_name: str = "dnsbl-tester.example"
    reverse_dns_timeout: Annotated[float, Field(ge=0, le=60)] = 5.0  # 0: skip the PTR lookup
    # A temporary answer to a direct form (greylisting, RFC 6647) is answered by sending the
    # same envelopes again this many seconds later (postgrey's default delay is 300 s), at
    # most `greylist_attempts` times; 0 attempts: such a host stays untestable.
    greylist_retry: Annotated[float, Field(gt=0, le=86400)] = 300.0
    greylist_attempts: Annotated[int, Field(ge=0, le=10)] = 2
    # The job loop around the tester: workers, listings, retests and per-requester limits.
    concurrency: Annotated[int, Field(ge=1, le=1000)] = 20  # tests one worker runs at once
    lease_seconds: Annotated[float, Field(gt=0, le=86400)] = 120.0  # a dead worker's job frees
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 1.0
    min_test_interval: Annotated[float, Field(ge=0)] = 86400.0  # RFC 6471 §3.6: once a day
    retest_interval: Annotated[float, Field(gt=0)] = 7 * 86400.0  # listed hosts, periodically
    sweep_interval: Annotated[float, Field(gt=0)] = 300.0  # expiry sweeps
    listing_days: Annotated[float, Field(gt=0)] = 30.0  # a confirmation lists for this long
    list_zones: list[str] = []  # zones relays are listed in; empty: every configured zone
    nominations_per_submitter: Annotated[int, Field(ge=1)] = 100
    # New tests whoever asks, so that nominating in bulk (from many addresses) cannot aim the
    # tester at one network, or at everyone, faster than this: per /24 (IPv4) or /48 (IPv6),
    # and in all, each per `nomination_window`.
    nominations_per_network: Annotated[int, Field(ge=1)] = 16
    nominations_per_window: Annotated[int, Field(ge=1)] = 1000
    nomination_window: Annotated[float, Field(gt=0)] = 3600.0
    delists_per_address: Annotated[int, Field(ge=1)] = 3
    delists_per_requester: Annotated[int, Field(ge=1)] = 10
    delist_window: Annotated[float, Field(gt=0)] = 86400.0
    # A self-test that finds the host open lists nothing, but schedules a normal test this
    # many hours later, which lists the host if it is still open (fractions for labs).
    self_test_grace_hours: Annotated[float, Field(ge=0, le=24 * 365)] = 24.0
    # `dnsbl worker` serves its Prometheus metrics here (host:port); None: no endpoint
    metrics_listen: str | None = None

    _check_domains = field_validator("collector_domain", "helo_name")(
        classmethod(lambda cls, v: _domain(v))
    )

    _check_listen = field_validator("collector_listen")(classmethod(lambda cls, v: _listen(v)))

    @field_validator("metrics_listen")
    @classmethod
    def _metrics(cls, value: str | None) -> str | None:
        return None if value is None else _endpoint(value, 9154)

    @field_validator("source_address")
    @classmethod
    def _source(cls, value: str | list[str] | None) -> str | list[str] | None:
        texts = [value] if isinstance(value, str) else list(value or [])
        addresses = []
        for text in texts:
            if text.strip() == "":
                continue
            try:
                addresses.append(ipaddress.ip_address(text.strip()))
            except ValueError:
                raise ValueError(f"{text!r} is not an IP address") from None
        families = [address.version for address in addresses]
        if len(set(families)) < len(families):
            raise ValueError("give at most one address per family (one IPv4, one IPv6)")
        if not addresses:
            return None
        if isinstance(value, str):
            return str(addresses[0])
        return [str(address) for address in addresses]

    @property
    def collector_endpoints(self) -> list[tuple[str, int]]:
        """Every (host, port) the collector listens on."""
        return _smtp_endpoints(self.collector_listen)

    def source_for(self, target_ip: str) -> str | None:
        """The configured address to send from to `target_ip` (of its family), if any."""
        sources = self.source_address
        version = ipaddress.ip_address(target_ip).version
        for text in [sources] if isinstance(sources, str) else sources or []:
            if ipaddress.ip_address(text).version == version:
                return text
        return None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogSettings(_Section):
    """The `[log]` section: how much is logged, and how (text lines or one JSON object each)."""

    level: str = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return level


class Settings(BaseSettings):
    """All of dnsbl's settings."""

    model_config = SettingsConfigDict(
        env_prefix="DNSBL_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )
    toml_path: ClassVar[Path | None] = None

    database_url: str = "sqlite:///dnsbl.sqlite3"
    # Seconds: making a connection (or waiting for a free one), and one statement or commit.
    # A database slower than this is "unavailable": the API answers 503, a node keeps its index.
    database_connect_timeout: float = Field(5.0, gt=0, le=3600)
    database_statement_timeout: float = Field(10.0, gt=0, le=86400)
    log_level: str | None = None  # the older spelling of log.level, still honoured
    log: LogSettings = LogSettings()
    dns: DnsSettings = DnsSettings()
    api: ApiSettings = ApiSettings()
    zones: list[ZoneSettings] = []
    tester: TesterSettings = TesterSettings()
    traps: TrapsSettings = TrapsSettings()
    reports: ReportsSettings = ReportsSettings()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return check_database_url(value)

    @model_validator(mode="after")
    def _unique_zones(self) -> Settings:
        seen: set[str] = set()
        for zone in self.zones:
            if zone.name in seen:
                raise ValueError(f"zone {zone.name!r} is declared twice")
            seen.add(zone.name)
        return self

    @model_validator(mode="after")
    def _trap_zone(self) -> Settings:
        if (
            self.traps.zone is not None
            and self.traps.zone.rstrip(".").lower() not in self.zone_names
        ):
            raise ValueError(f"traps.zone {self.traps.zone!r} is not a configured zone")
        return self

    @model_validator(mode="after")
    def _older_log_level(self) -> Settings:
        if self.log_level is not None and "level" not in self.log.model_fields_set:
            self.log.level = LogSettings.model_validate({"level": self.log_level}).level
        return self

    @model_validator(mode="after")
    def _txt_points_at_lookup(self) -> Settings:
        # A zone without its own TXT template sends mail admins to this API's lookup page.
        for zone in self.zones:
            if "txt" not in zone.model_fields_set:
                zone.txt = f"Listed: see {self.api.public_url.rstrip('/')}/lookup/$"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)

    def zone(self, name: str) -> ZoneSettings:
        """The configured zone called `name` (case-insensitive, trailing dot allowed)."""
        from dnsbl.errors import UnknownZoneError

        wanted = name.rstrip(".").lower()
        for zone in self.zones:
            if zone.name == wanted:
                return zone
        raise UnknownZoneError(f"unknown zone {name!r}; configured: {', '.join(self.zone_names)}")

    @property
    def zone_names(self) -> list[str]:
        return [zone.name for zone in self.zones]

    @property
    def spam_zone(self) -> ZoneSettings | None:
        """The zone spam sources are listed in (`traps.zone`, or the first zone)."""
        if self.traps.zone is not None:
            return self.zone(self.traps.zone)
        return self.zones[0] if self.zones else None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {message}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the settings from `path` (or `$DNSBL_CONFIG`) and the environment.

    Raises `ConfigError` with one line per bad key.
    """
    chosen = path or os.environ.get("DNSBL_CONFIG")
    toml_path = Path(chosen) if chosen else None
    if toml_path is not None:
        if not toml_path.is_file():
            raise ConfigError(f"config file {toml_path} does not exist")
        try:
            tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {toml_path} is not valid TOML: {exc}") from None
    bound = type("BoundSettings", (Settings,), {"toml_path": toml_path})
    try:
        settings: Settings = bound(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:  # a variable that must be JSON (a list, a table) is not
        raise ConfigError(_describe_variables(exc)) from None
    return settings


def _describe_variables(error: SettingsError) -> str:
    """The environment variables that hold a list or a table in something other than JSON."""
    lines = []
    for name, value in sorted(os.environ.items()):
        path = name.lower().removeprefix("dnsbl_").split("__")
        if not name.upper().startswith("DNSBL_") or not _holds_json(Settings, path):
            continue
        try:
            json.loads(value)
        except ValueError:
            example = """a list is written '["a", "b"]', a table '{"key": "value"}'"""
            lines.append(f"  {name} ({'.'.join(path)}): {value!r} is not JSON ({example})")
    return "invalid configuration:\n" + ("\n".join(lines) or f"  {error}")


def _holds_json(model: type[BaseModel], path: list[str]) -> bool:
    """Whether the key at `path` in `model` is a list, a table or a section (JSON in a variable)."""
    field = model.model_fields.get(path[0])
    kinds = (field.annotation, *typing.get_args(field.annotation)) if field else ()
    for kind in kinds:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return len(path) == 1 or _holds_json(kind, path[1:])
    return len(path) == 1 and any(typing.get_origin(kind) in (list, dict) for kind in kinds)
