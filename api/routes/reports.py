"""`/v1/admin/reports`: a user's spam, sent in as the raw message (`message/rfc822`).

Allowed for admin keys and reporter keys. The source is the first Received hop outside
`traps.trusted_relays`; it is listed in the spam-source category once `reports.threshold`
distinct reporters (keys) have reported it within `reports.window_days`. Every report is kept
as evidence, redacted as a trap hit is.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api import audit
from api.auth import ReporterKey, actor
from api.deps import EngineDep, SettingsDep
from api.problems import Problem, responses
from api.schemas.reports import ReportFiled
from dnsbl.traps.escalation import one_sighting
from dnsbl.traps.intake import take_report

router = APIRouter(prefix="/v1/admin/reports", tags=["admin: reports"])

_MEDIA_TYPES = ("message/rfc822", "text/plain", "application/octet-stream")


@router.post(
    "",
    response_model=ReportFiled,
    status_code=status.HTTP_201_CREATED,
    responses=responses(400, 401, 403, 413, 415, 422, 500),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The reported message as received, headers included (RFC 5322)",
            "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def file_report(
    request: Request,
    response: Response,
    key: ReporterKey,
    engine: EngineDep,
    settings: SettingsDep,
) -> ReportFiled:
    """Report a spam message. 422 when its Received chain names no host outside the trusted
    relays (nobody to list); the answer says whether the source is now listed."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _MEDIA_TYPES:
        raise Problem(415, "unsupported-media-type", "send the message as message/rfc822")
    raw = await request.body()
    if not raw.strip():
        raise Problem(422, "empty-report", "the report holds no message")
    # The evidence, the listing it leads to and the audit entry: all committed, or none.
    with one_sighting(engine):
        taken = take_report(engine, settings, raw, actor(key))
        listed = taken.listed
        audit.record(
            engine,
            key,
            "report.file",
            taken.address,
            detail={"evidence_id": taken.evidence_id, "listed": bool(listed and listed.listing_id)},
        )
    response.headers["Location"] = f"/v1/lookup/{taken.address}"
    zone = settings.spam_zone
    return ReportFiled(
        evidence_id=taken.evidence_id,
        source=taken.address,
        listed=bool(listed and listed.listing_id),
        listing_id=listed.listing_id if listed else None,
        zone=zone.name if zone is not None and listed and listed.listing_id else None,
        expires_at=listed.expires_at if listed else None,
        refused=listed.refused if listed else None,
        reporters=taken.reporters,
        threshold=settings.reports.threshold,
    )
