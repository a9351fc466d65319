"""The degradation ladder: under pressure the server steps down one rung at a time, in
the configured order, and back up once the pressure has passed; each rung changes what
new turns and sessions get. With fakes and a hand-driven clock (no models).

The ladder against a real server with real models: tests/api/test_degradation_live.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from talkface.api.auth import Principal
from talkface.api.pressure import PressureSampler
from talkface.api.realtime.session import conversation_options
from talkface.api.schemas import LiveSessionOptions
from talkface.api.sessions import LiveSession, SessionRegistry
from talkface.clock import ManualClock
from talkface.config import load_settings
from talkface.conversation import Conversation, ConversationOptions
from talkface.conversation._turns import TurnRecord
from talkface.degradation import DegradationLadder, DegradationSettings, Pressure, Step
from talkface.engines import BatchingOptions, Engine
from talkface.errors import ConfigError, Overloaded
from talkface.llm.routing import route_answer
from talkface.runtime import Runtime
from talkface.testing import fake_settings, register_fakes
from talkface.trace import TurnTrace

pytestmark = pytest.mark.unit

BUSY = Pressure(cpu_fraction=0.95)  # at 0.9 of the cores: over the limit
CALM = Pressure(cpu_fraction=0.1)
NS = 1_000_000_000
SETTINGS = DegradationSettings(step_down_after_s=5, settle_s=10, step_up_after_s=20)


def run(ladder: DegradationLadder, pressure: Pressure, from_s: float, to_s: float,
        ) -> list[tuple[float, str, bool]]:
    """Observe ``pressure`` every second from ``from_s`` to ``to_s``; the steps taken."""
    steps = []
    for now_s in range(int(from_s), int(to_s) + 1):
        change = ladder.observe(pressure, float(now_s))
        if change is not None:
            steps.append((float(now_s), str(change.step), change.down))
    return steps


def test_sustained_pressure_walks_down_one_rung_at_a_time_and_calm_walks_back_up() -> None:
    ladder = DegradationLadder(SETTINGS)
    down = run(ladder, BUSY, 0, 60)
    # First step after 5 s of pressure, then one every 10 s (each waits out the last one).
    assert down == [(5.0, "shorter_replies", True), (15.0, "lower_fps", True),
                    (25.0, "small_llm_only", True), (35.0, "refuse_sessions", True)]
    assert ladder.level == 4 and ladder.refusing_sessions and ladder.small_llm_only
    up = run(ladder, CALM, 61, 200)
    assert up == [(81.0, "refuse_sessions", False), (101.0, "small_llm_only", False),
                  (121.0, "lower_fps", False), (141.0, "shorter_replies", False)]
    assert ladder.level == 0 and not ladder.refusing_sessions
    assert ladder.steps_total == {(step, down): 1 for step in Step for down in (True, False)}


def test_a_short_spike_or_a_middling_load_takes_no_step() -> None:
    ladder = DegradationLadder(SETTINGS)
    assert run(ladder, BUSY, 0, 4) == []  # 4 s: not long enough
    assert run(ladder, CALM, 5, 6) == []
    assert run(ladder, BUSY, 7, 11) == []  # the clock started again
    run(ladder, BUSY, 12, 40)
    assert ladder.level == 3
    # Between calm (below 0.75) and the limit: the ladder stays where it is.
    assert run(ladder, Pressure(cpu_fraction=0.8), 41, 200) == []
    assert ladder.level == 3


def test_the_worst_signal_is_the_pressure() -> None:
    ladder = DegradationLadder(SETTINGS)
    ladder.observe(Pressure(live_queue_depth=3, late_frame_ratio=0.1, cpu_fraction=0.5), 0.0)
    assert ladder.pressure == pytest.approx(2.0)  # late frames: 0.1 of a 0.05 limit
    assert ladder.signals == pytest.approx(
        {"first_frame_s": 0.0, "live_queue_depth": 0.5, "late_frame_ratio": 2.0,
         "cpu_fraction": 0.5 / 0.9})


def test_the_order_is_configurable_and_a_rung_left_out_is_never_taken() -> None:
    ladder = DegradationLadder(SETTINGS.model_copy(
        update={"order": (Step.REFUSE_SESSIONS,)}))
    assert run(ladder, BUSY, 0, 100) == [(5.0, "refuse_sessions", True)]
    assert ladder.reply_tokens(96) == 96 and ladder.fps(25) == 25  # never taken


def test_a_disabled_ladder_never_steps_but_still_reports_the_pressure() -> None:
    ladder = DegradationLadder(SETTINGS.model_copy(update={"enabled": False}))
    assert run(ladder, BUSY, 0, 100) == []
    assert ladder.level == 0 and ladder.pressure > 1


def test_each_rung_changes_what_new_turns_and_sessions_get() -> None:
    ladder = DegradationLadder(SETTINGS)
    assert (ladder.reply_tokens(96), ladder.fps(25)) == (96, 25)
    ladder.level = 1
    assert (ladder.reply_tokens(96), ladder.reply_tokens(20), ladder.fps(25)) == (32, 20, 25)
    ladder.level = 2
    assert ladder.fps(25) == 20 and not ladder.small_llm_only


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="order"):
        load_settings(degradation={"order": ["shorter_replies", "shorter_replies"]})
    with pytest.raises(ConfigError, match="reduced_fps"):
        load_settings(degradation={"reduced_fps": 12})  # no admitted session below 20 fps
    with pytest.raises(ConfigError, match="order"):
        load_settings(degradation={"order": ["faster_cores"]})


def test_every_step_is_one_log_line_without_user_text(caplog: pytest.LogCaptureFixture) -> None:
    ladder = DegradationLadder(SETTINGS)
    run(ladder, BUSY, 0, 5)
    [line] = [r.getMessage() for r in caplog.records if r.name == "talkface.degradation"]
    assert line == ("event=degradation_step direction=down step=shorter_replies level=1 "
                    "pressure=1.06 signal=cpu_fraction")


# --- the sampler ---------------------------------------------------------------------------


class _Queued:
    """An engine with a fixed number of live requests waiting."""

    def __init__(self, live_queue_depth: int) -> None:
        self.live_queue_depth = live_queue_depth


async def test_the_sampler_reads_queues_late_frames_and_cpu() -> None:
    runtime = Runtime(load_settings(degradation={"window_s": 1.0}))
    registry = SessionRegistry(runtime, max_sessions=4)
    clock = ManualClock()
    cpu_s = [0.0]
    sampler = PressureSampler(runtime, registry, clock=clock, cpu_time_s=lambda: cpu_s[0],
                              cores=2)
    runtime._engines = [_Queued(2), _Queued(1)]  # type: ignore[list-item]
    assert sampler.sample() is None  # rates need a second sample
    clock.advance(1_000_000_000)
    cpu_s[0] = 1.5  # 1.5 CPU seconds in one second, on two cores
    live = registry._ended_frames  # frames of sessions that ended count too
    live.shown, live.late = 100, 10
    sampler.sample()
    assert runtime.ladder.signals == pytest.approx(
        {"first_frame_s": 0.0, "live_queue_depth": 3 / 6, "late_frame_ratio": 0.1 / 0.05,
         "cpu_fraction": 0.75 / 0.9})


async def test_the_latency_signal_is_the_median_first_frame_of_recent_live_turns() -> None:
    runtime = Runtime(load_settings())
    registry = SessionRegistry(runtime, max_sessions=4)
    clock = ManualClock(start_ns=1000 * NS)
    sampler = PressureSampler(runtime, registry, clock=clock, cpu_time_s=lambda: 0.0, cores=2)

    def turn(turn_id: int, ended_s: float, first_frame_s: float | None) -> TurnRecord:
        trace = TurnTrace.start(clock, origin_ns=int(ended_s * NS))
        if first_frame_s is not None:
            trace.mark("first_video_frame", int((ended_s + first_frame_s) * NS))
        return TurnRecord(turn_id=turn_id, source="speech", trace=trace)

    talking = [turn(1, 900, 0.9),  # long ago: not counted
               turn(2, 980, 2.4), turn(3, 990, 2.0), turn(4, 995, None)]  # 4: no frame yet
    other = [turn(1, 985, 3.1)]
    for number, records in enumerate((talking, other)):
        registry._sessions[f"s{number}"] = LiveSession(  # type: ignore[arg-type]
            session_id=f"s{number}", owner="k", conversation=_Turns(records))
    sampler.sample()
    clock.advance(NS)
    sampler.sample()
    assert runtime.ladder.signals["first_frame_s"] == pytest.approx(2.4 / 1.5)
    registry._sessions.pop("s1")  # two turns left: too few to judge by
    clock.advance(NS)
    sampler.sample()
    assert sampler._window[-1].first_frame_s == 0.0


class _Turns:
    """A conversation as the sampler sees it: its turns."""

    def __init__(self, turns: list[TurnRecord]) -> None:
        self.turns = turns


async def test_a_server_under_pressure_steps_down_through_its_sampler() -> None:
    runtime = Runtime(load_settings(degradation={"window_s": 1.0, "step_down_after_s": 0,
                                                 "settle_s": 0}))
    sampler = PressureSampler(runtime, SessionRegistry(runtime, max_sessions=4),
                              clock=ManualClock(), cpu_time_s=lambda: 0.0, cores=2)
    runtime._engines = [_Queued(12)]  # type: ignore[list-item]
    task = asyncio.create_task(sampler.run())
    for _ in range(50):
        await asyncio.sleep(0)
    task.cancel()
    assert runtime.ladder.level == len(Step)


# --- what each rung changes -----------------------------------------------------------------


@pytest.fixture
async def runtime(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    register_fakes(monkeypatch.setitem)
    settings = fake_settings(degradation={"short_reply_tokens": 8})
    async with Runtime(settings) as runtime:
        yield runtime


def take(runtime: Runtime, steps: int) -> None:
    """Press ``runtime``'s ladder until ``steps`` rungs are taken."""
    ladder, now_s = runtime.ladder, 0.0
    while ladder.level < steps:
        ladder.observe(Pressure(live_queue_depth=100), now_s)
        now_s += 1.0


