"""Engines whose models live in Ray Serve deployments, behind the in-process interface.

A session calls ``await engine.submit(request)`` whichever host it runs on. Here that
call goes to a ``DeploymentHandle`` at once (the deployment batches requests from every
gateway with ``@serve.batch``), bounded by the stage's ``max_queue_size`` in flight from
this process. Failures read as they do in-process:

* Serve's back-pressure (``max_queued_requests`` reached) → :class:`Overloaded` (503);
* a replica that died → the request is sent again (ASR, TTS and animation requests are
  idempotent) until ``serving.retry_s`` runs out, while Serve replaces the replica;
* an error raised by the backend in the replica → the same talkface error, unwrapped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    RequestCancelledError,
)

from talkface.engines import BatchingOptions, BatchObserver, EngineStats
from talkface.errors import BackendError, Overloaded, TalkfaceError
from talkface.llm.base import ChatMessage, GenerationRequest, GenerationStats
from talkface.serving.deployments import Batched

logger = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")

_REPLICA_GONE = (RayActorError, ActorUnavailableError, DeploymentUnavailableError)
"""Errors that mean "the replica went away", not "the request was bad"."""
_RETRY_PAUSE_S = 0.05


def unwrap_remote_error(exc: BaseException, what: str) -> BaseException:
    """The error a caller should see for ``exc`` raised by a handle call to ``what``."""
    if isinstance(exc, BackPressureError):
        return Overloaded(f"the {what} deployment has too many requests waiting; "
                          "try again shortly", retry_after_s=1.0)
    if isinstance(exc, RayTaskError):
        cause = exc.cause
        if isinstance(cause, TalkfaceError):
            return cause
        return BackendError(f"the {what} deployment failed: {type(cause).__name__}: {cause}",
                            retryable=False)
    if isinstance(exc, _REPLICA_GONE):
        return BackendError(f"the {what} deployment has no live replica; Serve is replacing "
                            "it, try again shortly", retryable=True)
    return exc


async def call_with_retry(call: Callable[[], Awaitable[ResultT]], *, what: str,
                          retry_s: float) -> ResultT:
    """``await call()``, sent again while replicas are replaced, errors unwrapped."""
    deadline_s = time.monotonic() + retry_s
    while True:
        try:
            return await call()
        except _REPLICA_GONE as exc:
            if time.monotonic() >= deadline_s:
                raise unwrap_remote_error(exc, what) from None
            logger.info("%s: a replica went away (%s); sending the request again",
                        what, type(exc).__name__)
            await asyncio.sleep(_RETRY_PAUSE_S)
        except (BackPressureError, RayTaskError) as exc:
            raise unwrap_remote_error(exc, what) from None


class RemoteEngine(Generic[RequestT, ResultT]):
    """An engine whose model runs in a Serve deployment; the same interface as
    :class:`talkface.engines.Engine` (``submit``, ``queue_depth``, ``stats``, ``aclose``).

    Args:
        name: the engine's name in logs and metrics.
        call: sends one request to the deployment and returns its :class:`Batched` result.
        options: ``max_queue_size`` bounds the requests in flight from this process,
            ``timeout_s`` each one (retries included).
        observers: told about every request's batch (metrics), as in-process.
        retry_s: how long a request is sent again while a replica is replaced.
    """

    def __init__(self, name: str, call: Callable[[RequestT], Awaitable[Batched[ResultT]]],
                 options: BatchingOptions, *, observers: tuple[BatchObserver, ...] = (),
                 retry_s: float = 15.0) -> None:
        self.name = name
        self.options = options
        self.stats = EngineStats()
        self._call = call
        self._observers = observers
        self._retry_s = retry_s
        self._in_flight = 0

    @property
    def queue_depth(self) -> int:
        """Requests from this process not yet answered by the deployment."""
        return self._in_flight

    @property
    def live_queue_depth(self) -> int:
        """Requests from this process not yet answered (render jobs run in replicas of
        their own on this host, so every request here is live)."""
        return self._in_flight

    @property
    def running(self) -> int:
        """Requests sent to the deployment and not yet answered (its queue included)."""
        return self._in_flight

    async def submit(self, request: RequestT) -> ResultT:
        """Send one request to the deployment and wait for its result.

        Raises:
            Overloaded: too many requests in flight here, or the deployment refused.
            BackendError: the model failed, timed out, or no replica came back in time.
        """
        if self._in_flight >= self.options.max_queue_size:
            self.stats.refused += 1
            raise Overloaded(f"engine {self.name} has {self._in_flight} requests in flight "
                             f"(max_queue_size={self.options.max_queue_size}); try again "
                             "shortly", retry_after_s=1.0)
        self._in_flight += 1
        self.stats.requests += 1
        sent_s = time.perf_counter()
        try:
            async with asyncio.timeout(self.options.timeout_s):
                batched = await call_with_retry(lambda: self._call(request), what=self.name,
                                                retry_s=self._retry_s)
        except TimeoutError:
            self.stats.failed += 1
            raise BackendError(f"engine {self.name} took longer than "
                               f"{self.options.timeout_s:g} s; try again", retryable=True) from None
        except (TalkfaceError, RequestCancelledError):
            self.stats.failed += 1
            raise
        finally:
            self._in_flight -= 1
        total_ms = (time.perf_counter() - sent_s) * 1000.0
        wait_ms = max(0.0, total_ms - batched.service_ms)
        self.stats.batches += 1
        self.stats.batch_sizes[batched.batch_size] += 1
        self.stats.recent_service_ms.append((batched.batch_size, batched.service_ms))
        self.stats.recent_wait_ms.append(wait_ms)
        for observer in self._observers:
            observer(self.name, batched.batch_size, wait_ms, batched.service_ms)
        return batched.value

    async def aclose(self) -> None:
        """Nothing to release: the deployment outlives this process's engines."""


