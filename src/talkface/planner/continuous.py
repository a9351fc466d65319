"""Continuous batching in simulated time: an LLM server that schedules per decoding step.

Like vLLM or a llama.cpp server: a new sequence joins at the next step, its prefill
pauses the others, and each step gives every running sequence one token. With
``max_batch_size`` 1 it is a sequential engine (one whole reply after another; the
embedded llama.cpp LLM of ``talkface serve`` lets replies take turns by sentence
instead, :mod:`talkface.planner.turns`).
"""

from __future__ import annotations

import bisect
import collections
import random
from collections.abc import Callable, Sequence

import simpy

from talkface.planner.des import Executor, ReplicatedStage, ServiceFn, StageCounters


class Sequence_:
    """One LLM generation: ``boundaries`` are token counts at which a sentence is complete."""

    __slots__ = (
        "boundaries",
        "next_boundary",
        "on_sentence",
        "prompt_tokens",
        "submitted_s",
        "tokens",
    )

    def __init__(
        self,
        prompt_tokens: float,
        boundaries: Sequence[int],
        on_sentence: Callable[[int], None],
        submitted_s: float,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.boundaries = boundaries
        self.on_sentence = on_sentence
        self.submitted_s = submitted_s
        self.tokens = 0
        self.next_boundary = 0

    def add_token(self) -> bool:
        """Count one token; tell the session about finished sentences; True when done."""
        self.tokens += 1
        while (
            self.next_boundary < len(self.boundaries)
            and self.tokens >= self.boundaries[self.next_boundary]
        ):
            self.on_sentence(self.next_boundary)
            self.next_boundary += 1
        return self.next_boundary >= len(self.boundaries)


class _LLMReplica:
    __slots__ = ("active", "block", "busy", "executor", "generation", "queue")

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.active: list[Sequence_] = []
        self.queue: collections.deque[Sequence_] = collections.deque()
        self.busy = False
        self.generation = 0
        # A run of decoding steps in flight: (start time, cumulative step durations).
        self.block: tuple[float, list[float]] | None = None

    @property
    def ongoing(self) -> int:
        return len(self.active) + len(self.queue)


class ContinuousBatchingStage(ReplicatedStage[_LLMReplica]):
    """An LLM server that batches per decoding step, up to ``max_batch_size`` sequences.

    New sequences go to the less loaded of two random replicas (running plus queued). At
    each step boundary a replica admits queued sequences into free slots and prefills
    them together (the others pause; prefill gives each its first token); otherwise it
    runs one decoding step. With ``max_batch_size`` 1 this is a sequential engine.

    On a replica that has its device to itself, the steps up to the next sentence
    boundary are simulated as one event; a sequence arriving meanwhile cuts that run at
    the next step boundary, so admission happens exactly when it would step by step.
    """

    def __init__(
        self,
        env: simpy.Environment,
        executors: Sequence[Executor],
        prefill: ServiceFn,
        decode: ServiceFn,
        *,
        max_batch_size: int,
        seed: str = "router",
    ) -> None:
        self.env = env
        self.replicas = [_LLMReplica(e) for e in executors]
        self._router = random.Random(seed)
        self.prefill = prefill
        self.decode = decode
        self.max_batch_size = max_batch_size
        self.counters = StageCounters()

    def submit(
        self, prompt_tokens: float, boundaries: Sequence[int], on_sentence: Callable[[int], None]
    ) -> None:
        """Start a generation; ``on_sentence(i)`` is called when sentence ``i`` is complete."""
        if not boundaries or boundaries[0] < 1:
            raise ValueError("a reply needs at least one token")
        sequence = Sequence_(prompt_tokens, boundaries, on_sentence, self.env.now)
        self.counters.requests += 1
        replica = self._route()
        replica.queue.append(sequence)
        if not replica.busy:
            # Start at the end of this instant, so that sequences arriving together are
            # scheduled (prefilled) together, as a server's next scheduling step would.
            replica.busy = True
            self.env.timeout(0).callbacks.append(lambda _event: self._step(replica))
        elif replica.block is not None and len(replica.active) < self.max_batch_size:
            self._cut(replica)

    def _step(self, replica: _LLMReplica) -> None:
        replica.block = None
        free = self.max_batch_size - len(replica.active)
        if replica.queue and free > 0:
            admitted = [replica.queue.popleft() for _ in range(min(free, len(replica.queue)))]
            now = self.env.now
            for sequence in admitted:
                self.counters.waits_s.append(now - sequence.submitted_s)
            mean_prompt = sum(s.prompt_tokens for s in admitted) / len(admitted)
            duration = self.prefill(len(admitted), mean_prompt)
            self.counters.batches += 1
            self.counters.batched_requests += len(admitted)
            self.counters.service_s += duration
            replica.busy = True
            done = replica.executor.run(duration)
            done.callbacks.append(lambda _event: self._prefilled(replica, admitted))
        elif replica.active:
            replica.busy = True
            batch = len(replica.active)
            if replica.executor.pool is not None:
                done = replica.executor.run(self.decode(batch, 1.0))
                done.callbacks.append(lambda _event: self._decoded(replica, 1))
                return
            steps = min(s.boundaries[s.next_boundary] - s.tokens for s in replica.active)
            elapsed, cumulative = 0.0, []
            for _ in range(steps):
                elapsed += self.decode(batch, 1.0)
                cumulative.append(elapsed)
            replica.block = (self.env.now, cumulative)
            replica.generation += 1
            generation = replica.generation
            replica.executor.busy_s += elapsed
            timer = self.env.timeout(elapsed)
            timer.callbacks.append(lambda _event: self._block_done(replica, generation, steps))
        else:
            replica.busy = False

    def _cut(self, replica: _LLMReplica) -> None:
        """End the replica's run of steps at the next step boundary (a sequence waits)."""
        assert replica.block is not None
        start_s, cumulative = replica.block
        replica.block = None
        steps = bisect.bisect_left(cumulative, self.env.now - start_s) + 1
        if steps >= len(cumulative):
            return  # the run ends at that boundary anyway
        replica.executor.busy_s -= cumulative[-1] - cumulative[steps - 1]
        replica.generation += 1
        generation = replica.generation
        timer = self.env.timeout(start_s + cumulative[steps - 1] - self.env.now)
        timer.callbacks.append(lambda _event: self._block_done(replica, generation, steps))

    def _block_done(self, replica: _LLMReplica, generation: int, steps: int) -> None:
        if generation != replica.generation:
            return  # this run was cut short; a newer timer ends it
        self._decoded(replica, steps)

    def _prefilled(self, replica: _LLMReplica, admitted: list[Sequence_]) -> None:
        for sequence in admitted:
            if not sequence.add_token():
                replica.active.append(sequence)
        self._step(replica)

    def _decoded(self, replica: _LLMReplica, steps: int) -> None:
        # No sequence reaches a sentence boundary before the run's last step.
        self.counters.steps += steps
        self.counters.step_sequences += steps * len(replica.active)
        if steps > 1:
            for sequence in replica.active:
                sequence.tokens += steps - 1
        replica.active = [s for s in replica.active if not s.add_token()]
        self._step(replica)
