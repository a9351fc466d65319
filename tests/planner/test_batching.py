"""The simulated micro-batcher follows talkface.engines' policy exactly."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import simpy

from talkface.planner.continuous import ContinuousBatchingStage
from talkface.planner.des import BatchingStage, Executor, ProcessorPool

pytestmark = pytest.mark.unit


def _run(
    arrivals_ms: Sequence[float],
    *,
    max_batch_size: int,
    max_wait_ms: float,
    service_ms: float = 10.0,
    replicas: int = 1,
) -> tuple[list[tuple[float, int]], list[float]]:
    """Submit one request at each time; return (batch start ms, size) and each wait ms."""
    env = simpy.Environment()
    batches: list[tuple[float, int]] = []

    def service(batch: int, _work: float) -> float:
        batches.append((round(env.now * 1000, 6), batch))
        return service_ms / 1000

    stage = BatchingStage(
        env,
        [Executor(env, None, 1.0) for _ in range(replicas)],
        service,
        max_batch_size=max_batch_size,
        max_wait_s=max_wait_ms / 1000,
    )

    def feed() -> simpy.events.ProcessGenerator:
        now = 0.0
        for t in arrivals_ms:
            yield env.timeout((t - now) / 1000)
            now = t
            stage.submit(1.0)

    env.process(feed())
    env.run()
    return batches, [round(w * 1000, 6) for w in stage.counters.waits_s]


def test_a_partial_batch_waits_max_wait_from_its_first_request() -> None:
    batches, waits = _run([0, 1, 2], max_batch_size=8, max_wait_ms=5)
    assert batches == [(5.0, 3)]
    assert waits == [5.0, 4.0, 3.0]


def test_a_full_batch_starts_at_once() -> None:
    batches, _ = _run([0, 1, 2, 3, 4], max_batch_size=4, max_wait_ms=50)
    assert batches[0] == (3.0, 4)


def test_requests_that_arrive_while_busy_form_the_next_batch() -> None:
    batches, _ = _run([0, 10, 20, 30], max_batch_size=8, max_wait_ms=5, service_ms=100)
    # First batch alone (5 ms wait); the next takes all three waiting requests when the
    # replica frees up at 105 ms, then waits 5 ms more for others, as Engine does.
    assert batches == [(5.0, 1), (110.0, 3)]


def test_a_queue_longer_than_the_limit_is_served_in_full_batches() -> None:
    batches, _ = _run([0] * 10, max_batch_size=4, max_wait_ms=5, service_ms=10)
    assert [size for _, size in batches] == [4, 4, 2]
    assert [start for start, _ in batches] == [0.0, 10.0, 25.0]


def test_no_wait_runs_whatever_is_queued() -> None:
    batches, _ = _run([0, 1, 2], max_batch_size=8, max_wait_ms=0)
    assert batches == [(0.0, 1), (10.0, 2)]


def test_two_replicas_take_simultaneous_requests_in_parallel() -> None:
    batches, waits = _run([0, 0], max_batch_size=1, max_wait_ms=0, replicas=2)
    assert batches == [(0.0, 1), (0.0, 1)]
    assert waits == [0.0, 0.0]


def test_processor_sharing_slows_jobs_only_beyond_capacity() -> None:
    def finish_times(capacity: float, demands: Sequence[float]) -> list[float]:
        env = simpy.Environment()
        pool = ProcessorPool(env, capacity, "cpu")
        done: list[float] = []
        for demand in demands:
            pool.run(1.0, demand).callbacks.append(lambda _e: done.append(round(env.now, 9)))
        env.run()
        return done

    assert finish_times(2, [1, 1]) == [1.0, 1.0]
    assert finish_times(1, [1, 1]) == [2.0, 2.0]
    # A 2-thread job and a 1-thread job on 2 cores: demand 3, both run at 2/3 speed.
    assert finish_times(2, [2, 1]) == [1.5, 1.5]


def _llm(max_batch_size: int) -> tuple[simpy.Environment, ContinuousBatchingStage]:
    env = simpy.Environment()
    stage = ContinuousBatchingStage(
        env,
        [Executor(env, None, 1.0)],
        prefill=lambda _batch, _work: 0.010,
        decode=lambda _batch, _work: 0.001,
        max_batch_size=max_batch_size,
    )
    return env, stage


def test_llm_with_one_slot_generates_one_reply_after_another() -> None:
    env, stage = _llm(1)
    firsts: list[float] = []
    for _ in range(2):
        stage.submit(100.0, [3], lambda _i: firsts.append(round(env.now * 1000, 6)))
    env.run()
    # prefill 10 ms gives token 1, two 1 ms steps give tokens 2 and 3.
    assert firsts == [12.0, 24.0]


def test_llm_with_free_slots_prefills_arrivals_together() -> None:
    env, stage = _llm(2)
    firsts: list[float] = []
    for _ in range(2):
        stage.submit(100.0, [3], lambda _i: firsts.append(round(env.now * 1000, 6)))
    env.run()
    assert firsts == [12.0, 12.0]


def test_llm_admits_a_new_sequence_at_the_next_step_boundary() -> None:
    env, stage = _llm(4)
    seen: dict[str, float] = {}
    stage.submit(100.0, [2, 50], lambda i: seen.setdefault(f"a{i}", env.now * 1000))

    def late() -> simpy.events.ProcessGenerator:
        yield env.timeout(0.0155)  # mid-step: the run of steps is cut at 16 ms
        stage.submit(100.0, [1], lambda i: seen.setdefault(f"b{i}", env.now * 1000))

    env.process(late())
    env.run()
    assert seen["a0"] == pytest.approx(11.0)
    assert seen["b0"] == pytest.approx(26.0)  # prefilled 16..26 ms, its first token ends it
    # a's 50 tokens: 1 from prefill, 49 steps, 10 ms paused for b's prefill.
    assert seen["a1"] == pytest.approx(10 + 49 + 10)
