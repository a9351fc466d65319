"""The LLM stage's contract: settings, chat messages, streamed generation and the ABC.

Generation streams: each :class:`GenerationRequest` carries a :class:`TokenStream` that
the backend writes text deltas into as they are produced, while the session reads them
on the event loop. The engine's result for a request is only its
:class:`GenerationStats`, delivered when the generation is over. A reader that stops
early (barge-in) cancels its stream, and the backend stops generating at the next token.

To add an LLM backend, write one module with an :class:`LLMBackend` subclass and add one
line to :data:`talkface.llm.registry.LLM_BACKENDS`.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Self

from pydantic import Field

from talkface.engines import BatchingOptions, BatchingSettings, StageSettings
from talkface.errors import BackendError, TalkfaceError

MESSAGE_TEMPLATE_TOKENS = 6
"""Tokens a chat template wraps each message in (ChatML: ``<|im_start|>``, the role, a
newline, ``<|im_end|>``, a newline: 5; one more for templates that say more)."""
PROMPT_TEMPLATE_MARGIN_TOKENS = 48
"""Kept free besides, where a prompt is estimated message by message: the template's
opening of the reply, a default system prompt some templates add, the language hint added
to the system prompt, and tokens that merge differently across message boundaries."""

DEFAULT_PERSONA = (
    "You are Ava, a friendly assistant shown as a talking face. Everything you write is "
    "spoken aloud, so answer in one to three short, plain sentences, in the language the "
    "user speaks, without lists, code, markdown or emoji. Most sentences need no tag; "
    "only a clearly joyful sentence starts with [happy], and only a sad or warning one "
    "with [serious]."
)
"""The system prompt. The expression tags are the ones :mod:`talkface.llm.emotion` takes
off a sentence before it is spoken. It gives no example sentence: small models repeat
examples word for word in unrelated answers."""


class LLMSettings(StageSettings):
    """Settings of the LLM stage.

    Attributes:
        backend: "llama-cpp" (embedded) or "openai" (any OpenAI-compatible server).
        model: llama-cpp: "qwen2.5-coder-0.5b" or "smollm2" (packaged, see
            :mod:`talkface.llm.models`) or a GGUF path; openai: the model name.
        url: base URL of the OpenAI-compatible server ("http://127.0.0.1:8000/v1").
        api_key: bearer token for that server (None: none sent).
        persona: the system prompt.
        max_reply_tokens: longest reply, in tokens.
        temperature: sampling temperature.
        repeat_penalty: llama-cpp: how much less likely a token that came in the last 64
            tokens is to come again (1.0: no penalty); it makes loops rarer, and the
            reply guard (:mod:`talkface.llm.guard`) stops those that still happen.
        context_tokens: conversation memory budget (system prompt + history + reply);
            the oldest turns are dropped beyond it.
        num_threads: llama.cpp threads (1 unless the box is otherwise idle).
        conversation_cache_mb: llama.cpp: KV caches of other sessions' conversations kept
            (in files of the temporary directory, not in memory) so that sessions taking
            turns do not re-read their histories.
        connect_timeout_s: longest wait to reach a server.
        first_token_timeout_s: longest wait for the first token (a hung server).
        timeout_s: longest a whole reply may take.
    """

    backend: str = "llama-cpp"
    model: str = "qwen2.5-coder-0.5b"
    url: str | None = None
    api_key: str | None = None
    persona: str = DEFAULT_PERSONA
    max_reply_tokens: int = Field(96, ge=1, le=4096)
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    repeat_penalty: float = Field(1.1, ge=1.0, le=2.0)
    context_tokens: int = Field(4096, ge=256, le=131_072)
    num_threads: int = Field(1, ge=1, le=64)
    conversation_cache_mb: int = Field(512, ge=0, le=65_536)
    connect_timeout_s: float = Field(3.0, gt=0)
    first_token_timeout_s: float = Field(15.0, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    batching: BatchingSettings = Field(
        default_factory=lambda: BatchingSettings(
            max_batch_size=1, max_wait_ms=0.0, max_queue_size=64, max_concurrent_batches=4
        )
    )

    def batching_options(self) -> BatchingOptions:
        """The engine limits for these settings."""
        return self.batching.options(timeout_s=self.timeout_s + self.first_token_timeout_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage:
    """One message of a conversation, as chat models take it."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMCapabilities:
    """What an LLM backend can do.

    Attributes:
        batching: it runs several generations at once.
        prefix_reuse: it keeps the evaluated prompt, so a conversation's shared prefix
            (system prompt, history) is not evaluated again every turn.
    """

    batching: bool
    prefix_reuse: bool


