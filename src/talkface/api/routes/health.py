"""Health, readiness and session tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from talkface.api.auth import Principal
from talkface.api.deps import require_key, state_of
from talkface.api.schemas import Health, Readiness, TokenResponse

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["health"])
async def healthz() -> Health:
    """The process is up (no credentials needed)."""
    return Health()


@router.get("/readyz", response_model=Readiness, tags=["health"],
            responses={503: {"model": Readiness}})
async def readyz(request: Request) -> JSONResponse:
    """200 once every model is loaded; 503 while loading, if loading failed, or while the
    server shuts down (``draining``: live sessions finish, new ones go elsewhere)."""
    state = state_of(request)
    status = "failed" if state.failed else ("ready" if state.ready else "loading")
    if state.sessions.draining:
        status = "draining"
    body = Readiness(status=status, loading=list(state.loading), error=state.failed)
    return JSONResponse(body.model_dump(), status_code=200 if status == "ready" else 503)


@router.post("/v1/tokens", response_model=TokenResponse, tags=["auth"])
async def create_token(
    request: Request, principal: Principal = Depends(require_key)
) -> TokenResponse:
    """A short-lived session token for a browser page (the key stays with the caller)."""
    state = state_of(request)
    token, expires = state.auth.signer.issue(principal.key_id, state.settings.server.token_ttl_s)
    return TokenResponse(token=token, expires_at=expires)
