"""``GET /metrics``: the server's Prometheus metrics (an API key is needed, as everywhere
but the health checks; Prometheus sends it with ``authorization: {credentials: KEY}``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from talkface.api.metrics import metrics_of
from talkface.api.routes._deps import KeyHolder

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def get_metrics(request: Request, principal: KeyHolder) -> Response:
    """Latency per stage, engine batches and queues, sessions, renders, requests, errors."""
    registry = metrics_of(request).registry
    # Some values are read from disk (pending renders): not on the event loop.
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
