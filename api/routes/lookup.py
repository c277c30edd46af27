"""`/v1/lookup/{addr}`: is an address listed, where, why, and with what evidence. Public."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import EngineDep, SettingsDep
from api.problems import responses
from api.schemas.common import ADDRESS_SCHEMA
from api.schemas.lookup import LookupPublic
from api.views.address_report import address_report

router = APIRouter(prefix="/v1/lookup", tags=["public"])


@router.get("/{addr}", response_model=LookupPublic, responses=responses(400, 422, 500))
def lookup_address(
    addr: Annotated[
        str,
        Path(
            max_length=64,
            description="IPv4 or IPv6 address",
            examples=["192.0.2.25"],
            json_schema_extra=ADDRESS_SCHEMA,
        ),
    ],
    engine: EngineDep,
    settings: SettingsDep,
) -> LookupPublic:
    """Whether `addr` is listed: per zone and category the return code, since when, until
    when, the reason and source, and links to the relay tests that are the evidence.

    An address covered only by an exclusion, or by a more specific exclusion, is not listed
    (longest prefix wins, per zone and category, as in the DNS).
    """
    return address_report(engine, settings, addr)
