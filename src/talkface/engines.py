"""Engines: one loaded model shared by every session of a process, fed by a micro-batcher.

A session never calls a model directly. It submits one request to the stage's
:class:`Engine`; the engine waits at most ``max_wait_ms`` for requests from other sessions
to join, up to ``max_batch_size``, and runs them as one batch in the model's own worker
thread. While a batch runs, the next one gathers, so a busy engine batches by itself and
an idle one adds at most ``max_wait_ms`` of latency.

The queue in front of the model is bounded: when it is full, :meth:`Engine.submit`
raises :class:`~talkface.errors.Overloaded` at once instead of letting every session
stutter. A request whose caller was cancelled (barge-in) is skipped before it runs.

Live before batch (:mod:`talkface.priority`): work submitted inside ``offline_work()``
(render jobs) waits in a second lane, taken only when no live request (a session's turn)
is waiting and no live turn is racing to its first frame, so a long render never queues
ahead of a conversation.

An engine hands the backend one batch at a time, except where the backend shares the
model between calls itself (``max_concurrent_batches``): the llama.cpp LLM takes several
replies at once and lets them take turns by sentence, so no reply waits for another's
whole length.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from talkface import priority
from talkface.errors import BackendError, Overloaded, TalkfaceError

logger = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchingOptions:
    """How an engine groups requests. Names follow Ray Serve's ``@serve.batch``.

    Attributes:
        max_batch_size: most requests run together in one model call.
        max_wait_ms: longest a request waits for others to join its batch.
        max_queue_size: requests waiting beyond this are refused with ``Overloaded``.
        timeout_s: longest one batch may run before its requests fail (retryable).
        max_concurrent_batches: batches handed to the backend before the first returns;
            more than 1 only for a backend that interleaves them itself (the llama.cpp
            LLM takes turns by sentence, so no reply waits for another's whole length).
    """

    max_batch_size: int = 8
    max_wait_ms: float = 2.0
    max_queue_size: int = 256
    timeout_s: float = 60.0
    max_concurrent_batches: int = 1

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        if self.max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_concurrent_batches < 1:
            raise ValueError("max_concurrent_batches must be at least 1")


class BatchingSettings(BaseModel):
    """An engine's batching limits as settings (each stage sets its own defaults).

    Attributes:
        max_batch_size: most requests run together in one model call.
        max_wait_ms: longest a request waits for others to join its batch.
        max_queue_size: requests waiting beyond this are refused with ``Overloaded``.
        max_concurrent_batches: batches handed to the backend at once (see
            :class:`BatchingOptions`).
    """

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(8, ge=1, le=256)
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    max_queue_size: int = Field(256, ge=1)
    max_concurrent_batches: int = Field(default=1, ge=1, le=64)

    def options(self, timeout_s: float) -> BatchingOptions:
        """These limits, with ``timeout_s`` for a whole batch, as the engine takes them."""
        return BatchingOptions(
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            max_queue_size=self.max_queue_size,
            timeout_s=timeout_s,
            max_concurrent_batches=self.max_concurrent_batches,
        )


class StageSettings(BaseModel):
    """What the settings of every engine-backed stage (ASR, LLM, TTS, animator) share.

    Each stage redeclares ``timeout_s`` and ``batching`` with its own defaults.

    Attributes:
        timeout_s: longest one model call may take.
        batching: the stage engine's batching limits.
    """

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(30.0, gt=0)
    batching: BatchingSettings = Field(
        default_factory=lambda: BatchingSettings(
            max_batch_size=8, max_wait_ms=2.0, max_queue_size=256
        )
    )

    def batching_options(self) -> BatchingOptions:
        """The engine limits for these settings: a whole batch may take two model calls'
        time (it queues behind the one running)."""
        return self.batching.options(timeout_s=self.timeout_s * 2)


class ModelThread:
    """The one worker thread a loaded model runs in.

    Models are called from one thread only: most are not thread-safe, and on a small CPU
    box one thread per engine avoids oversubscribing the cores.
    """

    def __init__(self, name: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"talkface-{name}"
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the model thread without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def run_limited(
        self, what: str, timeout_s: float, fn: Callable[..., T], *args: Any, hint: str = ""
    ) -> T:
        """Run ``fn(*args)`` in the model thread within ``timeout_s``, errors named by ``what``.

        Every model's public batch call goes through here, so a slow or failing model reads
        the same to callers: a retryable :class:`BackendError` on timeout, a permanent one
        on an unexpected exception, and talkface's own errors unchanged.

        Args:
            what: the model as a user knows it, e.g. ``"TTS voice 'joe'"``.
            hint: appended to the timeout message (what the user can do about it).
        """
        try:
            async with asyncio.timeout(timeout_s):
                return await self.run(fn, *args)
        except TimeoutError:
            raise BackendError(
                f"{what} took longer than {timeout_s:g} s{hint}", retryable=True
            ) from None
        except TalkfaceError:
            raise
        except Exception as exc:
            raise BackendError(
                f"{what} failed: {type(exc).__name__}: {exc}", retryable=False
            ) from exc

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the model thread from synchronous code and wait."""
        return self._executor.submit(fn, *args).result()

    def shutdown(self) -> None:
        """Stop the worker thread without waiting; calls not yet started are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(slots=True)
class EngineStats:
    """Counters an engine keeps for metrics and for ``talkface bench profile``."""

    requests: int = 0
    batches: int = 0
    refused: int = 0
    failed: int = 0
    skipped_cancelled: int = 0
    batch_sizes: collections.Counter[int] = field(default_factory=collections.Counter)
    recent_service_ms: collections.deque[tuple[int, float]] = field(
        default_factory=lambda: collections.deque(maxlen=2048)
    )
    recent_wait_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=2048)
    )

    @property
    def mean_batch_size(self) -> float:
        """Requests run per batch on average (cancelled requests that were skipped not counted)."""
        return (self.requests - self.skipped_cancelled) / self.batches if self.batches else 0.0


BatchObserver = Callable[[str, int, float, float], None]
"""Called after each batch with (engine name, batch size, max wait ms, service ms)."""


@dataclass(slots=True)
class _Pending(Generic[RequestT, ResultT]):
    request: RequestT
    future: asyncio.Future[ResultT]
    enqueued_s: float
    offline: bool = False


class _Lanes(Generic[RequestT, ResultT]):
    """Requests waiting for a batch: a live lane, served first, and an offline lane, served
    when the live one is empty and no live turn holds offline work back.

    Bounded as a whole by ``maxsize``; the same small surface as ``asyncio.Queue``.
    """

    def __init__(self, maxsize: int) -> None:
        self._maxsize = maxsize
        self._live: collections.deque[_Pending[RequestT, ResultT]] = collections.deque()
        self._offline: collections.deque[_Pending[RequestT, ResultT]] = collections.deque()
        self._ready = asyncio.Event()

    def qsize(self) -> int:
        return len(self._live) + len(self._offline)

    def live_size(self) -> int:
        return len(self._live)

    def empty(self) -> bool:
        """Nothing may be taken now (offline requests held back by live turns count as
        not there yet)."""
        return not self._live and (not self._offline or priority.hold_left_s() > 0)

    def put_nowait(self, pending: _Pending[RequestT, ResultT]) -> None:
        if self.qsize() >= self._maxsize:
            raise asyncio.QueueFull
        (self._offline if pending.offline else self._live).append(pending)
        self._ready.set()

    def get_nowait(self) -> _Pending[RequestT, ResultT]:
        if self._live:
            return self._live.popleft()
        if self._offline and priority.hold_left_s() <= 0:
            return self._offline.popleft()
        raise asyncio.QueueEmpty

    def drain(self) -> list[_Pending[RequestT, ResultT]]:
        """Take every waiting request, held or not (the engine is closing)."""
        taken = [*self._live, *self._offline]
        self._live.clear()
        self._offline.clear()
        return taken

    async def get(self) -> _Pending[RequestT, ResultT]:
        while self.empty():
            self._ready.clear()
            if self._offline:  # held back: until a live request comes or the hold ends
                ready = asyncio.ensure_future(self._ready.wait())
                released = asyncio.ensure_future(priority.wait_until_offline_may_run())
                try:
                    await asyncio.wait([ready, released], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in (ready, released):
                        waiting.cancel()
            else:
                await self._ready.wait()
        return self.get_nowait()


class Engine(Generic[RequestT, ResultT]):
    """A model shared by sessions, behind a bounded micro-batching queue.

    Args:
        name: the engine's name in logs and metrics ("tts:joe", "animator").
        run_batch: runs one batch and returns one result per request, in order. It is
            awaited on the event loop and must do its blocking work in a worker thread
            (backends do, through :class:`ModelThread`).
        options: batching limits.
        observers: callables told about every batch (metrics).
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[RequestT]], Awaitable[list[ResultT]]],
        options: BatchingOptions | None = None,
        *,
        observers: tuple[BatchObserver, ...] = (),
    ) -> None:
        self.name = name
        self.options = options or BatchingOptions()
        self.stats = EngineStats()
        self._run_batch = run_batch
        self._observers = observers
        self._queue: _Lanes[RequestT, ResultT] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._running = 0

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch right now."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def live_queue_depth(self) -> int:
        """Live requests waiting for a batch right now (offline ones left out)."""
        return self._queue.live_size() if self._queue is not None else 0

    @property
    def running(self) -> int:
        """Requests handed to the backend and not yet answered (with
        ``max_concurrent_batches`` above 1, some of them wait for their turn there)."""
        return self._running

    async def submit(self, request: RequestT) -> ResultT:
        """Queue one request and wait for its result.

        Raises:
            Overloaded: the queue is full; nothing was queued.
            BackendError: the model failed or timed out on this request's batch.
        """
        if self._closed:
            raise Overloaded(f"engine {self.name} is shutting down; try again shortly")
        queue = self._ensure_worker()
        loop = asyncio.get_running_loop()
        pending = _Pending(request, loop.create_future(), time.perf_counter(),
                           offline=priority.is_offline())
        try:
            queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.stats.refused += 1
            raise Overloaded(
                f"engine {self.name} has {queue.qsize()} requests waiting "
                f"(max_queue_size={self.options.max_queue_size}); try again shortly",
                retry_after_s=1.0,
            ) from None
        self.stats.requests += 1
        result: ResultT = await pending.future
        return result

    def _ensure_worker(self) -> _Lanes[RequestT, ResultT]:
        loop = asyncio.get_running_loop()
        if (
            self._queue is None
            or self._worker is None
            or self._worker.done()
            or self._loop is not loop
        ):
            # A fresh event loop (tests, a restarted server) gets a fresh queue and worker.
            self._loop = loop
            self._queue = _Lanes(self.options.max_queue_size)
            self._worker = loop.create_task(self._work(self._queue), name=f"engine-{self.name}")
        return self._queue

    async def _gather_batch(
        self, queue: _Lanes[RequestT, ResultT]
    ) -> list[_Pending[RequestT, ResultT]]:
        batch = [await queue.get()]
        deadline = time.perf_counter() + self.options.max_wait_ms / 1000.0
        while len(batch) < self.options.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining_s = deadline - time.perf_counter()
            if remaining_s <= 0:
                break
            try:
                async with asyncio.timeout(remaining_s):
                    batch.append(await queue.get())
            except TimeoutError:
                break
        return batch

    async def _work(self, queue: _Lanes[RequestT, ResultT]) -> None:
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                while len(running) >= self.options.max_concurrent_batches:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                batch = await self._gather_batch(queue)
                live = [p for p in batch if not p.future.done()]
                self.stats.skipped_cancelled += len(batch) - len(live)
                if not live:
                    continue
                task = asyncio.get_running_loop().create_task(self._run(live))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            if running:
                await asyncio.wait(running)

    async def _run(self, live: list[_Pending[RequestT, ResultT]]) -> None:
        """Run one batch and settle its requests' futures."""
        started_s = time.perf_counter()
        max_wait_ms = (started_s - min(p.enqueued_s for p in live)) * 1000.0
        self._running += len(live)
        try:
            async with asyncio.timeout(self.options.timeout_s):
                results = await self._run_batch([p.request for p in live])
            if len(results) != len(live):
                raise BackendError(
                    f"engine {self.name} returned {len(results)} results for "
                    f"{len(live)} requests; this is a bug in the backend",
                    retryable=False,
                )
        except asyncio.CancelledError:
            for p in live:
                p.future.cancel()
            raise
        except TimeoutError:
            self.stats.failed += len(live)
            error = BackendError(
                f"engine {self.name} took longer than {self.options.timeout_s:g} s; "
                "the box may be overloaded, try again",
                retryable=True,
            )
            for p in live:
                if not p.future.done():
                    p.future.set_exception(error)
        except Exception as exc:
            self.stats.failed += len(live)
            failure: TalkfaceError = exc if isinstance(exc, TalkfaceError) else BackendError(
                f"engine {self.name} failed: {type(exc).__name__}: {exc}", retryable=False
            )
            if not isinstance(exc, TalkfaceError):
                logger.exception("engine %s batch failed", self.name)
            for p in live:
                if not p.future.done():
                    p.future.set_exception(failure)
        else:
            for p, result in zip(live, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)
        finally:
            self._running -= len(live)
        service_ms = (time.perf_counter() - started_s) * 1000.0
        self.stats.batches += 1
        self.stats.batch_sizes[len(live)] += 1
        self.stats.recent_service_ms.append((len(live), service_ms))
        self.stats.recent_wait_ms.append(max_wait_ms)
        for observer in self._observers:
            observer(self.name, len(live), max_wait_ms, service_ms)

    async def aclose(self) -> None:
        """Stop the worker; requests still waiting fail with ``Overloaded``."""
        self._closed = True
        worker, queue = self._worker, self._queue
        self._worker = None
        if worker is not None and self._loop is asyncio.get_running_loop():
            worker.cancel()
            # wait() does not re-raise the worker's CancelledError, so ours still propagates.
            await asyncio.wait([worker])
        if queue is not None:
            for pending in queue.drain():
                if not pending.future.done():
                    pending.future.set_exception(
                        Overloaded(f"engine {self.name} shut down before this request ran")
                    )