def conversation_key(messages: tuple[ChatMessage, ...]) -> str:
    """The id that routes a conversation's turns to one LLM replica.

    Derived from the conversation's start (system prompt and first user message), which
    every later turn's prompt repeats, so the OpenAI endpoint (where the client resends
    the history) and live sessions route alike, with no id to keep. Two conversations
    that start alike share a replica, which costs balance, not correctness.
    """
    head = [m for m in messages if m.role == "system"][:1]
    head += [m for m in messages if m.role == "user"][:1]
    digest = hashlib.sha1()
    for message in head:
        digest.update(message.role.encode())
        digest.update(b"\0")
        digest.update(message.content.encode("utf-8", "replace"))
        digest.update(b"\0")
    return "c" + digest.hexdigest()[:16]


class RemoteLLMCall:
    """Streams one generation from the LLM deployment into the request's
    :class:`~talkface.llm.base.TokenStream`; the call a :class:`RemoteEngine` makes."""

    def __init__(self, handle: Any, *, retry_s: float) -> None:
        self._handle = handle.options(stream=True)
        self._retry_s = retry_s

    async def __call__(self, request: GenerationRequest) -> Batched[GenerationStats]:
        """Generate ``request`` on the LLM deployment into its token stream, retrying on a lost
        replica until the first token."""
        started_s = time.perf_counter()
        deadline_s = time.monotonic() + self._retry_s
        stream = request.stream
        while True:
            delivered = False
            response = self._handle.options(
                multiplexed_model_id=conversation_key(request.messages)
            ).generate.remote(request.messages, request.max_tokens, request.temperature)
            stats = GenerationStats(finish_reason="error")
            try:
                async for item in response:
                    if isinstance(item, GenerationStats):
                        stats = item
                    else:
                        delivered = True
                        stream.put(item)
                    if stream.cancelled:
                        response.cancel()
                        stats = GenerationStats(finish_reason="cancelled")
                        break
            except _REPLICA_GONE as exc:
                # A reply already half-spoken cannot be resumed on another replica.
                if delivered or time.monotonic() >= deadline_s:
                    error = unwrap_remote_error(exc, "LLM")
                    stream.close(error)
                    raise error from None
                await asyncio.sleep(_RETRY_PAUSE_S)
                continue
            except (BackPressureError, RayTaskError) as exc:
                error = unwrap_remote_error(exc, "LLM")
                stream.close(error)
                raise error from None
            except BaseException:
                response.cancel()
                stream.cancel()
                stream.close()
                raise
            stream.close()
            return Batched(stats, 1, (time.perf_counter() - started_s) * 1000.0)
