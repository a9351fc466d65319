"""The FastAPI application: ``create_app(settings)``, served by ``talkface serve``.

Routes live in :mod:`talkface.api.routes`, one module per area; the browser client is
served as static files from ``talkface/web``. Models load in the background at start
(``/readyz`` says when they are ready). On SIGTERM or Ctrl-C, new sessions are refused
and live ones get a grace period to finish the answer they are giving, before the server
closes connections (:mod:`talkface.api.shutdown`). Every response carries security
headers (:mod:`talkface.api.headers`); the API docs are served only when
``server.public_docs`` is on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import FastAPI

from talkface.api.auth import Authenticator, KeyRing, LoginThrottle, RateLimiter, TokenSigner
from talkface.api.errors import install_error_handlers
from talkface.api.headers import DOCS_PATHS, SecurityHeadersMiddleware
from talkface.api.log_redaction import install_log_redaction
from talkface.api.metrics import MetricsMiddleware, ServerMetrics
from talkface.api.pressure import PressureSampler
from talkface.api.sessions import SessionRegistry
from talkface.api.shutdown import DrainOnSignal
from talkface.api.state import ServerState
from talkface.config import Settings
from talkface.process_memory import release_freed_memory_every
from talkface.runtime import Runtime, create_runtime


def create_app(settings: Settings, *, runtime: Runtime | None = None,
               token_secret: bytes | None = None) -> FastAPI:
    """The server application.

    Args:
        settings: the settings tree; ``settings.server.api_keys`` must not be empty.
        runtime: engines to use (default: a new runtime on ``settings``).
        token_secret: session-token signing secret (default: random per start).
    """
    install_log_redaction()
    metrics = ServerMetrics()
    # A runtime passed in keeps its own observers (engine batch metrics need this one).
    runtime = runtime or create_runtime(settings, observers=(metrics.observe_batch,))
    server = settings.server
    state = ServerState(
        settings=settings,
        runtime=runtime,
        auth=Authenticator(KeyRing(server.api_keys), TokenSigner(token_secret),
                           RateLimiter(server.rate_limit),
                           logins=LoginThrottle(server.login_limit)),
        sessions=SessionRegistry(runtime, server.limits.max_sessions),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.warm_up_task = asyncio.create_task(state.warm_up(), name="warm-up")
        drain = DrainOnSignal(lambda: state.sessions.drain(server.shutdown_grace_s))
        drain.install()
        trimming = (asyncio.create_task(release_freed_memory_every(server.memory_trim_interval_s),
                                        name="memory-trim")
                    if server.memory_trim_interval_s > 0 else None)
        # The degradation ladder steps on what this samples (pressure shows in /metrics),
        # from the moment the models are loaded: loading them is not load.
        sampling = asyncio.create_task(
            PressureSampler(runtime, state.sessions).run(after=state.warm_up_task),
            name="pressure")
        try:
            yield
        finally:
            sampling.cancel()
            if trimming is not None:
                trimming.cancel()
            await drain.aclose()
            await state.sessions.close_all(server.shutdown_grace_s)
            if not state.warm_up_task.done():
                state.warm_up_task.cancel()
            await asyncio.wait([state.warm_up_task])
            await runtime.aclose()

    docs = server.public_docs
    app = FastAPI(title="talkface", version="0.1.0", lifespan=lifespan,
                  summary="Real-time talking digital humans",
                  openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.talkface = state
    app.state.metrics = metrics
    metrics.watch(state)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware, csp_exempt=DOCS_PATHS if docs else ())
    install_error_handlers(app)
    _include_routes(app)
    _mount_web_client(app)
    return app


def _include_routes(app: FastAPI) -> None:
    from talkface.api.routes import avatars, health, metrics, openai, renders, sessions, usage

    # First: its lifespan (the quota ledger) starts before the others and stops after them.
    app.include_router(usage.router)
    app.include_router(health.router)
    app.include_router(openai.router)
    app.include_router(renders.router)
    app.include_router(avatars.router)
    app.include_router(metrics.router)
    app.include_router(sessions.router)
    # Each area adds its router here (one line each).


def _mount_web_client(app: FastAPI) -> None:
    from fastapi.staticfiles import StaticFiles

    web = resources.files("talkface").joinpath("web")
    if web.is_dir():
        app.mount("/", StaticFiles(directory=str(web), html=True), name="web")
