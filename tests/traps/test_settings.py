"""`[traps]` and `[reports]`: a bad value is refused at start, naming the key."""

from __future__ import annotations

import pytest

from dnsbl.config import load_settings
from dnsbl.errors import ConfigError
from tests.conftest import zone_config


@pytest.mark.parametrize(
    ("traps", "message"),
    [
        (
            {"addresses": ["no-at-sign"]},
            "traps.addresses: Value error, 'no-at-sign' is not an email",
        ),
        ({"domains": ["bad domain"]}, "traps.domains"),
        ({"trusted_relays": ["mx.example.org"]}, "is not an IP address or network"),
        ({"listen": "localhost:25"}, "traps.listen"),
        ({"zone": "other.example.org"}, "traps.zone 'other.example.org' is not a configured zone"),
        ({"first_days": 0}, "traps.first_days"),
    ],
)
def test_bad_trap_settings_name_the_key(traps: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(None, zones=[zone_config()], traps=traps)
    assert message.replace("Value error, ", "") in str(refused.value)


def test_defaults_and_the_spam_zone() -> None:
    settings = load_settings(None, zones=[zone_config(), zone_config("two.example.org")])
    assert not settings.traps.enabled and settings.traps.category == "spam-source"
    assert (settings.traps.first_days, settings.traps.extra_days, settings.traps.max_days) == (
        15,
        15,
        90,
    )
    assert settings.spam_zone is not None and settings.spam_zone.name == "bl.example.org"
    chosen = load_settings(
        None,
        zones=[zone_config(), zone_config("two.example.org")],
        traps={"zone": "TWO.example.org.", "addresses": ["Trap@Example.NET"]},
        reports={"threshold": 3},
    )
    assert chosen.spam_zone is not None and chosen.spam_zone.name == "two.example.org"
    assert chosen.traps.addresses == ["trap@example.net"] and chosen.traps.enabled
    assert chosen.reports.threshold == 3
