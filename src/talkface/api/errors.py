"""Every error the server returns, as one JSON shape with the right status code.

A :class:`~talkface.errors.TalkfaceError` keeps its own status (400 bad input, 413 too
large, 401/403/429 auth, 503 overloaded with ``Retry-After``); a malformed request body
is 400 with the field that is wrong; anything unexpected is a 500 that says so, logged
with its traceback, and the server goes on serving others.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from talkface.errors import Overloaded, RateLimited, TalkfaceError

__all__ = [
    "AvatarNotFound",
    "ClientTooSlow",
    "Forbidden",
    "ModelNotFound",
    "RateLimited",
    "SessionNotFound",
    "Unauthorized",
    "WrongCredential",
    "error_response",
    "install_error_handlers",
    "response_for",
]

logger = logging.getLogger(__name__)


class Unauthorized(TalkfaceError):
    """No credentials, wrong credentials, or an expired token."""

    code = "unauthorized"
    http_status = 401


class WrongCredential(Unauthorized):
    """A credential that is not ours: an unknown key, a forged or malformed token (what
    a guesser sends; a missing or expired credential is not counted as a failed login)."""


class Forbidden(TalkfaceError):
    """Valid credentials that do not allow this request."""

    code = "forbidden"
    http_status = 403


class SessionNotFound(TalkfaceError):
    """No live session with that id for this key."""

    code = "session_not_found"
    http_status = 404


class AvatarNotFound(TalkfaceError):
    """The avatar id is not one of this key's avatars."""

    code = "avatar_not_found"
    http_status = 404


class ModelNotFound(TalkfaceError):
    """No model with that id is served here."""

    code = "model_not_found"
    http_status = 404


class ClientTooSlow(TalkfaceError):
    """The client does not take what is sent fast enough."""

    code = "client_too_slow"
    http_status = 408


def error_response(status: int, code: str, message: str, *,
                   retry_after_s: float | None = None) -> JSONResponse:
    """The JSON error response every path uses."""
    headers = {}
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse(
        {"error": {"message": message, "type": code, "code": code}},
        status_code=status,
        headers=headers,
    )


def response_for(exc: TalkfaceError) -> JSONResponse:
    """The JSON error response for ``exc``: its HTTP status, code and message, with
    ``Retry-After`` when the server is full or the caller is rate-limited."""
    retry = exc.retry_after_s if isinstance(exc, (Overloaded, RateLimited)) else None
    return error_response(exc.http_status, exc.code, str(exc), retry_after_s=retry)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception through :func:`error_response`."""

    @app.exception_handler(TalkfaceError)
    async def _talkface(_: Request, exc: TalkfaceError) -> JSONResponse:
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return error_response(400, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); "
                              "it was logged, please report it")
