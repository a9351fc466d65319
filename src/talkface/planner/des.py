"""Discrete-event building blocks (SimPy): processors, micro-batchers, per-session work.

* :class:`ProcessorPool` shares ``capacity`` processors among the jobs running on it
  (processor sharing): a CPU box with N cores, or one GPU that several replicas share.
  A job that needs ``demand`` processors runs at full speed while the total demand fits,
  and every job slows by ``capacity / total demand`` when it does not.
* :class:`BatchingStage` is :class:`talkface.engines.Engine` in simulated time: per
  replica one FIFO queue; a free replica takes the oldest request, takes whatever else
  is waiting up to ``max_batch_size``, and when the batch is not full waits at most
  ``max_wait_ms`` from that moment for more.
* :class:`PerSessionStage` runs each request at once on its session's own worker (a
  per-stream video encoder), sharing a pool when it has one.

The LLM's continuous batching is in :mod:`talkface.planner.continuous`, the embedded
llama.cpp LLM's sentence turns in :mod:`talkface.planner.turns`. Everything is
driven by callbacks rather than processes where it matters: a simulated 1500-session
cluster handles millions of events.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import simpy

_EPS_S = 1e-9


class _Job:
    __slots__ = ("demand", "event", "remaining_s")

    def __init__(self, remaining_s: float, demand: float, event: simpy.Event) -> None:
        self.remaining_s = remaining_s
        self.demand = demand
        self.event = event


class ProcessorPool:
    """Processors shared by the jobs on them (egalitarian processor sharing).

    Args:
        env: the simulation.
        capacity: processors (cores of a CPU box; 1 for a GPU).
        name: for reports.
    """

    def __init__(self, env: simpy.Environment, capacity: float, name: str) -> None:
        if capacity <= 0:
            raise ValueError("a processor pool needs a positive capacity")
        self.env = env
        self.capacity = capacity
        self.name = name
        self._jobs: list[_Job] = []
        self._demand = 0.0
        self._rate = 1.0
        self._last_s = env.now
        self._generation = 0
        self.busy_integral_s = 0.0
        """Integral of ``min(demand, capacity) / capacity`` over time: utilisation x time."""
        self.busy_core_s = 0.0
        """Integral of ``min(demand, capacity)`` over time: processor-seconds used."""

    def run(self, work_s: float, demand: float = 1.0) -> simpy.Event:
        """Start a job of ``work_s`` seconds (at full speed); the event fires when it ends."""
        self._advance()
        job = _Job(work_s, demand, self.env.event())
        self._jobs.append(job)
        self._demand += demand
        self._reschedule()
        return job.event

    def busy_s(self) -> float:
        """Busy integral up to now."""
        self._advance()
        return self.busy_integral_s

    def used_core_s(self) -> float:
        """Processor-seconds used up to now."""
        self._advance()
        return self.busy_core_s

    def resize(self, capacity: float) -> None:
        """Change the processors from now on (the jobs running speed up or slow down)."""
        if capacity <= 0:
            raise ValueError("a processor pool needs a positive capacity")
        self._advance()
        self.capacity = capacity
        self._reschedule()

    def _advance(self) -> None:
        now = self.env.now
        dt = now - self._last_s
        if dt > 0 and self._jobs:
            progress = dt * self._rate
            for job in self._jobs:
                job.remaining_s -= progress
            used = min(self._demand, self.capacity)
            self.busy_integral_s += dt * used / self.capacity
            self.busy_core_s += dt * used
        self._last_s = now

    def _reschedule(self) -> None:
        self._generation += 1
        if not self._jobs:
            self._rate = 1.0
            return
        self._rate = min(1.0, self.capacity / self._demand)
        shortest = min(job.remaining_s for job in self._jobs)
        generation = self._generation
        timer = self.env.timeout(max(0.0, shortest / self._rate))
        timer.callbacks.append(lambda _event: self._on_timer(generation))

    def _on_timer(self, generation: int) -> None:
        if generation != self._generation:
            return  # a job started or ended since: a newer timer is pending
        self._advance()
        finished = [job for job in self._jobs if job.remaining_s <= _EPS_S]
        if finished:
            self._jobs = [job for job in self._jobs if job.remaining_s > _EPS_S]
            for job in finished:
                self._demand -= job.demand
                job.event.succeed()
            if not self._jobs:
                self._demand = 0.0  # no floating-point residue
        self._reschedule()


class Executor:
    """Where a replica's work runs: alone at full speed, or on a shared pool."""

    __slots__ = ("busy_s", "demand", "env", "pool")

    def __init__(self, env: simpy.Environment, pool: ProcessorPool | None, demand: float) -> None:
        self.env = env
        self.pool = pool
        self.demand = demand
        self.busy_s = 0.0
        """Seconds of work this executor started (at full speed)."""

    def run(self, work_s: float) -> simpy.Event:
        """Run ``work_s`` seconds of full-speed work; the event fires when it is done (later on
        a busy pool)."""
        self.busy_s += work_s
        if self.pool is None:
            return self.env.timeout(work_s)
        return self.pool.run(work_s, self.demand)


