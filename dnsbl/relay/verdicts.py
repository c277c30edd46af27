"""Verdicts, and what they do to the list.

A host is a *confirmed* open relay only when a message carrying one of its test's tokens
arrived at the collector. Accepted but never delivered is *suspicious*: kept as evidence, never
listed (honeypots and accept-then-bounce servers accept everything). Refused everywhere is
*closed*; no usable SMTP service is *untestable*.

A confirmation lists the host (category `open-relay`) in every relay zone, and each IP that
delivered on its behalf and is not the host itself (a multi-stage relay's *output*, category
`relay-output`) — or extends those listings when they exist. A *closed* verdict ends the
host's relay-test listings and the output listings its earlier tests made. Suspicious and
untestable leave listings as they are: they run to their expiry unless a retest confirms them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from dnsbl.addresses import parse_network, peer_address
from dnsbl.config import Settings, ZoneSettings
from dnsbl.errors import DnsblError
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.manual import ListingRule, list_entries
from dnsbl.listings.rows import Source
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.models import Listing, utcnow
from dnsbl.models.relay import ProbeToken, RelayTest, RelayTestListing, TokenArrival
from dnsbl.relay.evidence import ArrivalView, arrivals_for, link_listings, revise_verdict
from dnsbl.relay.states import RelayCategory, Verdict
from dnsbl.relay.tester.probe import Outcome, ProbeReport

# The code of a relay category in a zone that does not configure it.
_FALLBACK_CODES = {RelayCategory.OPEN_RELAY: "127.0.0.2", RelayCategory.RELAY_OUTPUT: "127.0.0.3"}


def decide(report: ProbeReport, arrivals: list[ArrivalView]) -> tuple[Verdict, str | None]:
    """The verdict on a probe and the arrivals of its tokens, with a reason."""
    retried = f", after {report.retry} greylisting retr{'y' if report.retry == 1 else 'ies'}"
    after = retried if report.retry else ""
    if arrivals:
        forms = sorted({arrival.form for arrival in arrivals})
        return Verdict.CONFIRMED, (
            f"test messages arrived at the collector ({', '.join(forms)}){after}"
        )
    accepted = [r.form.name for r in report.forms if r.accepted or _is_2xx(r.rcpt_reply)]
    if accepted:
        return Verdict.SUSPICIOUS, (
            f"accepted {len(accepted)} relay form(s) ({', '.join(accepted[:5])}) "
            "but no test message arrived"
        )
    if report.outcome == Outcome.UNTESTABLE:
        return Verdict.UNTESTABLE, report.reason or "the host could not be tested"
    # A temporary answer to a recipient plainly in the collector's domain is no refusal: an
    # open relay that greylists answers so first. Closed is only what was refused for good.
    held = [r.form.name for r in report.held]
    if held:
        return Verdict.UNTESTABLE, (
            f"{len(held)} form(s) to the collector's domain got only a temporary answer "
            f"({', '.join(held[:5])}){after}: greylisting or a full queue, not a refusal"
        )
    replies = [reply for r in report.forms for reply in (r.mail_reply, r.rcpt_reply) if reply]
    if replies and not any(str(reply)[:1] == "5" for reply in replies):
        # Only 4xx answers (greylisting, a full queue): nothing was refused for good.
        return Verdict.UNTESTABLE, report.reason or "only temporary failures"
    return Verdict.CLOSED, (report.reason or "refused every relay form") + after


def _is_2xx(reply: str | None) -> bool:
    return bool(reply) and str(reply)[:1] == "2"


def confirm_late_arrivals(engine: Engine, settings: Settings, *, days: float = 7.0) -> list[int]:
    """Confirm suspicious tests whose tokens arrived after their wait window; their ids.

    A relay that queues before delivering (a slow multi-stage chain, a retry after a
    temporary failure) proves itself open late; the newest test of a host is what counts,
    so a suspicious test is revised only while no later test of the host has a verdict.
    A dry test (a self-test's, a dry run's) is revised too, and lists nothing.
    """
    since = utcnow() - timedelta(days=days)
    with engine.connect() as conn:
        rows = conn.execute(
            select(RelayTest.id, RelayTest.address, RelayTest.dry_run)
            .join(ProbeToken, ProbeToken.test_id == RelayTest.id)
            .join(TokenArrival, TokenArrival.token == ProbeToken.token)
            .where(RelayTest.verdict == Verdict.SUSPICIOUS, RelayTest.started_at > since)
            .distinct()
        ).all()
        revised = []
        for test_id, address, dry_run in rows:
            newer = conn.scalar(
                select(RelayTest.id).where(
                    RelayTest.address == address,
                    RelayTest.id > test_id,
                    RelayTest.verdict.is_not(None),
                )
            )
            if newer is None:
                revised.append((test_id, address, dry_run))
    confirmed = []
    for test_id, address, dry_run in revised:
        arrivals = arrivals_for(engine, test_id)
        forms = ", ".join(sorted({arrival.form for arrival in arrivals}))
        reason = f"test messages arrived after the wait window ({forms})"
        if revise_verdict(engine, test_id, Verdict.SUSPICIOUS, Verdict.CONFIRMED, reason):
            if not dry_run:
                apply_verdict(engine, settings, test_id, address, Verdict.CONFIRMED, arrivals)
            confirmed.append(test_id)
    return confirmed


def outputs_of(address: str, arrivals: Iterable[ArrivalView]) -> list[str]:
    """The IPs that delivered for `address` other than itself: a multi-stage relay's outputs."""
    tested = peer_address(address)
    seen: list[str] = []
    for arrival in arrivals:
        try:
            ip = peer_address(arrival.delivered_by)
        except ValueError:
            continue
        if ip != tested and str(ip) not in seen:
            seen.append(str(ip))
    return seen