async def reply_to(runtime: Runtime, text: str) -> str:
    async with Conversation(runtime, ConversationOptions(live=False)) as conversation:
        (await runtime.llm_backend()).reply = " ".join(  # type: ignore[attr-defined]
            f"word{i}" for i in range(40)) + "."
        await conversation.send_text(text)
        await conversation.end_input()
        async for _ in conversation.messages():
            pass
        return conversation.turns[-1].reply


async def test_shorter_replies_cap_new_answers(runtime: Runtime) -> None:
    assert len((await reply_to(runtime, "Tell me a story.")).split()) == 40
    take(runtime, 1)
    assert len((await reply_to(runtime, "Tell me a story.")).split()) == 8


async def test_new_sessions_start_at_the_reduced_frame_rate(runtime: Runtime) -> None:
    assert conversation_options(runtime, LiveSessionOptions()).fps == 25
    take(runtime, 2)
    options = conversation_options(runtime, LiveSessionOptions())
    assert options.fps == 20
    async with Conversation(runtime, options) as conversation:
        assert conversation.fps == conversation.timeline.fps == 20


async def test_small_llm_only_keeps_hard_questions_off_the_large_model() -> None:
    runtime = Runtime(load_settings(routing={"large_url": "http://127.0.0.1:9/v1",
                                             "mode": "always"}))
    assert (await route_answer(runtime, "Explain tides", None)).route == "large"
    take(runtime, 3)
    routed = await route_answer(runtime, "Explain tides", None)
    assert (routed.route, routed.fallback) == ("small", False)
    await runtime.aclose()