class Request:
    """One request to a stage.

    Callers either register :meth:`on_done` callbacks (cheap: called directly when the
    batch ends) or wait for the :attr:`done` event from a SimPy process.
    """

    __slots__ = (
        "_callbacks",
        "_event",
        "env",
        "finished",
        "started_s",
        "submitted_s",
        "work_units",
    )

    def __init__(self, env: simpy.Environment, work_units: float) -> None:
        self.env = env
        self.work_units = work_units
        self.submitted_s = env.now
        self.started_s = -1.0
        self.finished = False
        self._callbacks: list[Callable[[], None]] = []
        self._event: simpy.Event | None = None

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the request has been served (at once if it has)."""
        if self.finished:
            callback()
        else:
            self._callbacks.append(callback)

    @property
    def done(self) -> simpy.Event:
        """An event that fires when the request has been served."""
        if self._event is None:
            self._event = self.env.event()
            if self.finished:
                self._event.succeed()
        return self._event

    def finish(self) -> None:
        """Mark the request done: call its callbacks and wake whoever waits for it."""
        self.finished = True
        for callback in self._callbacks:
            callback()
        if self._event is not None:
            self._event.succeed()


@dataclass(slots=True)
class StageCounters:
    """What a stage saw: requests, batches and waits."""

    requests: int = 0
    batches: int = 0
    batched_requests: int = 0
    waits_s: list[float] = field(default_factory=list)
    service_s: float = 0.0
    steps: int = 0
    """LLM only: decoding steps run."""
    step_sequences: int = 0
    """LLM only: sequences summed over decoding steps (mean running = this / steps)."""

    def reset(self) -> None:
        """Zero every count (the warm-up is not measured)."""
        self.requests = self.batches = self.batched_requests = 0
        self.waits_s.clear()
        self.service_s = 0.0
        self.steps = self.step_sequences = 0

    @property
    def mean_batch_size(self) -> float:
        """Requests per batch on average (LLM: sequences per decoding step)."""
        if self.steps:
            return self.step_sequences / self.steps
        return self.batched_requests / max(1, self.batches)


ServiceFn = Callable[[int, float], float]
"""``(batch size, mean work units per request) -> seconds``, a random draw."""


class _Replica(Protocol):
    executor: Executor

    @property
    def queue(self) -> Sized: ...

    @property
    def ongoing(self) -> int: ...


ReplicaT = TypeVar("ReplicaT", bound=_Replica)


class ReplicatedStage(Generic[ReplicaT]):
    """What every simulated stage of replicas shares: where their busy time is counted,
    what waits in their queues, and which replica a new request goes to (the less busy
    of two drawn at random: Ray Serve's power-of-two-choices router)."""

    replicas: list[ReplicaT]
    _router: random.Random

    @property
    def executors(self) -> list[Executor]:
        """The replicas' executors (where their busy time is counted)."""
        return [r.executor for r in self.replicas]

    @property
    def waiting(self) -> int:
        """Requests waiting in the replicas' queues (not yet taken up by the model)."""
        return sum(len(r.queue) for r in self.replicas)

    def _route(self) -> ReplicaT:
        replicas = self.replicas
        if len(replicas) == 1:
            return replicas[0]
        a, b = self._router.sample(replicas, 2)
        return a if a.ongoing <= b.ongoing else b


class _BatchReplica:
    __slots__ = ("busy", "executor", "filling", "index", "queue", "running", "token")

    def __init__(self, index: int, executor: Executor) -> None:
        self.index = index
        self.executor = executor
        self.queue: collections.deque[Request] = collections.deque()
        self.filling: list[Request] | None = None  # a started batch waiting to fill
        self.running = 0  # requests in the batch being served
        self.busy = False
        self.token = 0  # invalidates the fill timer of a batch that started early

    @property
    def ongoing(self) -> int:
        return len(self.queue) + (len(self.filling) if self.filling else 0) + self.running


class BatchingStage(ReplicatedStage[_BatchReplica]):
    """Engines behind micro-batchers (the policy of ``talkface.engines.Engine``).

    Each replica batches its own FIFO queue: when free, it takes the oldest request and
    whatever else waits, up to ``max_batch_size``; a batch that is not full waits at most
    ``max_wait_ms`` from then for more. With several replicas, each request goes to the
    less busy of two replicas drawn at random (Ray Serve's power-of-two-choices router).

    Args:
        env: the simulation.
        executors: one per replica.
        service: draws a batch's duration.
        max_batch_size: most requests per batch.
        max_wait_s: longest a started batch waits for more requests.
        seed: seeds the router's random choices.
    """

    def __init__(
        self,
        env: simpy.Environment,
        executors: Sequence[Executor],
        service: ServiceFn,
        *,
        max_batch_size: int,
        max_wait_s: float,
        seed: str = "router",
    ) -> None:
        if not executors:
            raise ValueError("a stage needs at least one replica")
        self.env = env
        self.replicas = [_BatchReplica(i, e) for i, e in enumerate(executors)]
        self.service = service
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.counters = StageCounters()
        self._router = random.Random(seed)

    def submit(self, work_units: float) -> Request:
        """Queue one request; it finishes when its batch has been served."""
        request = Request(self.env, work_units)
        self.counters.requests += 1
        replica = self._route()
        if replica.filling is not None:
            replica.filling.append(request)
            if len(replica.filling) >= self.max_batch_size:
                batch, replica.filling = replica.filling, None
                self._start(replica, batch)
        elif not replica.busy:
            self._begin(replica, [request])
        else:
            replica.queue.append(request)
        return request

    def _begin(self, replica: _BatchReplica, batch: list[Request]) -> None:
        """A free replica took its first request(s): run now, or wait for the batch to fill."""
        queue = replica.queue
        while queue and len(batch) < self.max_batch_size:
            batch.append(queue.popleft())
        replica.busy = True
        if len(batch) >= self.max_batch_size or self.max_wait_s <= 0:
            self._start(replica, batch)
            return
        replica.filling = batch
        replica.token += 1
        token = replica.token
        timer = self.env.timeout(self.max_wait_s)
        timer.callbacks.append(lambda _event: self._fill_deadline(replica, token))

    def _fill_deadline(self, replica: _BatchReplica, token: int) -> None:
        if replica.token != token or replica.filling is None:
            return  # that batch already started because it filled up
        batch, replica.filling = replica.filling, None
        self._start(replica, batch)

    def _start(self, replica: _BatchReplica, batch: list[Request]) -> None:
        replica.token += 1
        replica.running = len(batch)
        now = self.env.now
        work = 0.0
        waits = self.counters.waits_s
        for request in batch:
            request.started_s = now
            waits.append(now - request.submitted_s)
            work += request.work_units
        duration = self.service(len(batch), work / len(batch))
        self.counters.batches += 1
        self.counters.batched_requests += len(batch)
        self.counters.service_s += duration
        finished = replica.executor.run(duration)
        finished.callbacks.append(lambda _event: self._finish(replica, batch))

    def _finish(self, replica: _BatchReplica, batch: list[Request]) -> None:
        replica.running = 0
        replica.busy = False
        # The next batch starts before the callers hear back, so a request they submit
        # in response queues behind the ones already waiting (FIFO).
        if replica.queue:
            self._begin(replica, [replica.queue.popleft()])
        for request in batch:
            request.finish()


class PerSessionStage:
    """Each request runs at once on its session's own worker (no batching, no queue).

    A session's requests to it must be sequential (one encoder per stream); with a pool
    they contend for its processors, without one each is a pure delay.
    """

    def __init__(
        self,
        env: simpy.Environment,
        executor: Executor,
        service: ServiceFn,
        mean: ServiceFn | None = None,
    ) -> None:
        self.env = env
        self.executor = executor
        self.service = service
        self.mean = mean or service
        self.counters = StageCounters()

    @property
    def contended(self) -> bool:
        """True when its work shares a processor pool with other stages."""
        return self.executor.pool is not None

    def duration_s(self, work_units: float) -> float:
        """Draw one request's duration and count it (the caller applies the delay)."""
        duration = self.service(1, work_units)
        self.counters.requests += 1
        self.counters.batches += 1
        self.counters.batched_requests += 1
        self.counters.waits_s.append(0.0)
        self.counters.service_s += duration
        self.executor.busy_s += duration
        return duration

    def account(self, work_units: float, count: int) -> None:
        """Count ``count`` requests that delay nothing, at their mean duration (cheap)."""
        if count <= 0:
            return
        duration = self.mean(1, work_units) * count
        self.counters.requests += count
        self.counters.batches += count
        self.counters.batched_requests += count
        self.counters.service_s += duration
        self.executor.busy_s += duration

    def submit(self, work_units: float) -> Request:
        """Start a request of ``work_units`` at once; it finishes after its drawn duration."""
        request = Request(self.env, work_units)
        request.started_s = self.env.now
        duration = self.duration_s(work_units)
        self.executor.busy_s -= duration  # Executor.run counts it again
        self.executor.run(duration).callbacks.append(lambda _event: request.finish())
        return request


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueResult:
    """Outcome of :func:`simulate_queue`."""

    customers: int
    mean_wait_s: float
    mean_batch_size: float
    utilisation: float


def simulate_queue(
    *,
    arrival_rate: float,
    service: Callable[[random.Random, int], float],
    customers: int,
    servers: int = 1,
    max_batch_size: int = 1,
    max_wait_s: float = 0.0,
    seed: int = 0,
    warmup_customers: int = 1000,
) -> QueueResult:
    """One :class:`BatchingStage` fed by Poisson arrivals (the closed-form tests' rig).

    Args:
        arrival_rate: arrivals per second.
        service: ``(rng, batch size) -> seconds``.
        customers: customers measured after the warm-up ones.
        servers: replicas.
        max_batch_size: batching limit.
        max_wait_s: batching wait.
        seed: random seed.
        warmup_customers: first customers left out of the averages.
    """
    env = simpy.Environment()
    arrivals_rng = random.Random(f"{seed}/arrivals")
    service_rng = random.Random(f"{seed}/service")
    executors = [Executor(env, None, 1.0) for _ in range(servers)]
    stage = BatchingStage(
        env,
        executors,
        lambda batch, _work: service(service_rng, batch),
        max_batch_size=max_batch_size,
        max_wait_s=max_wait_s,
    )
    total = customers + warmup_customers
    marks: dict[str, float] = {}

    def arrive() -> simpy.events.ProcessGenerator:
        for i in range(total):
            yield env.timeout(arrivals_rng.expovariate(arrival_rate))
            if i == warmup_customers:
                stage.counters.reset()
                marks["start_s"] = env.now
                marks["busy_s"] = sum(e.busy_s for e in executors)
            stage.submit(1.0)

    env.process(arrive())
    env.run()
    waits = stage.counters.waits_s
    elapsed_s = env.now - marks["start_s"]
    busy_s = sum(e.busy_s for e in executors) - marks["busy_s"]
    return QueueResult(
        customers=len(waits),
        mean_wait_s=sum(waits) / len(waits),
        mean_batch_size=stage.counters.batched_requests / max(1, stage.counters.batches),
        utilisation=busy_s / elapsed_s / servers,
    )
