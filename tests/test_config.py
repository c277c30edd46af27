"""Configuration: TOML, environment overrides, and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsbl.config import load_settings
from dnsbl.errors import ConfigError

GOOD = """
database_url = "sqlite:///x.sqlite3"
[dns]
listen = ["127.0.0.1:5353", "[::1]:5353"]
transfer_peers = ["192.0.2.53", "198.51.100.0/24"]
[[zones]]
name = "BL.Example.ORG."
ns = ["ns1.example.org"]
hostmaster = "hostmaster.example.org"
ttl = 60
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dnsbl.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_and_names_are_normalised(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD))
    zone = settings.zone("bl.example.org.")
    assert zone.name == "bl.example.org" and zone.ttl == 60 and zone.negative_ttl == 300
    assert settings.dns.listen == ["127.0.0.1:5353", "[::1]:5353"]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNSBL_DATABASE_URL", "sqlite:///other.sqlite3")
    monkeypatch.setenv("DNSBL_DNS__LISTEN", '["127.0.0.2:53"]')
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.database_url == "sqlite:///other.sqlite3"
    assert settings.dns.listen == ["127.0.0.2:53"]


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNSBL_CONFIG", str(write(tmp_path, GOOD)))
    assert load_settings().zone_names == ["bl.example.org"]


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        ("ttl = 60", "zones.0.ttl", "integer"),
        ('name = "BL.Example.ORG."', "zones.0.name", "not a valid domain name"),
        ('listen = ["127.0.0.1:5353", "[::1]:5353"]', "dns.listen", "ADDRESS:PORT"),
        ('transfer_peers = ["192.0.2.53", "198.51.100.0/24"]', "dns.transfer_peers", "network"),
    ],
)
def test_a_bad_value_is_refused_naming_key_and_problem(
    tmp_path: Path, change: str, key: str, problem: str
) -> None:
    broken = {
        "zones.0.ttl": 'ttl = "soon"',
        "zones.0.name": 'name = "bl..example"',
        "dns.listen": 'listen = ["nowhere"]',
        "dns.transfer_peers": 'transfer_peers = ["300.1.2.3"]',
    }[key]
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, GOOD.replace(change, broken)))
    assert key in str(caught.value) and problem in str(caught.value)


def test_unknown_keys_and_codes_outside_127_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"zones\.0\.colour"):
        load_settings(write(tmp_path, GOOD + 'colour = "red"\n'))
    with pytest.raises(ConfigError, match=r"zones.0.default_code: .*127\.0\.0\.0/8"):
        load_settings(write(tmp_path, GOOD + 'default_code = "10.0.0.2"\n'))


def test_duplicate_zones_missing_file_and_bad_toml(tmp_path: Path) -> None:
    zone = GOOD[GOOD.index("[[zones]]") :]
    with pytest.raises(ConfigError, match="declared twice"):
        load_settings(write(tmp_path, GOOD + zone))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[dns\n"))


def test_tester_sources_and_collector_endpoints_per_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tester = '[tester]\nsource_address = ["192.0.2.25", "2001:DB8::25"]\n'
    tester += 'collector_listen = ["0.0.0.0:25", "[::]:25"]\n'
    settings = load_settings(write(tmp_path, GOOD + tester)).tester
    assert settings.source_address == ["192.0.2.25", "2001:db8::25"]
    assert settings.source_for("198.51.100.7") == "192.0.2.25"
    assert settings.source_for("2001:db8:1::7") == "2001:db8::25"
    assert settings.collector_endpoints == [("0.0.0.0", 25), ("::", 25)]
    # one address (the old form) still works, for its family only
    monkeypatch.setenv("DNSBL_TESTER__SOURCE_ADDRESS", "192.0.2.25")
    monkeypatch.setenv("DNSBL_TESTER__COLLECTOR_LISTEN", "127.0.0.1:2525")
    settings = load_settings(write(tmp_path, GOOD)).tester
    assert settings.source_address == "192.0.2.25"
    assert settings.source_for("2001:db8:1::7") is None
    assert settings.collector_endpoints == [("127.0.0.1", 2525)]


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ('source_address = ["192.0.2.1", "192.0.2.2"]', "at most one address per family"),
        ('source_address = ["nowhere"]', "is not an IP address"),
        ("collector_listen = []", "at least one ADDRESS:PORT"),
        ('collector_listen = ["127.0.0.1:25", "here"]', "is not ADDRESS:PORT"),
        ("greylist_attempts = -1", "greater than or equal to 0"),
        ("greylist_retry = 0", "greater than 0"),
    ],
)
def test_bad_tester_addresses_are_refused(tmp_path: Path, setting: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, GOOD + f"[tester]\n{setting}\n"))
    assert "tester." in str(caught.value) and problem in str(caught.value)


def test_access_rate_limit_and_cookies_load_and_bad_values_name_their_key(
    tmp_path: Path,
) -> None:
    sections = (
        "\n[zones.access]\n"
        'allow = ["192.0.2.0/24", "2001:db8::/32"]\nkeys = true\ndenied = "code"\n'
        '[dns.rate_limit]\nresponses_per_second = 20\nexempt = ["198.51.100.0/24"]\n'
        '[dns.cookies]\nsecret = "AAECAwQFBgcICQoLDA0ODw=="\n'
    )
    settings = load_settings(write(tmp_path, GOOD + sections))
    access = settings.zones[0].access
    assert access.keys and access.denied == "code" and not access.open
    assert settings.dns.rate_limit.responses_per_second == 20 and settings.dns.rate_limit.slip == 2
    assert settings.dns.tcp_max_per_source == 8
    assert load_settings(write(tmp_path, GOOD)).zones[0].access.open  # the default: everyone
    for wrong, key in (
        ('denied = "code"', "zones.0.access.denied"),
        ('allow = ["192.0.2.0/24", "2001:db8::/32"]', "zones.0.access.allow"),
        ('secret = "AAECAwQFBgcICQoLDA0ODw=="', "dns.cookies.secret"),
        ("responses_per_second = 20", "dns.rate_limit.responses_per_second"),
    ):
        bad = {
            "zones.0.access.denied": 'denied = "silence"',
            "zones.0.access.allow": 'allow = ["192.0.2.0/33"]',
            "dns.cookies.secret": 'secret = "c2hvcnQ="',
            "dns.rate_limit.responses_per_second": "responses_per_second = -1",
        }[key]
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_settings(write(tmp_path, GOOD + sections.replace(wrong, bad)))
