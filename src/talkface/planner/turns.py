"""Sentence turns in simulated time: the embedded llama.cpp LLM of ``talkface serve``.

One model decodes one sequence at a time (no batched decoding), but replies do not wait
for each other's whole length (:mod:`talkface.llm.llama_cpp`):

* the engine hands the backend up to ``max_concurrent_batches`` replies at once; more wait
  in its queue, first come first served (the live queue the degradation ladder reads);
* the replies handed on take turns on the model: a turn runs a reply to the end of its
  next sentence (or to the next multiple of :data:`MAX_TURN_CHUNKS` tokens), hands the
  sentence on, and the next turn begins; a reply that has handed on no sentence yet goes
  first ("first words first"), the others in round-robin order;
* moving from one unfinished reply to another saves the first one's KV cache and
  restores the other's, each costing :data:`SWITCH_S_PER_TOKEN` per token of its context
  (the conversation's prompt and the reply so far); a reply running alone never pauses.

Not modelled: the save and restore of *finished* conversations between turns (the
prefix reuse of :class:`~talkface.planner.workload.Workload` already says what a prompt
evaluates), and the half sentence a capped reply drops (it is generated all the same).
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Sequence

import simpy

from talkface.llm.llama_cpp import MAX_TURN_CHUNKS
from talkface.planner.continuous import Sequence_
from talkface.planner.des import Executor, ReplicatedStage, ServiceFn, StageCounters

SWITCH_S_PER_TOKEN = 15.0 / 1000 / 1000
"""Seconds to save (or to restore) the KV cache of one token of context: ~15 ms for 1000
tokens, as measured for :mod:`talkface.llm.llama_cpp` on the 2-core box."""

__all__ = ["MAX_TURN_CHUNKS", "SWITCH_S_PER_TOKEN", "SentenceTurnsStage"]


class _TurnsReplica:
    __slots__ = ("current", "executor", "queue", "running", "turns")

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.queue: collections.deque[Sequence_] = collections.deque()
        """In the engine's queue: not handed to the backend yet."""
        self.turns: list[Sequence_] = []
        """Handed to the backend, waiting for their next turn, in order."""
        self.running: Sequence_ | None = None
        """Taking its turn now."""
        self.current: Sequence_ | None = None
        """The unfinished reply whose KV cache the model holds (set aside to switch)."""

    @property
    def ongoing(self) -> int:
        return len(self.queue) + len(self.turns) + (self.running is not None)

    @property
    def in_backend(self) -> int:
        return len(self.turns) + (self.running is not None)


class SentenceTurnsStage(ReplicatedStage[_TurnsReplica]):
    """The llama.cpp LLM's scheduling: one sequence at a time, turns by sentence.

    Same interface as :class:`~talkface.planner.continuous.ContinuousBatchingStage`.
    With ``max_concurrent`` 1 it is a sequential engine (one whole reply after another).
    A turn's work (switch, prefill for a new reply, its decoding steps) runs as one job
    on the replica's executor: nothing can interrupt a turn, as nothing interrupts the
    model thread between two sentences.

    Args:
        env: the simulation.
        executors: one per replica (model instance); requests go to the less loaded of
            two random replicas.
        prefill: draws a prompt evaluation's duration (it gives the first token).
        decode: draws one decoding step's duration.
        max_concurrent: replies the engine hands the backend at once
            (``max_concurrent_batches``).
        context_tokens: tokens of a conversation's context besides its reply (the prompt);
            sets the switching cost.
        switch_s_per_token: seconds to save or restore one token of KV cache.
        seed: seeds the router's random choices.
    """

    def __init__(
        self,
        env: simpy.Environment,
        executors: Sequence[Executor],
        prefill: ServiceFn,
        decode: ServiceFn,
        *,
        max_concurrent: int,
        context_tokens: float,
        switch_s_per_token: float = SWITCH_S_PER_TOKEN,
        seed: str = "router",
    ) -> None:
        if not executors:
            raise ValueError("a stage needs at least one replica")
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.env = env
        self.replicas = [_TurnsReplica(e) for e in executors]
        self.prefill = prefill
        self.decode = decode
        self.max_concurrent = max_concurrent
        self.context_tokens = context_tokens
        self.switch_s_per_token = switch_s_per_token
        self.counters = StageCounters()
        self.switches = 0
        """How often an unfinished reply was set aside for another (never reset)."""
        self._router = random.Random(seed)

    def submit(
        self, prompt_tokens: float, boundaries: Sequence[int], on_sentence: Callable[[int], None]
    ) -> None:
        """Start a generation; ``on_sentence(i)`` is called when sentence ``i`` is complete."""
        if not boundaries or boundaries[0] < 1:
            raise ValueError("a reply needs at least one token")
        sequence = Sequence_(prompt_tokens, boundaries, on_sentence, self.env.now)
        self.counters.requests += 1
        replica = self._route()
        if replica.in_backend < self.max_concurrent:
            replica.turns.append(sequence)
        else:
            replica.queue.append(sequence)
        if replica.running is None:
            self._next_turn(replica)

    def _switch_s(self, sequence: Sequence_) -> float:
        return self.switch_s_per_token * (self.context_tokens + sequence.tokens)

    def _next_turn(self, replica: _TurnsReplica) -> None:
        """First words first: a reply that has handed on no sentence goes before those
        that have; otherwise they go in turn."""
        turns = replica.turns
        if not turns:
            return
        sequence = next((s for s in turns if s.next_boundary == 0), turns[0])
        turns.remove(sequence)
        replica.running = sequence
        work_s = 0.0
        current = replica.current
        if sequence is not current:
            if current is not None:
                work_s += self._switch_s(current)  # set the unfinished reply aside
                self.switches += 1
            if sequence.tokens > 0:
                work_s += self._switch_s(sequence)  # and bring this one back
        replica.current = sequence
        first = sequence.tokens
        if first == 0:  # a new reply: its prompt, which gives its first token
            now = self.env.now
            self.counters.waits_s.append(now - sequence.submitted_s)
            prefill_s = self.prefill(1, sequence.prompt_tokens)
            self.counters.batches += 1
            self.counters.batched_requests += 1
            self.counters.service_s += prefill_s
            work_s += prefill_s
            first = 1
        end = min(
            sequence.boundaries[sequence.next_boundary],
            (sequence.tokens // MAX_TURN_CHUNKS + 1) * MAX_TURN_CHUNKS,
        )
        steps = max(0, end - first)
        for _ in range(steps):
            work_s += self.decode(1, 1.0)
        done = replica.executor.run(work_s)
        done.callbacks.append(lambda _event: self._turn_done(replica, sequence, end, steps))

    def _turn_done(self, replica: _TurnsReplica, sequence: Sequence_, end: int, steps: int) -> None:
        self.counters.steps += steps
        self.counters.step_sequences += steps
        replica.running = None
        sequence.tokens = end - 1
        if sequence.add_token():  # the reply is complete: the engine hands on the next
            replica.current = None
            if replica.queue:
                replica.turns.append(replica.queue.popleft())
        else:
            replica.turns.append(sequence)
        self._next_turn(replica)
