"""The database tables. Importing this package registers every table on `Base.metadata`.

One module per area: `listings` (the listing store and its change log); later areas add
theirs here so that Alembic sees the whole schema.
"""

from dnsbl.models.access import AccessKey, AccessKeyUsage  # noqa: F401 (access keys)
from dnsbl.models.api import ApiKey, AuditEntry  # noqa: F401 (registers the API tables)
from dnsbl.models.base import Base, utcnow
from dnsbl.models.listings import Change, Listing, ListingValue, Zone
from dnsbl.models.relay import Job, Nomination, RelayTest  # noqa: F401 (relay testing)
from dnsbl.models.traps import SpamEvidence, SpamSource  # noqa: F401 (traps and reports)

__all__ = ["Base", "Change", "Listing", "ListingValue", "Zone", "utcnow"]
