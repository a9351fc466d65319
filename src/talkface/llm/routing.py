"""Tiered routing: FAQ → small (embedded) LLM → large (OpenAI-compatible) LLM.

Every answer has one route, decided in one place for every entry point (a live turn,
``/v1/chat/completions``):

1. a FAQ hit is recited (route ``faq``, no LLM call);
2. otherwise :class:`RoutingPolicy` decides between the small model and the large one
   from the question alone (its length, keywords, regular expressions, or an
   ``always``/``never`` switch), and says why;
3. while the server is under pressure (the degradation ladder's ``small_llm_only``
   step, :mod:`talkface.degradation`), the small model answers every question;
4. a question sent to the large model that cannot reach it (connection refused, no
   connection or no first token in time, a 5xx) is answered by the small model instead:
   the route is then ``small`` with ``fallback`` set, one log line says so (no user
   text), and ``talkface_llm_route_total{route="large_fallback"}`` counts it.

:class:`RoutedLLM` stands in for the LLM engine of one answer, so the reply code is the
same whichever tier answers.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from talkface.engines import BatchingSettings, Engine
from talkface.errors import BackendError, ConfigError
from talkface.llm.base import GenerationRequest, GenerationStats, LLMSettings, TokenStream

if TYPE_CHECKING:
    from talkface.runtime import Runtime

logger = logging.getLogger(__name__)

Route = Literal["faq", "small", "large"]
"""Who answered: the FAQ cache, the small (embedded) LLM, or the large LLM server."""

LLMEngine = Engine[GenerationRequest, GenerationStats]

FALLBACK_HEADER = "x-talkface-route-fallback"
"""Set (to the tier that could not answer, "large") when the small model stood in."""

DEFAULT_KEYWORDS: tuple[str, ...] = (
    "explain", "why", "how does", "compare", "difference between", "versus",
    "analyse", "analyze", "calculate", "compute", "prove", "derive", "step by step",
    "code", "function", "algorithm", "debug", "equation",
    "解释", "为什么", "比较", "区别", "分析", "计算", "证明", "推导", "代码", "程序", "算法",
)
"""Words that mark a hard question. ASCII ones match whole words, any case; others
(Chinese) match anywhere in the question."""

DEFAULT_PATTERNS: tuple[str, ...] = (
    r"\d\s*[-+*/^×÷=]\s*\d",  # arithmetic: 12*7, 3 + 4, 2^10
    r"```|\bdef \w+\(|\w+\([^()]*\)\s*[;{]",  # code
)
"""Regular expressions (Python syntax, searched case-insensitively) that mark a hard
question."""


_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class RoutingSettings(BaseModel):
    """Where questions go when a large model is configured (``[routing]``).

    Attributes:
        large_url: base URL of the large model's OpenAI-compatible server
            (``http://gpu-box:8000/v1``); None: no large tier, the small LLM answers all.
        large_model: the large model's name on that server.
        large_api_key: bearer token for that server (None: none sent).
        mode: "auto" (the rules below), "always" (every question not answered by the
            FAQ goes to the large model) or "never" (none does).
        min_words: a question of at least this many words goes to the large model.
        min_cjk_chars: a question with at least this many Chinese (CJK) characters goes
            to the large model (those languages are written without spaces between words).
        keywords: words that send a question to the large model (see
            :data:`DEFAULT_KEYWORDS`).
        patterns: regular expressions that send a question to the large model (see
            :data:`DEFAULT_PATTERNS`).
        connect_timeout_s: longest wait to reach the large server before falling back.
        first_token_timeout_s: longest wait for its first token before falling back.
        max_concurrent: large-model requests in flight at once (the server batches them).
    """

    model_config = ConfigDict(extra="forbid")

    large_url: str | None = None
    large_model: str = "default"
    large_api_key: str | None = None
    mode: Literal["auto", "always", "never"] = "auto"
    min_words: int = Field(30, ge=1)
    min_cjk_chars: int = Field(40, ge=1)
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    connect_timeout_s: float = Field(2.0, gt=0)
    first_token_timeout_s: float = Field(10.0, gt=0)
    max_concurrent: int = Field(16, ge=1, le=256)

    @model_validator(mode="after")
    def _check(self) -> RoutingSettings:
        if self.large_url is not None and not self.large_url.startswith(("http://", "https://")):
            raise ValueError(f"large_url {self.large_url!r} must start with http:// or https://")
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"routing pattern {pattern!r} is not a regular "
                                 f"expression: {exc}") from None
        return self

    def large_llm_settings(self, small: LLMSettings) -> LLMSettings:
        """The large tier's LLM settings: the small one's persona and limits, this server.

        Raises:
            ConfigError: no large model is configured.
        """
        if self.large_url is None:
            raise ConfigError("no large LLM is configured: pass --llm-large-url "
                              "(or set TALKFACE_ROUTING__LARGE_URL)")
        return small.model_copy(update={
            "backend": "openai", "url": self.large_url, "model": self.large_model,
            "api_key": self.large_api_key, "connect_timeout_s": self.connect_timeout_s,
            "first_token_timeout_s": self.first_token_timeout_s,
            # Each request its own stream, up to max_concurrent at once: a request that
            # comes while others stream starts at once instead of waiting for them all.
            "batching": BatchingSettings(max_batch_size=1, max_wait_ms=0.0,
                                         max_queue_size=max(64, 4 * self.max_concurrent),
                                         max_concurrent_batches=self.max_concurrent),
        })


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDecision:
    """Which LLM tier a question goes to, and why.

    Attributes:
        tier: "small" or "large".
        reason: the rule that decided, e.g. ``"keyword 'explain'"``, ``"31 words"``,
            ``"mode always"``, ``"no large model"``, ``"no rule matched"``. It names the
            rule, never the user's text, so it may be logged.
    """

    tier: Literal["small", "large"]
    reason: str


class RoutingPolicy:
    """Decides, from a question alone, whether the small or the large LLM answers it.

    Rules, first match wins: no large model → small; ``mode`` "never" → small, "always"
    → large; at least ``min_words`` words or ``min_cjk_chars`` CJK characters → large; a keyword
    → large; a pattern → large; else small.

    >>> policy = RoutingPolicy(RoutingSettings(large_url="http://gpu-box:8000/v1"))
    >>> policy.decide("Hello there!").tier
    'small'
    >>> policy.decide("Can you explain how rainbows form?")
    RouteDecision(tier='large', reason="keyword 'explain'")
    """

    def __init__(self, settings: RoutingSettings) -> None:
        self.settings = settings
        self._keywords = [
            (word, re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
             if word.isascii() else None)
            for word in settings.keywords if word.strip()
        ]
        self._patterns = [(p, re.compile(p, re.IGNORECASE)) for p in settings.patterns]

    def decide(self, question: str) -> RouteDecision:
        """The tier for ``question`` and the rule that chose it."""
        settings = self.settings
        if settings.large_url is None:
            return RouteDecision(tier="small", reason="no large model")
        if settings.mode != "auto":
            return RouteDecision(tier="large" if settings.mode == "always" else "small",
                                 reason=f"mode {settings.mode}")
        words = len(question.split())
        if words >= settings.min_words:
            return RouteDecision(tier="large", reason=f"{words} words")
        chars = len(_CJK.findall(question))
        if chars >= settings.min_cjk_chars:
            return RouteDecision(tier="large", reason=f"{chars} CJK characters")
        lowered = question.casefold()
        for word, regex in self._keywords:
            if (regex.search(question) if regex else word.casefold() in lowered):
                return RouteDecision(tier="large", reason=f"keyword {word!r}")
        for pattern, regex in self._patterns:
            if regex.search(question):
                return RouteDecision(tier="large", reason=f"pattern '{pattern}'")
        return RouteDecision(tier="small", reason="no rule matched")


class RouteCounts:
    """Answers per route since start: ``faq``, ``small``, ``large`` and
    ``large_fallback`` (sent to the large model, answered by the small one). Each answer
    counts once; read by ``/metrics`` as ``talkface_llm_route_total``."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def count(self, route: str) -> None:
        """Count one answer given by ``route``."""
        self._counts[route] += 1

    def snapshot(self) -> dict[str, int]:
        """The counts now, every route present (0 when none yet)."""
        return {route: self._counts[route] for route in ("faq", "small", "large",
                                                          "large_fallback")}


class _Relay:
    """Hands the large model's deltas to the real stream, holding back a failure that
    comes before the first delta so that the small model can answer instead."""

    def __init__(self, stream: TokenStream) -> None:
        self._stream = stream
        self.started = False
        self.held_error: BackendError | None = None

    @property
    def cancelled(self) -> bool:
        return self._stream.cancelled

    def cancel(self) -> None:
        self._stream.cancel()

    def put(self, text: str) -> None:
        self.started = True
        self._stream.put(text)

    def close(self, error: BaseException | None = None) -> None:
        if (isinstance(error, BackendError) and error.retryable and not self.started
                and not self._stream.cancelled):
            self.held_error = error
            return
        self._stream.close(error)


class RoutedLLM:
    """The LLM engine of one answer: the tier chosen, with the small model behind the large.

    Read :attr:`route` and :attr:`fallback` once the reply has started (after its first
    text, or at its end): a fallback is only known then.

    Args:
        route: the route chosen ("faq", "small" or "large").
        engine: what answers that route (a recited FAQ answer, or an LLM engine).
        small: gets the small LLM's engine (used for "small", and on a fallback).
        counts: where the answer is counted.
    """

    def __init__(self, route: Route, *, engine: LLMEngine | None,
                 small: Callable[[], Awaitable[LLMEngine]], counts: RouteCounts,
                 reason: str = "") -> None:
        self.route: Route = route
        self.reason = reason
        self.fallback = False
        """True when the large model could not be reached and the small one answered."""
        self._engine = engine
        self._small = small
        self._counts = counts

    async def submit(self, request: GenerationRequest) -> GenerationStats:
        """Generate ``request`` on the chosen tier (the small one if the large fails early)."""
        try:
            if self.route != "large":
                engine = self._engine if self._engine is not None else await self._small()
                return await engine.submit(request)
            return await self._submit_large(request)
        finally:
            self._counts.count("large_fallback" if self.fallback else self.route)

    async def _submit_large(self, request: GenerationRequest) -> GenerationStats:
        assert self._engine is not None
        relay = _Relay(request.stream)
        try:
            stats = await self._engine.submit(
                dataclasses.replace(request, stream=cast(TokenStream, relay)))
        except BackendError as exc:  # refused or failed before the backend took the stream
            if not exc.retryable or request.stream.cancelled:
                raise
            relay.held_error = exc
            stats = GenerationStats(finish_reason="error")
        if relay.held_error is None:
            return stats
        logger.warning("large LLM unavailable, the small LLM answers instead: %s",
                       relay.held_error)
        self.route, self.fallback = "small", True
        return await (await self._small()).submit(request)

    def headers(self) -> dict[str, str]:
        """The HTTP headers that say who answered: ``x-talkface-route`` (faq, small,
        large), and ``x-talkface-route-fallback: large`` when the small model stood in."""
        from talkface.faq.service import ROUTE_HEADER

        headers: dict[str, str] = {ROUTE_HEADER: self.route}
        if self.fallback:
            headers[FALLBACK_HEADER] = "large"
        return headers

    def as_engine(self) -> LLMEngine:
        """This, typed as the engine that reply code takes (it only calls ``submit``)."""
        return cast(LLMEngine, self)


_POLICIES: dict[int, tuple[RoutingSettings, RoutingPolicy]] = {}


def _policy(settings: RoutingSettings) -> RoutingPolicy:
    """The policy of ``settings``, compiled once per settings object."""
    cached = _POLICIES.get(id(settings))
    if cached is None or cached[0] is not settings:
        cached = _POLICIES[id(settings)] = (settings, RoutingPolicy(settings))
    return cached[1]


async def route_answer(runtime: Runtime, question: str, faq_answer: str | None) -> RoutedLLM:
    """The LLM engine that answers ``question``: the FAQ's answer when it has one, else
    the tier :class:`RoutingPolicy` picks (the engines load on first use)."""
    from talkface.faq.service import RecitedAnswer

    counts: RouteCounts = runtime.route_counts
    if faq_answer is not None:
        return RoutedLLM("faq", engine=RecitedAnswer(faq_answer).as_engine(),
                         small=runtime.llm_engine, counts=counts, reason="faq")
    decision = _policy(runtime.settings.routing).decide(question)
    if decision.tier == "large" and runtime.ladder.small_llm_only:
        decision = RouteDecision(tier="small", reason="under pressure: small LLM only")
    logger.debug("LLM route %s (%s)", decision.tier, decision.reason)  # rules, no user text
    engine: Any = await runtime.large_llm_engine() if decision.tier == "large" else None
    return RoutedLLM(decision.tier, engine=engine, small=runtime.llm_engine, counts=counts,
                     reason=decision.reason)
