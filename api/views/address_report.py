"""An address's public report: the listings in force per zone and category, as the DNS answers
them, and the relay tests that are the evidence.

The store returns every active listing whose network contains the address, most specific
first; per zone and category the first one decides, and an exclusion there means "not listed
in that category" — the same longest-prefix rule the zone index applies. The RFC 5782 test
addresses are answered as the DNS answers them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import quote

from sqlalchemy import Engine

from api.schemas.lookup import EvidenceLink, LookupListing, LookupPublic
from api.views.spam_sources import spam_section
from dnsbl.addresses import parse_address
from dnsbl.config import Settings
from dnsbl.index.txt_template import render_txt
from dnsbl.index.values import TEST_CATEGORY, ValueDefaults, is_never_listed, is_test_listed
from dnsbl.listings.covering import in_force, listings_containing
from dnsbl.models import Listing
from dnsbl.relay.evidence import RelayTestView, tests_for

log = logging.getLogger(__name__)

_RFC5782 = datetime(2010, 2, 1, tzinfo=UTC)  # the test addresses are listed since the RFC


def deciding_listings(listings: list[Listing], zones: list[str]) -> list[Listing]:
    """Per configured zone and category, the listing that decides (exclusions decide "no")."""
    return in_force(listing for listing in listings if listing.zone.name in zones)


def address_report(engine: Engine, settings: Settings, text: str) -> LookupPublic:
    """Everything the public may know about `text`; `AddressError` when it is not an address."""
    address = parse_address(text)
    shown = str(address)
    zones = settings.zone_names
    found: list[LookupListing] = []
    base = settings.api.public_url.rstrip("/")
    path = quote(shown, safe=":.")
    if not is_never_listed(address.version, int(address)):
        listings = listings_containing(engine, shown)
        for listing in deciding_listings(listings, zones):
            zone = settings.zone(listing.zone.name)
            defaults = ValueDefaults.of(zone)
            template = defaults.text(listing.txt)
            found.append(
                LookupListing(
                    zone=zone.name,
                    category=listing.category,
                    network=listing.network,
                    code=defaults.code(listing.category, listing.code),
                    txt=render_txt(template, shown) if template else None,
                    since=listing.created_at,
                    expires_at=listing.expires_at,
                    reason=listing.reason,
                    source=listing.source,
                    listing_id=listing.id,
                    spam=spam_section(engine, settings, listing, shown, f"{base}/delist/{path}"),
                )
            )
    if is_test_listed(address.version, int(address)):
        listed_zones = {item.zone for item in found}
        found.extend(
            _test_listing(settings, name, shown) for name in zones if name not in listed_zones
        )
    return LookupPublic(
        address=shown,
        listed=bool(found),
        listings=found,
        zones=zones,
        evidence=evidence_links(engine, settings, shown),
        page_url=f"{base}/lookup/{path}",
        delist_url=f"{base}/delist/{path}" if found else None,
    )


def _test_listing(settings: Settings, zone_name: str, address: str) -> LookupListing:
    zone = settings.zone(zone_name)
    return LookupListing(
        zone=zone.name,
        category=TEST_CATEGORY,
        network=address,
        code=ValueDefaults.of(zone).test_value.code,
        txt=None,
        since=_RFC5782,
        expires_at=None,
        reason="RFC 5782 test address: always listed",
        source="rfc5782",
        listing_id=None,
    )


def relay_tests_of(engine: Engine, address: str) -> list[RelayTestView]:
    """The relay tests of `address`, newest first."""
    tests = tests_for(engine, address)
    return sorted(tests, key=lambda t: (t.started_at is not None, t.started_at, t.id), reverse=True)


def evidence_links(engine: Engine, settings: Settings, address: str) -> list[EvidenceLink]:
    base = settings.api.public_url.rstrip("/")
    return [
        EvidenceLink(
            id=test.id,
            verdict=test.verdict,
            started_at=test.started_at,
            finished_at=test.finished_at,
            url=f"{base}/v1/relay-tests/{test.id}",
        )
        for test in relay_tests_of(engine, address)
    ]