async def test_refuse_sessions_gives_a_retryable_503_and_live_sessions_go_on(
        runtime: Runtime) -> None:
    registry = SessionRegistry(runtime, max_sessions=4)
    owner = Principal(key_id="k", scope="key")
    live = await registry.create(owner, ConversationOptions())
    take(runtime, 4)
    with pytest.raises(Overloaded, match="under heavy load") as caught:
        await registry.create(owner, ConversationOptions())
    assert caught.value.retryable and caught.value.retry_after_s == 15.0
    assert registry.get(live.session_id, owner) is live
    await registry.close_all(0.0)


async def test_an_engine_counts_live_requests_apart_from_offline_ones() -> None:
    from talkface import priority

    release = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        await release.wait()
        return items

    engine = Engine("e", slow, BatchingOptions(max_batch_size=1, max_wait_ms=0))
    running = asyncio.create_task(engine.submit(0))
    await asyncio.sleep(0.01)
    waiting = [asyncio.create_task(engine.submit(i)) for i in (1, 2)]
    with priority.offline_work():
        offline = asyncio.create_task(engine.submit(3))
    await asyncio.sleep(0.01)
    assert (engine.live_queue_depth, engine.queue_depth) == (2, 3)
    release.set()
    await asyncio.gather(running, *waiting, offline)
    await engine.aclose()


def test_the_documented_defaults_and_example_are_the_real_ones(tmp_path: Path) -> None:
    """docs/api.md's "Under pressure" section: its table of limits, its TOML example."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text("utf-8")
    section = docs[docs.index("## Under pressure"):docs.index("## Quotas")]
    defaults = DegradationSettings()
    for name, value in re.findall(r"\| `(max_\w+)` \| ([\d.]+) \|", section):
        assert getattr(defaults, name) == float(value), name
    assert [str(s) for s in defaults.order] == re.findall(r"^\d\. `(\w+)`", section, re.M)
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    config = tmp_path / "talkface.toml"
    config.write_text(example.group(1), encoding="utf-8")
    ladder = DegradationLadder(load_settings(config).degradation)
    assert run(ladder, BUSY, 0, 100) == [(5.0, "shorter_replies", True),
                                         (15.0, "refuse_sessions", True)]
