"""Daily quotas per API key, against a real server and then a restarted one.

One key has a tiny LLM-token and video-minute quota, one a tiny live-session quota, and
the main key none. The story runs once (a fixture): chats, a render, a live session over
the WebSocket; then the server stops and a new one starts on the same data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import io
import json
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from talkface.audio import float32_to_pcm16

from .conftest import API_KEY, FLOOD_KEY, OTHER_KEY, RunningServer, serve, server_settings

pytestmark = [pytest.mark.serving, pytest.mark.integration]

TOKENS_KEY = OTHER_KEY  # 1 LLM token and 0.01 video minutes a day
LIVE_KEY = FLOOD_KEY  # 0.05 live minutes (3 s) a day
CHAT = {"model": "any", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello."}]}


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def wav_bytes(samples: np.ndarray, rate_hz: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate_hz)
        handle.writeframes(float32_to_pcm16(samples))
    return buffer.getvalue()


def wait_for(http: httpx.Client, job_id: str, statuses: tuple[str, ...],
             timeout_s: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = http.get(f"/v1/renders/{job_id}").json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"render {job_id} stuck at {job}"
        time.sleep(0.05)


def seconds_to_utc_midnight() -> float:
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)
    return (midnight - now).total_seconds()


@dataclass(frozen=True, slots=True)
class Story:
    """What happened on the first server, and the second one, still running."""

    server: RunningServer
    first_chat: dict[str, Any]
    refused_chat: httpx.Response
    refused_stream: httpx.Response
    streamed_usage: dict[str, Any]
    render: dict[str, Any]
    refused_render: httpx.Response
    usage: dict[str, dict[str, Any]]
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    live_events: list[dict[str, Any]]
    live_close_code: int | None
    refused_live_events: list[dict[str, Any]]
    refused_live_close_code: int | None


async def live_session(server: RunningServer, key: str, *,
                       timeout_s: float = 120.0) -> tuple[list[dict[str, Any]], int | None]:
    """Open a WebSocket session with ``key`` and read until the server closes it."""
    url = server.base_url.replace("http://", "ws://") + "/v1/sessions/ws"
    events: list[dict[str, Any]] = []
    async with connect(url, additional_headers=server.headers(key), max_size=None) as ws:
        await ws.send(json.dumps({"type": "hello", "v": 1, "sample_rate_hz": 16_000,
                                  "output": "jpeg"}))
        async with asyncio.timeout(timeout_s):
            with contextlib.suppress(ConnectionClosed):  # a close code other than 1000
                async for message in ws:
                    if isinstance(message, str):
                        events.append(json.loads(message))
        return events, ws.close_code


def scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def stream_usage(http: httpx.Client) -> dict[str, Any]:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        chunks = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: {")]
    return next(c["usage"] for c in chunks if c.get("usage"))


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory,
          speak: Callable[..., np.ndarray]) -> Iterator[Story]:
    recording = wav_bytes(speak("piper", "Hello there, this recording is about two seconds."))
    settings = server_settings(tmp_path_factory.mktemp("quota-data"), quotas={
        "per_key": {key_id(TOKENS_KEY): {"llm_tokens": 1, "rendered_video_minutes": 0.01},
                    key_id(LIVE_KEY): {"live_session_minutes": 0.05}},
        "flush_interval_s": 0.5, "live_check_interval_s": 0.5,
    })
    with serve(settings) as first, first.client(TOKENS_KEY) as limited, \
            first.client() as free:
        first_chat = limited.post("/v1/chat/completions", json=CHAT)
        assert first_chat.status_code == 200, first_chat.text
        refused_chat = limited.post("/v1/chat/completions", json=CHAT)
        refused_stream = limited.post("/v1/chat/completions", json={**CHAT, "stream": True})
        streamed_usage = stream_usage(free)
        for _ in range(2):  # a key without quotas is not touched by another's
            assert free.post("/v1/chat/completions", json=CHAT).status_code == 200
        job = limited.post("/v1/renders", files={"file": ("hello.wav", recording)})
        assert job.status_code == 202, job.text
        render = wait_for(limited, job.json()["id"], ("done", "failed"))
        refused_render = limited.post("/v1/renders", files={"file": ("again.wav", recording)})
        live_events, live_close_code = asyncio.run(live_session(first, LIVE_KEY))
        refused_live_events, refused_live_close_code = asyncio.run(live_session(first, LIVE_KEY))
        usage = {}
        for key in (TOKENS_KEY, LIVE_KEY, API_KEY):
            with first.client(key) as http:
                usage[key] = http.get("/v1/usage").json()
        metrics = scrape(free)
    with serve(settings) as second:
        yield Story(server=second, first_chat=first_chat.json(), refused_chat=refused_chat,
                    refused_stream=refused_stream, streamed_usage=streamed_usage,
                    render=render, refused_render=refused_render, usage=usage,
                    metrics=metrics, live_events=live_events,
                    live_close_code=live_close_code, refused_live_events=refused_live_events,
                    refused_live_close_code=refused_live_close_code)


def assert_quota_refusal(response: httpx.Response, kind: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert kind in error["message"]
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    assert f"resets at {tomorrow}T00:00:00Z" in error["message"]
    assert 0 < int(response.headers["Retry-After"]) <= seconds_to_utc_midnight() + 60


def test_a_key_out_of_llm_tokens_gets_429_naming_the_quota(story: Story) -> None:
    assert story.first_chat["usage"]["total_tokens"] > 1  # one request went through
    assert_quota_refusal(story.refused_chat, "llm_tokens")
    assert_quota_refusal(story.refused_stream, "llm_tokens")  # refused before streaming


def test_a_render_is_refused_once_the_video_minutes_are_used(story: Story) -> None:
    assert story.render["status"] == "done", story.render
    assert story.render["duration_s"] > 0.6  # more than the 0.01 minutes of the quota
    assert_quota_refusal(story.refused_render, "rendered_video_minutes")


def test_usage_shows_what_each_key_used_and_its_limits(story: Story) -> None:
    usage = story.usage[TOKENS_KEY]
    assert usage["key_id"] == key_id(TOKENS_KEY)
    assert usage["resets_at"] == pytest.approx(time.time() + seconds_to_utc_midnight(), abs=120)
    tokens = usage["quotas"]["llm_tokens"]
    assert tokens["used"] == story.first_chat["usage"]["total_tokens"]
    assert (tokens["limit"], tokens["remaining"], tokens["unit"]) == (1, 0, "tokens")
    video = usage["quotas"]["rendered_video_minutes"]
    assert video["used"] == pytest.approx(story.render["duration_s"] / 60, abs=0.002)
    assert video["limit"] == 0.01 and video["unit"] == "minutes"
    assert usage["quotas"]["live_session_minutes"]["limit"] is None


def test_a_key_without_quotas_is_unaffected_and_still_counted(story: Story) -> None:
    usage = story.usage[API_KEY]["quotas"]
    assert {q["limit"] for q in usage.values()} == {None}
    # Its streamed chat was counted (the two plain ones after it too).
    assert usage["llm_tokens"]["used"] > story.streamed_usage["total_tokens"] > 0


def test_a_live_session_ends_with_an_error_when_its_minutes_run_out(story: Story) -> None:
    kinds = [e["type"] for e in story.live_events]
    assert kinds[0] == "ready" and kinds[-1] == "closed", kinds
    error = next(e for e in story.live_events if e["type"] == "error")
    assert error["code"] == "quota_exceeded" and "live_session_minutes" in error["message"]
    assert error["retry_after_s"] > 0
    assert "live_session_minutes" in story.live_events[-1]["reason"]
    assert story.live_close_code == 4429
    assert story.usage[LIVE_KEY]["quotas"]["live_session_minutes"]["used"] >= 0.05
    # The next session of that key is refused at its start.
    [refusal] = story.refused_live_events
    assert refusal["type"] == "error" and refusal["code"] == "quota_exceeded"
    assert story.refused_live_close_code == 4429


def test_quotas_are_counted_in_metrics_by_kind_only(story: Story) -> None:
    metrics = story.metrics
    assert metrics[("talkface_quota_used_total", (("kind", "llm_tokens"),))] >= (
        story.first_chat["usage"]["total_tokens"])
    assert metrics[("talkface_quota_used_total", (("kind", "rendered_video_minutes"),))] > 0
    assert metrics[("talkface_quota_exceeded_total", (("kind", "llm_tokens"),))] >= 2
    assert metrics[("talkface_quota_exceeded_total", (("kind", "live_session_minutes"),))] >= 2
    quota_labels = {labels for (name, labels) in metrics if name.startswith("talkface_quota")}
    assert {name for labels in quota_labels for name, _ in labels} == {"kind"}


def test_usage_survives_a_restart(story: Story) -> None:
    with story.server.client(TOKENS_KEY) as http:
        after = http.get("/v1/usage").json()["quotas"]
        assert_quota_refusal(http.post("/v1/chat/completions", json=CHAT), "llm_tokens")
    before = story.usage[TOKENS_KEY]["quotas"]
    assert after["llm_tokens"]["used"] == before["llm_tokens"]["used"]
    assert after["rendered_video_minutes"]["used"] == pytest.approx(
        before["rendered_video_minutes"]["used"], abs=1e-3)
    with story.server.client(LIVE_KEY) as http:
        live = http.get("/v1/usage").json()["quotas"]["live_session_minutes"]
    assert live["used"] >= 0.05
    with story.server.client() as http:  # the key without quotas still works
        assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
