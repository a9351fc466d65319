"""Prometheus metrics of one server (``GET /metrics``), in a registry of its own.

What is measured, and where it comes from:

* per-turn latency: :meth:`ServerMetrics.observe_turn` with each turn's
  :class:`~talkface.trace.TurnTrace` (the live sessions call it at every ``EndOfTurn``;
  render jobs call it with ``source="render"``);
* engine batches: :meth:`ServerMetrics.observe_batch` is the runtime's
  :data:`~talkface.engines.BatchObserver` (batch size, wait before the batch, service time);
* queue depths, live sessions, pending renders and answers per LLM route
  (``talkface_llm_route_total``, see :mod:`talkface.llm.routing`): read when scraped;
* HTTP requests by route template and status, and every error response by its code:
  :class:`MetricsMiddleware`.

Names follow Prometheus conventions: times in seconds (``_seconds``), counters ``_total``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from talkface.trace import TurnTrace

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import HTTPConnection

    from talkface.api.state import ServerState
    from talkface.engines import Engine

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)
ENGINE_TIME_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                         10.0, 30.0)
_MAX_ERROR_BODY_BYTES = 64 * 1024


class ServerMetrics:
    """The metrics of one server; ``app.state.metrics`` (see :func:`metrics_of`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.stage_latency = Histogram(
            "talkface_turn_stage_latency_seconds",
            "Time from the end of the user's input to each stage's first output, per turn.",
            ["stage", "source"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )
        self.first_frame_latency = Histogram(
            "talkface_first_frame_latency_seconds",
            "Time from the end of the user's input to the turn's first video frame.",
            ["source"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )
        self.batch_size = Histogram(
            "talkface_engine_batch_size", "Requests per engine batch.",
            ["engine"], buckets=BATCH_SIZE_BUCKETS, registry=registry,
        )
        self.batch_wait = Histogram(
            "talkface_engine_batch_wait_seconds",
            "Longest time a request of the batch waited before the batch ran.",
            ["engine"], buckets=ENGINE_TIME_BUCKETS_S, registry=registry,
        )
        self.batch_service = Histogram(
            "talkface_engine_batch_service_seconds", "Time the model took for one batch.",
            ["engine"], buckets=ENGINE_TIME_BUCKETS_S, registry=registry,
        )
        self.requests = Counter(
            "talkface_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=registry,
        )
        self.request_duration = Histogram(
            "talkface_http_request_duration_seconds",
            "Time to the end of the response (a streamed reply: to its end).",
            ["route", "method"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )
        self.errors = Counter(
            "talkface_errors", "Error responses by error code (the 'code' of the JSON error).",
            ["code"], registry=registry,
        )
        self.renders = Counter(
            "talkface_renders", "Render jobs that ended, by how they ended.",
            ["status"], registry=registry,
        )
        self._gauges = _GaugeCollector()
        registry.register(self._gauges)

    def observe_turn(self, trace: TurnTrace, *, source: str = "session") -> None:
        """Record one finished turn's latency waterfall.

        Call it once per turn, at its ``EndOfTurn``. Every stage the trace marked goes to
        ``talkface_turn_stage_latency_seconds{stage=...}``; the first video frame also
        goes to ``talkface_first_frame_latency_seconds``.

        Args:
            trace: the turn's trace.
            source: "session" for live turns, "render" for render jobs.
        """
        for stage, latency_ms in trace.as_dict().items():
            if latency_ms >= 0:
                self.stage_latency.labels(stage, source).observe(latency_ms / 1000.0)
        first_frame_ms = trace.latency_ms("first_video_frame")
        if first_frame_ms is not None and first_frame_ms >= 0:
            self.first_frame_latency.labels(source).observe(first_frame_ms / 1000.0)

    def observe_batch(self, engine: str, size: int, max_wait_ms: float, service_ms: float) -> None:
        """The runtime's batch observer (:data:`~talkface.engines.BatchObserver`)."""
        self.batch_size.labels(engine).observe(size)
        self.batch_wait.labels(engine).observe(max_wait_ms / 1000.0)
        self.batch_service.labels(engine).observe(service_ms / 1000.0)

    def count_error(self, code: str) -> None:
        """Count an error sent some other way than an HTTP response (a WebSocket message)."""
        self.errors.labels(code).inc()

    def watch(self, state: ServerState) -> None:
        """Read live sessions and engine queue depths from ``state`` when scraped."""
        self._gauges.state = state

    def render_ended(self, status: str, trace: TurnTrace | None) -> None:
        """A render job ended with ``status`` (a finished text job brings its trace)."""
        self.renders.labels(status).inc()
        if trace is not None:
            self.observe_turn(trace, source="render")

    def watch_renders(self, pending_renders: Callable[[], int]) -> None:
        """Read the number of pending render jobs with ``pending_renders`` when scraped
        (it may block: scrapes run in a worker thread)."""
        self._gauges.pending_renders = pending_renders


class _GaugeCollector(Collector):
    """Values read at scrape time rather than counted as they happen."""

    def __init__(self) -> None:
        self.state: ServerState | None = None
        self.pending_renders: Callable[[], int] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # values exist only once a server runs

    def collect(self) -> Iterator[Metric]:
        state = self.state
        if state is None:
            return
        sessions = GaugeMetricFamily("talkface_active_sessions", "Live sessions right now.")
        sessions.add_metric([], len(state.sessions))
        yield sessions
        depth = GaugeMetricFamily("talkface_engine_queue_depth",
                                  "Requests waiting for an engine batch right now.",
                                  labels=["engine"])
        running = GaugeMetricFamily("talkface_engine_running",
                                    "Requests an engine's backend has and has not answered yet "
                                    "(the llama.cpp LLM's replies taking turns among them).",
                                    labels=["engine"])
        for engine in _engines(state):
            depth.add_metric([engine.name], engine.queue_depth)
            running.add_metric([engine.name], engine.running)
        yield depth
        yield running
        routes = CounterMetricFamily(
            "talkface_llm_route", "Answers by who gave them: faq, small, large, or "
            "large_fallback (sent to the large LLM, answered by the small one).",
            labels=["route"])
        for route, count in state.runtime.route_counts.snapshot().items():
            routes.add_metric([route], count)
        yield routes
        llm = state.runtime.backends.get("llm")
        if llm is not None:
            saved = GaugeMetricFamily(
                "talkface_llm_saved_state_bytes",
                "Bytes of conversations' LLM KV caches kept in files of the temporary "
                "directory (bounded by llm.conversation_cache_mb), not in memory.")
            saved.add_metric([], llm.saved_state_bytes())
            yield saved
        yield from _degradation(state)
        replicas = state.runtime.deployment_replicas()
        if replicas:
            family = GaugeMetricFamily("talkface_stage_replicas",
                                       "Running replicas of each stage's Ray Serve deployment.",
                                       labels=["stage"])
            for stage, count in sorted(replicas.items()):
                family.add_metric([stage], count)
            yield family
        if self.pending_renders is not None:
            pending = GaugeMetricFamily("talkface_pending_renders",
                                        "Render jobs queued or running right now.")
            pending.add_metric([], self.pending_renders())
            yield pending


def _engines(state: ServerState) -> list[Engine[Any, Any]]:
    """The engines loaded so far."""
    return list(state.runtime.engines)


def _degradation(state: ServerState) -> Iterator[Metric]:
    """The degradation ladder: its level, each step, the pressure and its signals."""
    ladder = state.runtime.ladder
    level = GaugeMetricFamily("talkface_degradation_level",
                              "Steps of the degradation ladder taken now (0: none).")
    level.add_metric([], ladder.level)
    yield level
    taken = GaugeMetricFamily("talkface_degradation_step_taken",
                              "1 while a step of the degradation ladder is taken.",
                              labels=["step"])
    steps = CounterMetricFamily("talkface_degradation_steps",
                                "Steps taken (down) and given back (up), by step.",
                                labels=["step", "direction"])
    for step in ladder.settings.order:
        taken.add_metric([step], 1 if ladder.taken(step) else 0)
        for down, direction in ((True, "down"), (False, "up")):
            steps.add_metric([step, direction], ladder.steps_total.get((step, down), 0))
    yield taken
    yield steps
    pressure = GaugeMetricFamily("talkface_pressure",
                                 "Load as the ladder sees it: the worst signal over its "
                                 "limit (1: at the limit).")
    pressure.add_metric([], ladder.pressure)
    yield pressure
    signals = GaugeMetricFamily("talkface_pressure_signal",
                                "Each signal over its limit (degradation.max_*), averaged "
                                "over degradation.window_s.", labels=["signal"])
    for name, ratio in sorted(ladder.signals.items()):
        signals.add_metric([name], ratio)
    yield signals


def metrics_of(connection: HTTPConnection | FastAPI) -> ServerMetrics:
    """The :class:`ServerMetrics` of the app serving ``connection`` (a request, a
    WebSocket, or the app itself)::

        metrics_of(websocket).observe_turn(trace)
    """
    app = getattr(connection, "app", connection)
    return app.state.metrics


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and every error by code.

    Route templates (``/v1/renders/{job_id}``), never raw paths, keep the label set
    small; paths no route matched count as ``unmatched``.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: count and time each HTTP request, by route and status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        status = 500
        error_body = bytearray()
        is_json_error = False

        async def observe(message: Message) -> None:
            nonlocal status, is_json_error
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", ()))
                is_json_error = status >= 400 and headers.get(
                    b"content-type", b""
                ).startswith(b"application/json")
            elif message["type"] == "http.response.body" and is_json_error:
                if len(error_body) < _MAX_ERROR_BODY_BYTES:
                    error_body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception:
            # The outermost middleware answers 500 for it; a cancelled request (the
            # client left) is not an error.
            status = 500
            self.metrics.errors.labels("internal").inc()
            raise
        else:
            if status >= 400:
                code = _error_code(bytes(error_body)) if is_json_error else None
                self.metrics.errors.labels(code or f"http_{status}").inc()
        finally:
            route = _route_template(scope)
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.request_duration.labels(route, method).observe(
                time.perf_counter() - started_s
            )


def _error_code(body: bytes) -> str | None:
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) and len(code) <= 64 else None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    if isinstance(route, Mount):
        return (route.path or "") + "/*"
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
