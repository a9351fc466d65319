"""The degradation ladder on a real server with real models: a session that keeps the
box busy walks it down rung by rung until new sessions are refused (503-style, with
Retry-After, retryable), and once it stops the ladder walks back up; every step shows in
``/metrics`` and is one log line.

The limits are set low (a fifth of the cores) so that one talking session is pressure
enough; the ladder's logic, and what each rung changes, are tested with fakes in
tests/test_degradation.py. The overload benchmark (``talkface bench overload``) walks it
with the default limits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from talkface.degradation import DegradationSettings, Step

from .conftest import RunningServer, serve, server_settings
from .test_metrics import scrape, value
from .test_realtime_ws import refused, session, session_token
from .ws_client import RATE

pytestmark = [pytest.mark.serving, pytest.mark.integration]

LADDER = DegradationSettings(
    sample_interval_s=0.2, window_s=0.4, max_cpu_fraction=0.2, step_down_after_s=0.4,
    settle_s=0.4, step_up_after_s=2.0,
)
QUESTIONS = ("Tell me about the history of Rome.", "What do you know about the sea?",
             "Describe a busy train station.")
WALK_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def pressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = server_settings(Path(tmp_path_factory.mktemp("ladder-data")), size_px=128)
    with serve(settings.model_copy(update={"degradation": LADDER})) as running:
        yield running


def level(http: httpx.Client) -> float:
    return value(scrape(http), "talkface_degradation_level")


async def test_a_busy_server_walks_down_refuses_new_sessions_and_walks_back_up(
        pressed: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="talkface.degradation")
    http = pressed.client()
    async with session(pressed, output="jpeg") as live:
        assert live.of("ready")[0]["media"]["fps"] == 25
        # Questions typed one after another, each cutting the last answer short, keep
        # the LLM, TTS and animator busy until every rung is taken.
        async with asyncio.timeout(WALK_TIMEOUT_S):
            asked = 0
            while await asyncio.to_thread(level, http) < len(Step):
                await live.send({"type": "text", "text": QUESTIONS[asked % len(QUESTIONS)]})
                asked += 1
                await asyncio.sleep(1.0)
        error, code = await refused(pressed, session_token(pressed), json.dumps(
            {"type": "hello", "v": 1, "sample_rate_hz": RATE, "output": "jpeg"}))
        assert (error["code"], code) == ("overloaded", 4503)
        assert error["retryable"] is True and error["retry_after_s"] == LADDER.retry_after_s
        assert "under heavy load" in error["message"]
        # The session admitted before is still served. Its questions still in flight end
        # first (each cut by the next), so the latency awaited is the new question's.
        await live.wait_for(lambda e: e["type"] == "turn_end", count=asked,
                            timeout_s=WALK_TIMEOUT_S)
        latency = await live.ask("Are you still there?")
        assert live.reply(latency["turn_id"]).strip()
    # Nobody talks now: the ladder walks back up, and sessions are admitted again.
    async with asyncio.timeout(WALK_TIMEOUT_S):
        while await asyncio.to_thread(level, http) > 0:
            await asyncio.sleep(0.5)
    samples = scrape(http)
    for step in Step:
        assert value(samples, "talkface_degradation_steps_total", step=step,
                     direction="down") >= 1
        assert value(samples, "talkface_degradation_steps_total", step=step,
                     direction="up") >= 1
        assert value(samples, "talkface_degradation_step_taken", step=step) == 0
    assert value(samples, "talkface_pressure") < LADDER.step_up_below
    async with session(pressed, output="jpeg") as live:
        assert live.of("ready")[0]["media"]["fps"] == 25
    http.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "talkface.degradation"]
    downs = [line.split(" step=")[1].split()[0] for line in lines if "direction=down" in line]
    assert downs[: len(Step)] == [str(step) for step in Step]  # in the configured order
