"""Every wire format of the HTTP and WebSocket API, in one place (pydantic).

JSON messages over WebSocket and the WebRTC data channel carry a ``type`` discriminator
and the protocol version ``v``. Errors have OpenAI's shape, so OpenAI clients show them
as they would their own: ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str


class ErrorResponse(BaseModel):
    """What every refusal looks like."""

    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """``ready`` once the models are loaded; ``loading`` lists what is still loading."""

    status: Literal["ready", "loading", "failed"]
    loading: list[str] = Field(default_factory=list)
    error: str | None = None


class TokenResponse(BaseModel):
    """A session token for a browser page (never the API key itself)."""

    token: str
    expires_at: float = Field(description="unix time")
    token_type: Literal["session"] = "session"


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")
