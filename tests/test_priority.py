"""Live before batch: offline work holds back while a live turn races to its first frame."""

from __future__ import annotations

import asyncio
import time

import pytest

from talkface import priority
from talkface.engines import BatchingOptions, Engine
from talkface.priority import live_turn_starting, offline_work, yield_to_live_turns

pytestmark = pytest.mark.unit


async def _record(batches: list[list[int]], items: list[int]) -> list[int]:
    batches.append(list(items))
    return items


async def test_an_engine_runs_no_offline_request_until_the_live_turn_has_its_first_frame() -> None:
    batches: list[list[int]] = []
    engine = Engine("held", lambda items: _record(batches, items),
                    BatchingOptions(max_batch_size=1, max_wait_ms=0))
    with live_turn_starting() as turn:
        with offline_work():
            render = asyncio.create_task(engine.submit(100))
        await asyncio.sleep(0.1)
        assert batches == []  # held, though the engine is idle
        assert await engine.submit(1) == 1  # live requests still run
        assert batches == [[1]]
        turn.reached_first_frame()
        assert await asyncio.wait_for(render, 1.0) == 100
    assert batches == [[1], [100]]
    await engine.aclose()


async def test_a_live_turn_holds_offline_work_for_at_most_the_hold_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(priority, "MAX_HOLD_S", 0.2)
    batches: list[list[int]] = []
    engine = Engine("held", lambda items: _record(batches, items),
                    BatchingOptions(max_batch_size=1, max_wait_ms=0))
    with live_turn_starting():  # never reaches its first frame
        started_s = time.monotonic()
        with offline_work():
            assert await asyncio.wait_for(engine.submit(7), 2.0) == 7
        assert 0.15 <= time.monotonic() - started_s < 1.0
    await engine.aclose()


async def test_offline_code_outside_the_engines_yields_and_live_code_does_not() -> None:
    with live_turn_starting() as turn:
        await asyncio.wait_for(yield_to_live_turns(), 0.1)  # live code: no wait

        async def encode() -> float:
            with offline_work():
                await yield_to_live_turns()
            return time.monotonic()

        encoding = asyncio.create_task(encode())
        await asyncio.sleep(0.1)
        assert not encoding.done()
        released_s = time.monotonic()
        turn.reached_first_frame()
        assert await asyncio.wait_for(encoding, 1.0) >= released_s
    assert priority.hold_left_s() == 0
