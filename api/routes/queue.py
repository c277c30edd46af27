"""`/v1/admin/queue`: the job queue — what is waiting, running, failed or done."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import OperatorKey
from api.deps import EngineDep
from api.problems import responses
from api.schemas.admin import JobPublic, QueuePublic
from dnsbl.relay import jobs
from dnsbl.relay.states import JobStatus

router = APIRouter(prefix="/v1/admin/queue", tags=["admin: queue"])


@router.get("", response_model=QueuePublic, responses=responses(401, 403, 422, 500))
def read_queue(
    key: OperatorKey,
    engine: EngineDep,
    status: JobStatus = JobStatus.WAITING,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> QueuePublic:
    """How many jobs are in each state, and the jobs in `status`, newest first."""
    items = jobs.list_jobs(engine, status, limit, offset)
    return QueuePublic(
        counts=jobs.queue_summary(engine),
        status=status,
        items=[JobPublic.model_validate(job) for job in items],
        limit=limit,
        offset=offset,
    )
