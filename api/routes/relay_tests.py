"""`/v1/relay-tests/{id}`: one relay test and its evidence (transcript, arrivals). Public."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import EngineDep
from api.problems import Problem, responses
from api.schemas.public import RelayTestPublic
from dnsbl.relay import evidence as relay_tests

router = APIRouter(prefix="/v1/relay-tests", tags=["public"])


@router.get("/{test_id}", response_model=RelayTestPublic, responses=responses(404, 422, 500))
def read_relay_test(
    test_id: Annotated[int, Path(ge=1, le=2**31 - 1)], engine: EngineDep
) -> RelayTestPublic:
    """The evidence of one test: banner, EHLO reply, reverse DNS, the SMTP transcript, the
    envelope forms the host accepted, which test messages arrived and which IP delivered them."""
    test = relay_tests.get_test(engine, test_id)
    if test is None:
        raise Problem(404, "not-found", f"no relay test {test_id}")
    return RelayTestPublic.model_validate(test)
