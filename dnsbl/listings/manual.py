"""The one rule for listing a network directly: by an admin, an import, a verdict or a report.

Whoever lists — `dnsbl list`, `dnsbl import`, `POST /v1/admin/listings`, a relay test's
verdict, a spam report — goes through `list_entries`, which decides in one place:

- a return code must be one (an IPv4 address in 127.0.0.0/8);
- an expiry must lie in the future;
- a TXT must be one a zone serves (at most `MAX_TXT_BYTES`; never cut when answered);
- a listing that meets a never-list network in any way (covers it, lies in it, or overlaps
  part of it) is refused with the policy entry named; exclusions list nothing and pass;
- what passes is written in one transaction by `ListingStore.add`.

A refusal raises (nothing is written) unless the caller takes refused entries one by one
(`refused=`), as an import does: it reports them and writes the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime

from dnsbl.addresses import Network, parse_return_code
from dnsbl.errors import DnsblError, ExpiryError, NeverListed, TxtTooLong
from dnsbl.index.txt_template import txt_too_long
from dnsbl.listings.rows import Source
from dnsbl.listings.store import Entry, ListingStore, WriteResult
from dnsbl.models import utcnow
from dnsbl.policy import NeverList

Refused = Callable[[Entry, DnsblError], None]


class ListingRule:
    """The checks of the rule at one moment: the never-list networks and the clock."""

    def __init__(self, never_list: NeverList, now: datetime | None = None) -> None:
        self.never_list = never_list
        self.now = now or utcnow()

    @classmethod
    def load(cls, store: ListingStore) -> ListingRule:
        return cls(NeverList.load(store.engine))

    def value_refusal(
        self, network: Network, code: str | None, txt: str | None
    ) -> DnsblError | None:
        """Why a listing of `network` may not answer `code` and `txt`, or None."""
        if code is not None:
            try:
                parse_return_code(code)
            except DnsblError as exc:
                return exc
        if txt is not None and (too_long := txt_too_long(txt)):
            return TxtTooLong(f"{network}: {too_long}")
        return None

    def refusal(self, entry: Entry) -> DnsblError | None:
        """Why `entry` may not be written, or None."""
        problem = self.value_refusal(entry.network, entry.code, entry.txt)
        if problem is not None:
            return problem
        if entry.expires_at is not None and entry.expires_at <= self.now:
            return ExpiryError(f"the expiry {entry.expires_at.isoformat()} is in the past")
        if not entry.excluded:
            why = self.never_list.refusal_of(entry.network)
            if why is not None:
                return NeverListed(f"{entry.network}: {why}")
        return None

    def never_list_refusal(self, family: int, first: int, last: int) -> str | None:
        """The never-list check alone, for a range read from a data file before it is an entry
        (the importer reports the line it came from)."""
        return self.never_list.refusal(family, first, last)

    def passed(self, entries: Iterable[Entry], refused: Refused | None) -> Iterator[Entry]:
        """The entries that pass; the others raise, or go to `refused`."""
        for entry in entries:
            problem = self.refusal(entry)
            if problem is None:
                yield entry
            elif refused is None:
                raise problem
            else:
                refused(entry, problem)


def list_entries(
    store: ListingStore,
    zone: str,
    entries: Iterable[Entry],
    *,
    actor: str,
    source: Source,
    replace_categories: Collection[str] = (),
    refused: Refused | None = None,
    rule: ListingRule | None = None,
) -> WriteResult:
    """List (or exclude) `entries` in `zone` under the rule, in one transaction.

    Without `refused`, the first entry the rule refuses raises its error and nothing is
    written. With it, each refused entry is handed to it and the others are written.
    """
    rule = rule or ListingRule.load(store)
    # Checked in full before the write begins: a refusal must leave nothing half-written.
    accepted = list(rule.passed(entries, refused))
    return store.add(
        zone, accepted, actor=actor, source=source, replace_categories=replace_categories
    )