def relay_zones(settings: Settings) -> list[ZoneSettings]:
    """The zones relays are listed in: `tester.list_zones`, or every configured zone."""
    if settings.tester.list_zones:
        return [settings.zone(name) for name in settings.tester.list_zones]
    return list(settings.zones)


def _entry(
    zone: ZoneSettings, address: str, category: RelayCategory, reason: str, until: datetime
) -> Entry:
    # A code left None follows the zone's configuration of the category, if it has one.
    code = None if category in zone.categories else _FALLBACK_CODES.get(category)
    return Entry(
        parse_network(address),
        category=category,
        code=code,
        txt=None,  # the zone's TXT template, which points to the evidence
        reason=reason,
        expires_at=until,
    )


def apply_verdict(
    engine: Engine,
    settings: Settings,
    test_id: int,
    address: str,
    verdict: Verdict,
    arrivals: list[ArrivalView],
) -> list[str]:
    """Make the list agree with a test's verdict; returns notes on what was (not) done."""
    if verdict == Verdict.CONFIRMED:
        return _list_relay(engine, settings, test_id, address, arrivals)
    if verdict == Verdict.CLOSED:
        ended = end_relay_listings(
            engine, address, reason=f"closed on relay test #{test_id}", actor=f"test-{test_id}"
        )
        return [f"ended {ended} listing(s)"] if ended else []
    return []


def _list_relay(
    engine: Engine,
    settings: Settings,
    test_id: int,
    address: str,
    arrivals: list[ArrivalView],
) -> list[str]:
    store = ListingStore(engine)
    rule = ListingRule.load(store)
    until = utcnow() + timedelta(days=settings.tester.listing_days)
    actor = f"test-{test_id}"
    notes: list[str] = []
    targets = [(address, RelayCategory.OPEN_RELAY, f"open relay: relay test #{test_id} delivered")]
    targets += [
        (
            output,
            RelayCategory.RELAY_OUTPUT,
            f"output of multi-stage relay {address}: relay test #{test_id}",
        )
        for output in outputs_of(address, arrivals)
    ]
    listing_ids: list[int] = []
    refusals: list[DnsblError] = []

    def refused(_entry: Entry, problem: DnsblError) -> None:
        refusals.append(problem)

    for ip, category, reason in targets:
        refusals.clear()
        for zone in relay_zones(settings):
            result = list_entries(
                store,
                zone.name,
                [_entry(zone, ip, category, reason, until)],
                actor=actor,
                source=Source.RELAY_TEST,
                refused=refused,
                rule=rule,
            )
            if refusals:
                notes.append(f"{ip} not listed: {refusals[0]}")
                break  # refused by policy: the same in every zone
            listing_ids += result.listing_ids
            notes.append(f"{ip} listed in {zone.name} as {category}")
    link_listings(engine, test_id, listing_ids)
    return notes


def relay_listings(engine: Engine, address: str) -> list[Listing]:
    """The listings relay tests made of exactly `address` that are in force, in every zone."""
    net = parse_network(address)
    return [
        listing
        for listing in listings_containing(engine, address)
        if listing.source == Source.RELAY_TEST
        and not listing.excluded
        and listing.prefixlen == net.prefixlen
    ]


def end_relay_listings(engine: Engine, address: str, *, reason: str, actor: str) -> int:
    """End `address`'s open-relay listings and the output listings its tests made."""
    ids = [
        listing.id
        for listing in relay_listings(engine, address)
        if listing.category == RelayCategory.OPEN_RELAY
    ]
    with engine.connect() as conn:
        ids += list(
            conn.scalars(
                select(RelayTestListing.listing_id)
                .join(RelayTest, RelayTest.id == RelayTestListing.test_id)
                .join(Listing, Listing.id == RelayTestListing.listing_id)
                .where(RelayTest.address == address, Listing.ended_at.is_(None))
            )
        )
    ids = sorted(set(ids))
    if not ids:
        return 0
    ListingStore(engine).end_ids(ids, actor=actor, reason=reason)
    return len(ids)
