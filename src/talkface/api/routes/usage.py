"""``GET /v1/usage``: the calling key's daily quotas, what it used of each today, and when
they reset. Its router's lifespan opens the quota ledger (:mod:`talkface.api.quotas`)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from talkface.api.deps import state_of
from talkface.api.quotas import quota_ledger
from talkface.api.routes._deps import KeyHolder
from talkface.api.schemas import ErrorResponse, QuotaState, UsageReport
from talkface.errors import Overloaded
from talkface.services.quota_settings import QUOTA_UNITS
from talkface.services.quotas import utc_day

router = APIRouter(tags=["usage"], lifespan=quota_ledger,
                   responses={code: {"model": ErrorResponse} for code in (401, 403, 429, 503)})


@router.get("/v1/usage", response_model=UsageReport)
async def get_usage(request: Request, principal: KeyHolder) -> UsageReport:
    """Each daily quota of this key: ``used`` today (UTC), ``limit`` (null: unlimited),
    ``remaining``, and ``resets_at`` (the next UTC midnight, unix time)."""
    ledger = state_of(request).quotas
    if ledger is None:
        raise Overloaded("usage is not available yet: the server is starting", retry_after_s=5.0)
    quotas = ledger.usage(principal.key_id)
    resets_at = quotas[0].resets_at_s
    return UsageReport(
        key_id=principal.key_id, day=utc_day(resets_at - 1), resets_at=resets_at,
        quotas={q.kind: QuotaState(used=round(q.used, 3), limit=q.limit,
                                   remaining=None if q.remaining is None else round(q.remaining, 3),
                                   unit=QUOTA_UNITS[q.kind], resets_at=q.resets_at_s)
                for q in quotas},
    )