_END = object()


class TokenStream:
    """Text deltas handed from a generating backend (any thread) to one reader (the loop).

    Bounded in practice by the request's ``max_tokens``.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._closed = False

    @property
    def cancelled(self) -> bool:
        """True once the reader gave up; the backend should stop generating."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """The reader needs no more text (barge-in, session closed)."""
        self._cancelled.set()

    def put(self, text: str) -> None:
        """Hand over one delta; callable from any thread."""
        self._hand_over(text)

    def close(self, error: BaseException | None = None) -> None:
        """No more deltas (and, with ``error``, the reason); callable from any thread."""
        self._hand_over(error if error else _END)

    def _hand_over(self, item: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            # The reader's event loop is closed (a test's, a stopped server's), and the
            # reader gone with it: nobody is left to hand anything to.
            self._cancelled.set()

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class GenerationRequest:
    """One reply to generate.

    Attributes:
        messages: the prompt: system, history, the user's message.
        stream: where the reply's text goes, delta by delta.
        max_tokens: longest reply.
        temperature: sampling temperature.
    """

    messages: tuple[ChatMessage, ...]
    stream: TokenStream = field(repr=False)
    max_tokens: int = 96
    temperature: float = 0.3


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationStats:
    """How a generation went.

    Attributes:
        prompt_tokens: tokens in the prompt.
        evaluated_prompt_tokens: of those, how many had to be evaluated (the rest were
            reused from the previous prompt's cache); None when the backend cannot tell.
        completion_tokens: tokens generated.
        finish_reason: "stop" (the model ended the reply), "length" (the token budget
            ran out; an unfinished last sentence was dropped), "repetition" (the model
            began repeating itself and was stopped; that sentence was dropped),
            "cancelled", "error".
    """

    prompt_tokens: int = 0
    evaluated_prompt_tokens: int | None = None
    completion_tokens: int = 0
    finish_reason: str = "stop"


class LLMBackend(ABC):
    """A chat model that streams its replies.

    Subclasses implement :meth:`load`, :meth:`count_tokens` and :meth:`_generate_batch`;
    the public :meth:`generate_batch` maps errors once for all of them and guarantees
    that every request's stream is closed.
    """

    name: ClassVar[str]
    capabilities: ClassVar[LLMCapabilities]

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings

    @classmethod
    @abstractmethod
    def load(cls, settings: LLMSettings) -> Self:
        """Load the model or connect to the server (blocking; call at warm-up)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's vocabulary (an estimate for servers)."""

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Tokens the prompt of ``messages`` takes, chat template included, with the
        template's opening of the reply; the reply gets what is left of the context.

        This estimate counts each message and what a template wraps it in, plus a margin
        for a template's own additions (a default system prompt); a backend that knows its
        template counts exactly."""
        return PROMPT_TEMPLATE_MARGIN_TOKENS + sum(
            self.count_tokens(m.content) + MESSAGE_TEMPLATE_TOKENS for m in messages
        )

    def saved_state_bytes(self) -> int:
        """Bytes of other conversations' KV caches kept by this process (on disk, a bounded
        cache: ``conversation_cache_mb``); 0 for models that keep none here."""
        return 0

    async def generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        """Generate every request's reply into its stream; one stats per request.

        Each stream is closed at the end, with the error when its generation failed.
        """
        try:
            return await self._generate_batch(requests)
        except asyncio.CancelledError:
            for request in requests:
                request.stream.cancel()
                request.stream.close()
            raise
        except Exception as exc:
            error = self.failure(exc)
            for request in requests:
                request.stream.close(error)
            return [GenerationStats(finish_reason="error") for _ in requests]

    def failure(self, exc: Exception) -> TalkfaceError:
        """``exc`` as the error a generation's reader gets: talkface's own errors as they
        are, anything else as a :class:`BackendError` naming this backend."""
        if isinstance(exc, TalkfaceError):
            return exc
        return BackendError(
            f"the {self.name} LLM failed: {type(exc).__name__}: {exc}", retryable=False
        )

    @abstractmethod
    async def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        """Generate each request, writing deltas to and closing each stream."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing
        """Release the model or connection."""
