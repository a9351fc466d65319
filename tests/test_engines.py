"""The engine micro-batcher: requests from many sessions share batches, in order."""

from __future__ import annotations

import asyncio

import pytest

from talkface.engines import BatchingOptions, Engine
from talkface.errors import BackendError, Overloaded

pytestmark = pytest.mark.unit


class Recorder:
    """A run_batch that records its batches and can be held closed."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await self.gate.wait()
        return [item * 10 for item in items]


async def test_each_caller_gets_its_own_result() -> None:
    recorder = Recorder()
    engine = Engine("square", recorder, BatchingOptions(max_batch_size=4, max_wait_ms=20))
    results = await asyncio.gather(*(engine.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    await engine.aclose()


async def test_concurrent_requests_are_batched_up_to_the_limit() -> None:
    recorder = Recorder()
    engine = Engine("b", recorder, BatchingOptions(max_batch_size=4, max_wait_ms=50))
    await asyncio.gather(*(engine.submit(i) for i in range(10)))
    assert all(len(batch) <= 4 for batch in recorder.batches)
    assert max(len(batch) for batch in recorder.batches) == 4
    assert sorted(i for batch in recorder.batches for i in batch) == list(range(10))
    assert engine.stats.batches == len(recorder.batches)
    await engine.aclose()


async def test_requests_queue_while_a_batch_runs_and_join_the_next_one() -> None:
    recorder = Recorder()
    engine = Engine("b", recorder, BatchingOptions(max_batch_size=8, max_wait_ms=0))
    recorder.gate.clear()
    first = asyncio.create_task(engine.submit(0))
    while not recorder.batches:
        await asyncio.sleep(0)
    rest = [asyncio.create_task(engine.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    recorder.gate.set()
    await asyncio.gather(first, *rest)
    assert recorder.batches == [[0], [1, 2, 3, 4, 5]]
    await engine.aclose()


async def two_at_once_held(jobs: int) -> tuple[Recorder, Engine[int, int], list[asyncio.Task[int]]]:
    """An engine handing its backend two one-request batches at once, the backend held
    closed, and ``jobs`` requests submitted to it."""
    recorder = Recorder()
    engine = Engine("llm", recorder, BatchingOptions(max_batch_size=1, max_wait_ms=0,
                                                      max_concurrent_batches=2))
    recorder.gate.clear()
    tasks = [asyncio.create_task(engine.submit(i)) for i in range(jobs)]
    for _ in range(20):
        await asyncio.sleep(0)
    return recorder, engine, tasks


async def test_a_backend_that_interleaves_gets_several_batches_at_once() -> None:
    recorder, engine, jobs = await two_at_once_held(3)
    # Two batches handed over while neither has returned; the third waits for a slot.
    assert recorder.batches == [[0], [1]] and engine.queue_depth == 1
    assert engine.running == 2
    recorder.gate.set()
    assert await asyncio.gather(*jobs) == [0, 10, 20]
    assert engine.running == 0
    assert recorder.batches == [[0], [1], [2]]
    await engine.aclose()


async def test_closing_cancels_every_batch_under_way() -> None:
    _, engine, jobs = await two_at_once_held(2)
    await engine.aclose()
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


async def test_a_full_queue_refuses_at_once_with_overloaded() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    engine = Engine("tiny", recorder, BatchingOptions(max_batch_size=1, max_queue_size=2))
    running = asyncio.create_task(engine.submit(0))
    while not recorder.batches:
        await asyncio.sleep(0)
    queued = [asyncio.create_task(engine.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="max_queue_size=2"):
        await engine.submit(3)
    recorder.gate.set()
    assert await asyncio.gather(running, *queued) == [0, 10, 20]
    assert engine.stats.refused == 1
    await engine.aclose()


async def test_a_cancelled_request_is_skipped_before_it_runs() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    engine = Engine("c", recorder, BatchingOptions(max_batch_size=1))
    running = asyncio.create_task(engine.submit(0))
    while not recorder.batches:
        await asyncio.sleep(0)
    doomed = asyncio.create_task(engine.submit(1))
    kept = asyncio.create_task(engine.submit(2))
    await asyncio.sleep(0)
    doomed.cancel()
    recorder.gate.set()
    assert await running == 0
    assert await kept == 20
    assert [1] not in recorder.batches
    assert engine.stats.skipped_cancelled == 1
    await engine.aclose()


async def test_a_failing_batch_fails_its_callers_and_the_engine_goes_on() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("model exploded")
        return items

    engine = Engine("flaky", flaky, BatchingOptions(max_batch_size=1))
    with pytest.raises(BackendError, match="model exploded"):
        await engine.submit(1)
    assert await engine.submit(2) == 2
    assert engine.stats.failed == 1
    await engine.aclose()


async def test_a_batch_that_hangs_times_out_as_retryable() -> None:
    async def hang(items: list[int]) -> list[int]:
        await asyncio.Event().wait()
        return items

    engine = Engine("hang", hang, BatchingOptions(timeout_s=0.05))
    with pytest.raises(BackendError) as info:
        await engine.submit(1)
    assert info.value.retryable
    await engine.aclose()


async def test_closing_fails_waiting_requests_instead_of_hanging() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    engine = Engine("close", recorder, BatchingOptions(max_batch_size=1))
    running = asyncio.create_task(engine.submit(0))
    while not recorder.batches:
        await asyncio.sleep(0)
    waiting = asyncio.create_task(engine.submit(1))
    await asyncio.sleep(0)
    await engine.aclose()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(Overloaded):
        await waiting
    with pytest.raises(Overloaded, match="shutting down"):
        await engine.submit(2)


def test_batching_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        BatchingOptions(max_wait_ms=-1)


async def test_live_requests_are_served_before_waiting_offline_work() -> None:
    """A render job's requests queue behind a session's, whatever arrived first."""
    from talkface.priority import offline_work

    recorder = Recorder()
    recorder.gate.clear()
    engine = Engine("live-first", recorder, BatchingOptions(max_batch_size=1, max_wait_ms=0))
    busy = asyncio.create_task(engine.submit(0))
    while not recorder.batches:
        await asyncio.sleep(0)
    with offline_work():  # tasks started here carry the offline mark
        renders = [asyncio.create_task(engine.submit(i)) for i in (100, 101)]
    await asyncio.sleep(0)
    live = asyncio.create_task(engine.submit(1))
    await asyncio.sleep(0)
    assert engine.queue_depth == 3
    recorder.gate.set()
    await asyncio.gather(busy, live, *renders)
    assert recorder.batches == [[0], [1], [100], [101]]
    await engine.aclose()
