"""``GET /metrics``: what an operator's Prometheus sees after real traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from talkface.api.metrics import metrics_of
from talkface.clock import ManualClock
from talkface.trace import TurnTrace

from .conftest import RunningServer

pytestmark = [pytest.mark.serving, pytest.mark.integration]


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_engine_batches_and_queues_are_measured(http: httpx.Client) -> None:
    before = scrape(http)
    assert http.post("/v1/audio/speech", json={
        "input": "The first sentence is here. The second one follows it. And this is the third.",
        "response_format": "wav"}).status_code == 200
    after = scrape(http)
    batches = value(after, "talkface_engine_batch_size_count", engine="tts:joe") - value(
        before, "talkface_engine_batch_size_count", engine="tts:joe")
    requests = value(after, "talkface_engine_batch_size_sum", engine="tts:joe") - value(
        before, "talkface_engine_batch_size_sum", engine="tts:joe")
    assert requests == 3 and 1 <= batches <= 3  # three sentences, batched as they came
    assert value(after, "talkface_engine_batch_service_seconds_count", engine="tts:joe") >= batches
    assert value(after, "talkface_engine_batch_wait_seconds_count", engine="tts:joe") >= batches
    engines = {dict(labels)["engine"] for (name, labels) in after
               if name == "talkface_engine_queue_depth"}
    assert {"asr", "llm", "animator", "tts:joe"} <= engines
    # Replies the LLM has under way (a warm-up may be one); counted in test_engines.py.
    assert ("talkface_engine_running", (("engine", "llm"),)) in after
    assert value(after, "talkface_active_sessions") == 0
    assert ("talkface_pending_renders", ()) in after
    # The LLM's saved conversations (files on disk): reported in bytes, within
    # llm.conversation_cache_mb.
    saved = after[("talkface_llm_saved_state_bytes", ())]
    assert 0 <= saved <= 512 * 1_000_000


def test_requests_are_counted_by_route_and_errors_by_code(server: RunningServer,
                                                          http: httpx.Client) -> None:
    before = scrape(http)
    http.get("/v1/renders/r_nope")
    with httpx.Client(base_url=server.base_url) as anonymous:
        anonymous.get("/v1/models")
    http.post("/v1/audio/speech", json={"input": "x" * 5000})
    after = scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("talkface_errors_total", code="render_not_found") == 1
    assert delta("talkface_errors_total", code="unauthorized") == 1
    assert delta("talkface_errors_total", code="payload_too_large") == 1
    assert delta("talkface_http_requests_total", route="/v1/renders/{job_id}", method="GET",
                 status="404") == 1
    assert delta("talkface_http_requests_total", route="/metrics", method="GET", status="200") == 1
    assert delta("talkface_http_request_duration_seconds_count", route="/v1/models",
                 method="GET") == 1


def test_turn_traces_fill_the_latency_histograms(server: RunningServer, http: httpx.Client) -> None:
    # Other tests share this server: compare with what it had counted before.
    before = scrape(http)

    def grew(name: str, **labels: str) -> float:
        return value(scrape(http), name, **labels) - (value(before, name, **labels) or 0)

    # What a live session does at each EndOfTurn:
    clock = ManualClock()
    trace = TurnTrace.start(clock)
    for stage, at_ms in [("asr_final", 120), ("llm_first_token", 300), ("first_audio", 450),
                         ("first_video_frame", 520)]:
        trace.mark(stage, at_ns=at_ms * 1_000_000)
    metrics_of(server.app).observe_turn(trace)
    # And a render job does by itself:
    job = http.post("/v1/renders", json={"text": "Metrics, please."}).json()
    deadline = time.monotonic() + 120
    while job["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
        job = http.get(f"/v1/renders/{job['id']}").json()
    assert grew("talkface_turn_stage_latency_seconds_count",
                stage="llm_first_token", source="session") == 1
    assert grew("talkface_turn_stage_latency_seconds_sum",
                stage="first_audio", source="session") == pytest.approx(0.45)
    assert grew("talkface_first_frame_latency_seconds_bucket",
                source="session", le="0.75") == 1
    assert grew("talkface_first_frame_latency_seconds_count", source="render") >= 1
    assert grew("talkface_renders_total", status="done") >= 1


def test_metrics_need_a_key(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
