"""FastAPI dependencies: the server state and who is calling."""

from __future__ import annotations

from fastapi import Header, Query, Request, WebSocket

from talkface.api.auth import Principal, bearer
from talkface.api.state import ServerState
from talkface.errors import Overloaded


def state_of(request: Request) -> ServerState:
    return request.app.state.talkface


def require_key(request: Request, authorization: str | None = Header(None)) -> Principal:
    """An API key is required (programs: renders, OpenAI endpoints, tokens)."""
    return state_of(request).auth.authenticate(bearer(authorization), allow_session=False)


def require_access(request: Request, authorization: str | None = Header(None)) -> Principal:
    """An API key or a session token (what the browser page has)."""
    return state_of(request).auth.authenticate(bearer(authorization), allow_session=True)


def websocket_principal(websocket: WebSocket, token: str | None = Query(None)) -> Principal:
    """Browsers cannot set headers on a WebSocket: the token may come as ``?token=``."""
    credential = bearer(websocket.headers.get("authorization")) or token
    return websocket.app.state.talkface.auth.authenticate(credential, allow_session=True)


def require_ready(request: Request) -> ServerState:
    """The models must be loaded; until then, 503 with Retry-After."""
    state = state_of(request)
    if not state.ready:
        reason = state.failed or f"still loading: {', '.join(state.loading)}"
        raise Overloaded(f"the server is not ready ({reason})", retry_after_s=5.0)
    return state
