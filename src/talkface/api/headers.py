"""Security headers on every HTTP response, the browser page's and the API's.

The Content-Security-Policy fits the web client in ``talkface/web``: its own files and
ES modules (no inline script or style), an AudioWorklet loaded from a ``blob:`` URL (the
WebSocket fallback's microphone), a ``blob:`` object URL as the ``<video>`` source (Media
Source Extensions), ``fetch`` and WebSocket to this origin only, and a ``data:`` favicon.
WebRTC media is not a fetch and needs no source. The page may not be framed
(clickjacking), and no ``Referer`` leaves it: its URL carries a session token.

The interactive docs (``server.public_docs``) load Swagger UI from a CDN with an inline
script, so they get every header but the CSP.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self' blob:",
    "worker-src 'self' blob:",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
DOCS_PATHS = ("/docs", "/redoc")


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` and the CSP to every HTTP response (pure ASGI, so
    streamed responses stream as before).

    Args:
        app: the application.
        csp_exempt: path prefixes served without the CSP (the docs pages, when public).
    """

    def __init__(self, app: ASGIApp, *, csp_exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self._csp_exempt = csp_exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: add the security headers (and the CSP, except on exempt paths) to every
        HTTP response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        with_csp = not any(path.startswith(prefix) for prefix in self._csp_exempt)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if with_csp:
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
