"""Live sessions: WebRTC (``POST /v1/sessions/webrtc``) and WebSocket (``/v1/sessions/ws``).

Creating a session and connecting its media is one request, because ``talkface serve
--workers N`` runs processes that do not share sessions: the process that creates a
session is the one that serves it. The message protocol is in
:mod:`talkface.api.schemas` and :mod:`talkface.api.realtime`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket
from fastapi.responses import Response

from talkface.api.auth import Principal
from talkface.api.deps import require_access, require_ready, state_of
from talkface.api.realtime.hub import RealtimeHub
from talkface.api.realtime.ice import install_candidate_policy
from talkface.api.realtime.session import check_avatar, conversation_options
from talkface.api.realtime.webrtc import WebRTCTransport, check_offer
from talkface.api.realtime.websocket import serve_websocket
from talkface.api.schemas import ErrorResponse, LiveSessionInfo, WebRTCAnswer, WebRTCOffer
from talkface.api.state import ServerState
from talkface.conversation import TurnRecord


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.talkface
    install_candidate_policy(listen_host=state.settings.server.host)
    hub = RealtimeHub()
    app.state.realtime_hub = hub
    try:
        yield
    finally:
        await hub.aclose(state.settings.server.shutdown_grace_s)


router = APIRouter(tags=["sessions"], lifespan=_lifespan)
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 429, 503)}


def _hub(app: Any) -> RealtimeHub:
    return app.state.realtime_hub


def _turn_observer(app: Any) -> Callable[[TurnRecord], None] | None:
    metrics = getattr(app.state, "metrics", None)
    if metrics is None:
        return None
    return lambda record: metrics.observe_turn(record.trace)


def _error_counter(app: Any) -> Callable[[str], None] | None:
    metrics = getattr(app.state, "metrics", None)
    return None if metrics is None else metrics.count_error


@router.post("/v1/sessions/webrtc", response_model=WebRTCAnswer, responses=_ERRORS)
async def create_webrtc_session(
    offer: WebRTCOffer,
    request: Request,
    principal: Principal = Depends(require_access),
) -> WebRTCAnswer:
    """Create a live session and connect it over WebRTC, in one request.

    Post the browser's SDP offer (ICE gathering complete) and the session options; the
    answer carries the SDP answer and the new session's id. 503 with ``Retry-After``
    when the server is at its session limit, still loading its models, shutting down, or
    too busy to start the session in time.
    """
    state = require_ready(request)
    state.sessions.check_admission()
    options = conversation_options(state.runtime, offer.options)
    await check_avatar(request.app, offer.options.avatar_id, principal)
    check_offer(offer.sdp)  # before a session is started for it
    live = await state.sessions.create(principal, options)  # time-limited
    live.transport = "webrtc"
    app = request.app

    async def close_session() -> None:
        await state.sessions.close(live.session_id)

    transport = WebRTCTransport(live, state, close_session, observe_turn=_turn_observer(app),
                                count_error=_error_counter(app))
    try:
        sdp = await transport.connect(offer.sdp)  # time-limited; a bad avatar: 400
    except BaseException:
        transport.close("the offer was refused")
        await transport.run()  # tears down the connection and the session
        raise
    _hub(app).start(transport)
    return WebRTCAnswer(sdp=sdp, session_id=live.session_id)


@router.websocket("/v1/sessions/ws")
async def websocket_session(websocket: WebSocket) -> None:
    """A live session over one WebSocket (see :mod:`talkface.api.realtime.websocket`)."""
    app = websocket.app
    await serve_websocket(websocket, app.state.talkface, observe_turn=_turn_observer(app),
                          count_error=_error_counter(app))


@router.get("/v1/sessions/{session_id}", response_model=LiveSessionInfo, responses=_ERRORS)
async def get_session(session_id: str, request: Request,
                      principal: Principal = Depends(require_access)) -> LiveSessionInfo:
    """A live session of this key (served by this process)."""
    live = state_of(request).sessions.get(session_id, principal)
    return LiveSessionInfo(session_id=live.session_id, transport=live.transport,  # type: ignore[arg-type]
                           created_at=live.created_s, turns=live.conversation.turn_count)


@router.delete("/v1/sessions/{session_id}", status_code=204, responses=_ERRORS)
async def end_session(session_id: str, request: Request,
                      principal: Principal = Depends(require_access)) -> Response:
    """End a live session now (its connection is closed)."""
    state = state_of(request)
    state.sessions.get(session_id, principal)  # 404 unless it is this key's
    if not await _hub(request.app).close(session_id, "ended by DELETE /v1/sessions"):
        await state.sessions.close(session_id)
    return Response(status_code=204)
