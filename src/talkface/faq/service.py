"""The FAQ cache of a process: one embedding model, each FAQ file embedded once.

Every entry point (a live turn, ``/v1/chat/completions``) asks :func:`answer_from_faq`;
on a hit it speaks or returns the FAQ's answer through :class:`RecitedAnswer`, which
stands in for the LLM engine, so the answer takes the same path as a generated one
(sentences, stop sequences, usage) with no LLM call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from talkface.engines import Engine, ModelThread
from talkface.errors import BackendError
from talkface.faq.base import Embedder, FAQMatch, FAQSettings, load_faq_file
from talkface.faq.matcher import FAQMatcher
from talkface.faq.registry import FAQ_EMBEDDERS
from talkface.llm.base import ChatMessage, GenerationRequest, GenerationStats
from talkface.registry import load_backend_class

logger = logging.getLogger(__name__)

Route = Literal["faq", "small"]
"""Who answered a turn: the FAQ cache, or the small (embedded) LLM."""

ROUTE_HEADER = "x-talkface-route"

_thread: ModelThread | None = None
# Touched only in the model thread (which serialises loads): one model per backend, one
# embedded FAQ per (file version, limits).
_embedders: dict[str, Embedder] = {}
_matchers: dict[tuple[object, ...], FAQMatcher] = {}


def _model_thread() -> ModelThread:
    global _thread
    if _thread is None:
        _thread = ModelThread("faq")
    return _thread


def _matcher_key(settings: FAQSettings) -> tuple[object, ...]:
    assert settings.file is not None
    path = Path(settings.file).expanduser().resolve()
    try:
        stat = path.stat()
        version: tuple[int, int] = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        version = (0, 0)  # load_faq_file reports the missing file
    return (str(path), version, settings.backend, settings.min_similarity, settings.min_margin)


def _load(settings: FAQSettings, key: tuple[object, ...]) -> FAQMatcher:
    if key in _matchers:
        return _matchers[key]
    assert settings.file is not None
    entries = load_faq_file(settings.file)
    embedder = _embedders.get(settings.backend)
    if embedder is None:
        cls: type[Embedder] = load_backend_class("FAQ embedder", FAQ_EMBEDDERS, settings.backend)
        embedder = _embedders[settings.backend] = cls.load(settings)
    matcher = FAQMatcher(entries, embedder, min_similarity=settings.min_similarity,
                         min_margin=settings.min_margin)
    _matchers[key] = matcher
    logger.info("FAQ %s: %d entries, %d phrasings embedded", settings.file, len(entries),
                sum(len(e.questions) for e in entries))
    return matcher


def load_faq_sync(settings: FAQSettings) -> FAQMatcher | None:
    """The FAQ of ``settings`` (None when no file is set), loaded once; blocking."""
    if settings.file is None:
        return None
    return _model_thread().call(_load, settings, _matcher_key(settings))


async def load_faq(settings: FAQSettings) -> FAQMatcher | None:
    """The FAQ of ``settings`` (None when no file is set), loaded and embedded once.

    Raises:
        ConfigError: the file is missing or malformed.
        BackendUnavailable: the embedder's package is not installed.
    """
    if settings.file is None:
        return None
    key = _matcher_key(settings)
    if key in _matchers:
        return _matchers[key]
    return await _model_thread().run(_load, settings, key)


async def answer_from_faq(settings: FAQSettings, question: str) -> FAQMatch | None:
    """The FAQ entry that answers ``question``, or None: no FAQ, no match, or a matcher
    too slow or broken this time (the LLM answers instead; a bad file still raises)."""
    matcher = await load_faq(settings)
    if matcher is None or not question.strip():
        return None
    try:
        return await _model_thread().run_limited("the FAQ embedder", settings.timeout_s,
                                                 matcher.match, question)
    except BackendError as exc:
        logger.warning("FAQ match skipped, the LLM answers: %s", exc)
        return None


@dataclass(frozen=True, slots=True)
class RecitedAnswer:
    """Stands in for the LLM engine: every request gets ``answer``, at once, 0 tokens."""

    answer: str

    async def submit(self, request: GenerationRequest) -> GenerationStats:
        """Put ``answer`` on the request's stream (unless cancelled), close it; 0 tokens."""
        if not request.stream.cancelled:
            request.stream.put(self.answer)
        request.stream.close()
        return GenerationStats(prompt_tokens=0, completion_tokens=0)

    def as_engine(self) -> Engine[GenerationRequest, GenerationStats]:
        """This, typed as the engine that reply code takes (it only calls ``submit``)."""
        return cast(Engine[GenerationRequest, GenerationStats], self)


def last_user_text(messages: tuple[ChatMessage, ...]) -> str:
    """The question a chat asks now: its last message when the user wrote it, else ""."""
    return messages[-1].content if messages and messages[-1].role == "user" else ""
