"""FastAPI dependencies: the server state and who is calling."""

from __future__ import annotations

from fastapi import Header, Query, Request, WebSocket
from starlette.requests import HTTPConnection

from talkface.api.auth import Principal, bearer, websocket_credential
from talkface.api.state import ServerState
from talkface.errors import Overloaded


def state_of(request: Request) -> ServerState:
    """The server's state (settings, runtime, stores) that the app holds, from ``request``."""
    return request.app.state.talkface


def client_address(connection: HTTPConnection) -> str | None:
    """The caller's address (for the failed-login limit), as the server saw it."""
    return connection.client.host if connection.client is not None else None


def require_key(request: Request, authorization: str | None = Header(None)) -> Principal:
    """An API key is required (programs: renders, OpenAI endpoints, tokens)."""
    return state_of(request).auth.authenticate(bearer(authorization), allow_session=False,
                                               client=client_address(request))


def require_access(request: Request, authorization: str | None = Header(None)) -> Principal:
    """An API key or a session token (what the browser page has)."""
    return state_of(request).auth.authenticate(bearer(authorization), allow_session=True,
                                               client=client_address(request))


def websocket_principal(websocket: WebSocket, token: str | None = Query(None)) -> Principal:
    """Browsers cannot set headers on a WebSocket: a session token may come as ``?token=``."""
    credential = websocket_credential(websocket.headers.get("authorization"), token)
    return websocket.app.state.talkface.auth.authenticate(credential, allow_session=True,
                                                          client=client_address(websocket))


def require_ready(request: Request) -> ServerState:
    """The models must be loaded; until then, 503 with Retry-After."""
    state = state_of(request)
    if state.sessions.draining:
        raise Overloaded("the server is shutting down; try again in a moment",
                         retry_after_s=10.0)
    if not state.ready:
        reason = state.failed or f"still loading: {', '.join(state.loading)}"
        raise Overloaded(f"the server is not ready ({reason})", retry_after_s=5.0)
    return state
