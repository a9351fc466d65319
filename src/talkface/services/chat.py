"""Chat completions through the shared LLM engine, the way live sessions use it.

A request is checked and fitted to the model's context first (:func:`plan_chat`); then
a :class:`ChatRun` submits it to the engine and waits for the first text, so a refusal
(the engine's queue is full, the model failed to start) is still an HTTP error and not a
broken stream. Stop sequences are applied to the text as it streams: the few characters
that might begin a stop sequence are held back until it is clear that they do not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from talkface.api.schemas import ChatCompletionRequest
from talkface.config import Settings
from talkface.engines import Engine
from talkface.errors import BadInput, PayloadTooLarge
from talkface.llm.base import (
    ChatMessage,
    GenerationRequest,
    GenerationStats,
    LLMBackend,
    TokenStream,
)

DEFAULT_MAX_TOKENS = 512
"""Reply length when the client sets none (OpenAI's is "the rest of the context")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatPlan:
    """What to generate, fitted to the model.

    Attributes:
        messages: the prompt.
        max_tokens: the reply's length limit (the client's, capped by what fits).
        temperature: sampling temperature.
        stops: stop sequences.
    """

    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float
    stops: tuple[str, ...]


def plan_chat(body: ChatCompletionRequest, backend: LLMBackend, settings: Settings) -> ChatPlan:
    """Check ``body`` and fit it to the model's context.

    Raises:
        PayloadTooLarge: the messages are longer than ``limits.max_text_chars``.
        BadInput: they do not fit in the model's context, or a stop list is too long.
    """
    messages = tuple(
        ChatMessage(role="system" if m.role == "developer" else m.role, content=m.text())
        for m in body.messages
    )
    limit = settings.server.limits.max_text_chars
    chars = sum(len(m.content) for m in messages)
    if chars > limit:
        raise PayloadTooLarge(
            f"the messages hold {chars} characters; this server accepts at most {limit} "
            "per request (limits.max_text_chars): send less history"
        )
    stops = body.stop_sequences()
    if len(stops) > 4:
        raise BadInput("stop: at most 4 stop sequences")
    context = settings.llm.context_tokens
    prompt_tokens = backend.count_prompt_tokens(messages)
    room = context - prompt_tokens
    if room < 1:
        raise BadInput(
            f"messages: about {prompt_tokens} tokens, but the model's context holds "
            f"{context} (prompt and reply together): send fewer or shorter messages"
        )
    requested = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    temperature = settings.llm.temperature if body.temperature is None else body.temperature
    return ChatPlan(
        messages=messages, max_tokens=min(requested, room), temperature=temperature, stops=stops
    )


class ChatRun:
    """One generation: :meth:`start` it, read :meth:`deltas`, then look at the outcome.

    Args:
        engine: the shared LLM engine.
        plan: what to generate.
    """

    def __init__(self, engine: Engine[GenerationRequest, GenerationStats], plan: ChatPlan) -> None:
        self._engine = engine
        self._plan = plan
        self._stream: TokenStream | None = None
        self._reader: AsyncIterator[str] | None = None
        self._generation: asyncio.Future[GenerationStats] | None = None
        self._first: str | None = None
        self._held = ""
        self.text = ""
        self.stats: GenerationStats | None = None
        self.stopped = False
        """True when a stop sequence ended the reply."""

    @property
    def finish_reason(self) -> str:
        """"length" when the reply hit ``max_tokens``, else "stop"."""
        if not self.stopped and self.stats is not None and self.stats.finish_reason == "length":
            return "length"
        return "stop"

    async def start(self) -> None:
        """Submit the generation and wait for its first text.

        Raises:
            Overloaded: the engine's queue is full.
            BackendError: the model failed before writing anything.
        """
        self._stream = TokenStream()
        self._reader = self._stream.__aiter__()
        self._generation = asyncio.ensure_future(self._engine.submit(GenerationRequest(
            messages=self._plan.messages, stream=self._stream,
            max_tokens=self._plan.max_tokens, temperature=self._plan.temperature,
        )))
        self._generation.add_done_callback(_retrieve)
        self._first = await self._next_raw()

    async def deltas(self) -> AsyncIterator[str]:
        """The reply's text, delta by delta, with stop sequences applied."""
        raw = self._first
        while raw is not None and not self.stopped:
            if out := self._release(raw, final=False):
                self.text += out
                yield out
            if self.stopped:
                break
            raw = await self._next_raw()
        if not self.stopped and (out := self._release("", final=True)):
            self.text += out
            yield out
        await self._finish()

    async def _finish(self) -> None:
        assert self._stream is not None and self._generation is not None
        if self.stopped:
            self._stream.cancel()  # the model stops at its next token
        self.stats = await self._generation

    def cancel(self) -> None:
        """Stop generating now (the client went away); safe to call at any time."""
        if self._stream is not None:
            self._stream.cancel()
        if self._generation is not None and not self._generation.done():
            self._generation.cancel()

    async def _next_raw(self) -> str | None:
        """The next delta from the model, or None at the end; raises the engine's error."""
        assert self._reader is not None and self._generation is not None
        next_delta = asyncio.ensure_future(anext(self._reader))
        next_delta.add_done_callback(_retrieve)
        try:
            await asyncio.wait({next_delta, self._generation},
                               return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the reader went away (client disconnect): stop reading
            next_delta.cancel()
            raise
        if not next_delta.done() and self._generation.exception() is not None:
            # The engine refused or failed before the backend took the stream, which
            # then is never closed: its error is the answer.
            next_delta.cancel()
            await asyncio.wait({next_delta})
            raise self._generation.exception()  # type: ignore[misc]
        try:
            return await next_delta
        except StopAsyncIteration:
            return None

    def _release(self, text: str, *, final: bool) -> str:
        """The part of the text so far that is certainly not the start of a stop sequence."""
        self._held += text
        stops = self._plan.stops
        if not stops:
            out, self._held = self._held, ""
            return out
        found = [i for i in (self._held.find(s) for s in stops) if i >= 0]
        if found:
            out, self._held = self._held[: min(found)], ""
            self.stopped = True
            return out
        hold = 0
        if not final:
            for size in range(min(len(self._held), max(map(len, stops)) - 1), 0, -1):
                if any(s.startswith(self._held[-size:]) for s in stops):
                    hold = size
                    break
        cut = len(self._held) - hold
        out, self._held = self._held[:cut], self._held[cut:]
        return out


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A generation (or a read of its stream) abandoned by a client that left may still
    # fail or end; that is not news, and asyncio must not report it as unhandled.
    if not future.cancelled():
        future.exception()
