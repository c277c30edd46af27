"""Property-based fuzzing of the whole REST API from its own OpenAPI document (schemathesis).

Runs in process against the ASGI app on SQLite, with an admin key: for every operation, a few
schema-valid and a few schema-violating generated requests (several hundred in all). No request,
however malformed, may get a 500, and every answer must match the status codes, content types,
headers and schemas the document declares. Schemathesis's two acceptance heuristics are left
out: a well-formed address outside the testable space is rightly refused, and so on.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from api.app import create_app
from dnsbl.addresses import parse_network
from dnsbl.apikeys import create_key
from dnsbl.config import load_settings
from dnsbl.db import make_engine
from dnsbl.listings.store import Entry, ListingStore
from tests.conftest import zone_config

pytestmark = pytest.mark.fuzz

# A spam report's body is a raw message: sent as the bytes generated (octet-stream's way).
schemathesis.serializer.alias("message/rfc822", "application/octet-stream")

EXAMPLES_PER_MODE = 6  # per operation; 23 operations x 2 modes: some 270 requests


@pytest.fixture
def api_schema(sqlite_url: str) -> Any:
    config = load_settings(
        None,
        database_url=sqlite_url,
        zones=[zone_config()],
        tester={"testable_networks": ["192.0.2.0/24", "2001:db8::/32"]},
    )
    engine = make_engine(sqlite_url)
    store = ListingStore(engine)
    store.ensure_zones(config.zone_names)
    store.add(
        "bl.example.org",
        [Entry(parse_network("192.0.2.25"), category="open-relay")],
        actor="fuzz",
        source="relay-test",
    )
    key = create_key(engine, "admin", "fuzz").key
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(config, engine))
    return schema, {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_document(api_schema: Any, mode: GenerationMode) -> None:
    schema, headers = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_MODE,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            case.call_and_validate(
                headers=headers,
                excluded_checks=[checks.positive_data_acceptance, checks.negative_data_rejection],
            )

        try:
            run()
        except Unsatisfiable:  # nothing to violate (no parameters, no body): nothing to send
            assert mode is GenerationMode.NEGATIVE
