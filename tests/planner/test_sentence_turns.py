"""The simulated llama.cpp LLM takes turns by sentence, as talkface.llm.llama_cpp does:
one sequence at a time, a waiting reply's first words after the current sentence (not
after the whole reply), first words first, then in turn."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import simpy

from talkface.llm.base import LLMSettings
from talkface.planner import Deployment, Distribution, Profile, SimOptions, StageConfig, Workload
from talkface.planner.des import Executor
from talkface.planner.simulate import simulate
from talkface.planner.turns import SentenceTurnsStage

pytestmark = pytest.mark.unit

PREFILL_MS, DECODE_MS = 10.0, 1.0


def _stage(
    max_concurrent: int = 4, switch_ms_per_token: float = 0.0
) -> tuple[simpy.Environment, SentenceTurnsStage]:
    env = simpy.Environment()
    stage = SentenceTurnsStage(
        env,
        [Executor(env, None, 1.0)],
        prefill=lambda _batch, _work: PREFILL_MS / 1000,
        decode=lambda _batch, _work: DECODE_MS / 1000,
        max_concurrent=max_concurrent,
        context_tokens=0.0,
        switch_s_per_token=switch_ms_per_token / 1000,
    )
    return env, stage


def _replies(
    env: simpy.Environment,
    stage: SentenceTurnsStage,
    replies: Sequence[tuple[str, float, Sequence[int]]],
) -> dict[str, float]:
    """Submit each ``(name, at ms, sentence ends)``; return when each sentence was done, ms."""
    seen: dict[str, float] = {}

    def submit(name: str, at_ms: float, boundaries: Sequence[int]) -> simpy.events.ProcessGenerator:
        yield env.timeout(at_ms / 1000)
        stage.submit(
            100.0, boundaries, lambda i: seen.setdefault(f"{name}{i}", round(env.now * 1000, 6))
        )

    for name, at_ms, boundaries in replies:
        env.process(submit(name, at_ms, boundaries))
    env.run()
    return seen


def test_a_reply_running_alone_never_pauses() -> None:
    env, stage = _stage(switch_ms_per_token=0.5)
    seen = _replies(env, stage, [("a", 0, [3, 40, 80])])
    # prefill gives token 1; no one waits, so it runs on past 32 tokens without a switch.
    assert seen == {"a0": 12.0, "a1": 49.0, "a2": 89.0}
    assert stage.switches == 0


def test_a_new_reply_waits_for_one_sentence_not_the_whole_reply() -> None:
    replies = [("a", 0, [2, 50]), ("b", 5, [3])]
    env, stage = _stage(switch_ms_per_token=0.5)
    turns = _replies(env, stage, replies)
    # a's first sentence ends at 11 ms; b goes next: a set aside (2 tokens: 1 ms), b's
    # prefill and 2 steps. Then a is restored (1 ms) and runs to its end alone.
    assert turns == {"a0": 11.0, "b0": 24.0, "a1": 73.0}
    assert stage.switches == 1
    env, sequential = _stage(max_concurrent=1)
    one_after_another = _replies(env, sequential, replies)
    assert one_after_another == {"a0": 11.0, "a1": 59.0, "b0": 71.0}


def test_first_words_first_then_in_turn() -> None:
    env, stage = _stage()
    seen = _replies(
        env, stage, [(name, at, [2, 4, 6]) for name, at in (("a", 0), ("b", 1), ("c", 2))]
    )
    order = sorted(seen, key=lambda k: seen[k])
    assert order == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
    assert [seen[k] for k in order] == [11.0, 22.0, 33.0, 35.0, 37.0, 39.0, 41.0, 43.0, 45.0]


def test_a_run_on_sentence_yields_after_max_turn_chunks() -> None:
    env, stage = _stage()
    seen = _replies(env, stage, [("a", 0, [100]), ("b", 1, [1])])
    # a gives way after 32 tokens (10 + 31 steps); b's prefill is its whole reply.
    assert seen["b0"] == 41.0 + PREFILL_MS
    assert seen["a0"] == 51.0 + 68.0


def test_replies_beyond_max_concurrent_wait_in_the_engine_queue() -> None:
    env, stage = _stage(max_concurrent=2)
    for _ in range(3):
        stage.submit(100.0, [2], lambda _i: None)
    assert stage.waiting == 1  # one runs, one waits for its turn, one waits in the queue
    env, stage = _stage(max_concurrent=2)
    seen = _replies(env, stage, [("a", 0, [2, 4]), ("b", 0, [2, 4]), ("c", 0, [2])])
    # c is handed to the model only when a is complete, then goes first.
    assert seen["a1"] == 24.0 and seen["c0"] == 35.0 and seen["b1"] == 37.0


def test_the_cpu_box_llm_takes_turns_as_talkface_serve_runs_it(cpu_profile: Profile) -> None:
    llm = Deployment.cpu_box(cpu_profile).stages["llm"]
    assert llm.scheduling == "sentence_turns"
    assert llm.max_concurrent_batches == LLMSettings().batching.max_concurrent_batches
    batched = Deployment.cpu_box(cpu_profile, batching={"llm": (4, 0.0)}).stages["llm"]
    assert batched.scheduling == "continuous"  # a server that batches decoding steps
    assert StageConfig(stage="llm").scheduling == "continuous"  # clusters: vLLM-style
    with pytest.raises(ValueError, match="sentence_turns"):
        StageConfig(stage="llm", max_batch_size=4, scheduling="sentence_turns")


# Replies of ~60 tokens (the product caps them at 96): a reply holds the one-core model
# for ~1.2 s, so sessions' turns do meet on the LLM.
LONGER_REPLIES = Workload(reply_tokens=Distribution(mean=60, cv=0.5))
QUICK = SimOptions(seed=1, target_turns=300)


def test_turns_lower_the_p95_time_to_first_frame_of_a_shared_box(cpu_profile: Profile) -> None:
    turns = Deployment.cpu_box(cpu_profile)
    fifo = Deployment.cpu_box(cpu_profile, llm_scheduling="continuous")
    alone_turns = simulate(turns, cpu_profile, LONGER_REPLIES, 1, QUICK)
    alone_fifo = simulate(fifo, cpu_profile, LONGER_REPLIES, 1, QUICK)
    assert alone_turns.ttff_p95_ms == pytest.approx(alone_fifo.ttff_p95_ms, rel=0.02)
    for sessions in (2, 3, 4):
        shared = simulate(turns, cpu_profile, LONGER_REPLIES, sessions, QUICK)
        queued = simulate(fifo, cpu_profile, LONGER_REPLIES, sessions, QUICK)
        assert shared.ttff_p95_ms < 0.95 * queued.ttff_p95_ms, sessions
        assert shared.breakdown_p95_ms["llm"] < queued.breakdown_p95_ms["llm"], sessions
