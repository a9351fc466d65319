"""Replying: the LLM's token stream cut into sentences as they complete.

Each delta is passed on (the client shows the reply as it is written) and fed to a
:class:`~talkface.text.sentences.SentenceSplitter`; each complete sentence gets its
language and expression and goes to the speech stage at once, while the LLM keeps
writing. Whatever happens to the reader (barge-in, an error downstream), the generation
is cancelled and its engine slot freed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from talkface.engines import Engine
from talkface.llm.base import ChatMessage, GenerationRequest, GenerationStats, TokenStream
from talkface.llm.emotion import sentence_emotion
from talkface.messages import Sentence, TextDelta
from talkface.text.language import detect_language
from talkface.text.sentences import SentenceSplitter
from talkface.trace import TurnTrace

LANGUAGE_HINTS: dict[str, str] = {"zh": "请用中文回答。"}
"""A line added to the system prompt, asking for the answer in the user's language, for
the languages that need one.

The persona asks for answers "in the language the user speaks", but Qwen2.5-Coder-0.5B
answered 14 of 45 single Chinese questions in English (or with a bare emotion tag) on
that alone; with this line, 0 of 120 (single questions and ten-turn conversations). In
the user's message instead, the model sometimes read it back aloud. English, the
persona's own language, needs none: the line is only added to turns in these languages.
"""


def with_language_hint(
    messages: tuple[ChatMessage, ...], language: str | None
) -> tuple[ChatMessage, ...]:
    """``messages`` with the hint for ``language`` (if any) at the end of the system prompt.

    It goes into the system prompt, not next to the new message, so the prompt's prefix
    stays the same from turn to turn while the user keeps to one language (the LLM's
    cache of it stays valid), and into the one system message that strict chat
    templates allow.
    """
    hint = LANGUAGE_HINTS.get(language or "")
    if hint is None or not messages or messages[0].role != "system":
        return messages
    system = ChatMessage(role="system", content=f"{messages[0].content}\n{hint}")
    return (system, *messages[1:])


@dataclass(slots=True)
class ReplyText:
    """The reply as written so far, and how its generation went."""

    text: str = ""
    stats: GenerationStats | None = None
    sentences: list[Sentence] = field(default_factory=list)


async def reply_sentences(
    llm: Engine[GenerationRequest, GenerationStats],
    messages: tuple[ChatMessage, ...],
    *,
    max_tokens: int,
    temperature: float,
    language: str | None,
    turn_id: int,
    trace: TurnTrace,
    reply: ReplyText,
    on_delta: Callable[[TextDelta], Awaitable[None]] | None = None,
) -> AsyncIterator[Sentence]:
    """Generate a reply to ``messages`` and yield it sentence by sentence.

    Args:
        llm: the shared LLM engine.
        messages: the prompt.
        max_tokens, temperature: generation limits.
        language: the conversation's language, or None to detect it per sentence.
        turn_id: copied to every message.
        trace: gets ``llm_first_token``.
        reply: filled in with the text, the sentences and the generation's stats.
        on_delta: told about every text delta.
    """
    stream = TokenStream()
    request = GenerationRequest(
        messages=messages, stream=stream, max_tokens=max_tokens, temperature=temperature
    )
    generation = asyncio.ensure_future(llm.submit(request))
    splitter = SentenceSplitter(language)
    index = 0

    def sentence(piece: str) -> Sentence | None:
        nonlocal index
        emotion, text = sentence_emotion(piece)
        if not text.strip():
            return None
        made = Sentence(
            text=text.strip(),
            index=index,
            language=language or detect_language(text),
            emotion=emotion,
            turn_id=turn_id,
        )
        index += 1
        reply.sentences.append(made)
        return made

    try:
        async for delta in _until_done(stream, generation):
            trace.mark("llm_first_token")
            reply.text += delta
            if on_delta is not None:
                await on_delta(TextDelta(text=delta, turn_id=turn_id))
            for piece in splitter.feed(delta):
                if (made := sentence(piece)) is not None:
                    yield made
        for piece in splitter.flush():
            if (made := sentence(piece)) is not None:
                yield made
        reply.stats = await generation
    finally:
        stream.cancel()
        if not generation.done():
            generation.cancel()
        await asyncio.wait([generation])


async def _until_done(
    stream: TokenStream, generation: asyncio.Future[GenerationStats]
) -> AsyncIterator[str]:
    """The stream's deltas; if the engine fails before the backend starts, its error."""
    reader = stream.__aiter__()
    next_delta: asyncio.Future[str] | None = None
    try:
        while True:
            next_delta = asyncio.ensure_future(anext(reader))
            done, _ = await asyncio.wait({next_delta, generation},
                                         return_when=asyncio.FIRST_COMPLETED)
            if next_delta not in done and generation.exception() is not None:
                # The engine refused (queue full) or failed before generating: its
                # stream may never close, so stop reading it.
                raise generation.exception()  # type: ignore[misc]
            try:
                delta = await next_delta
            except StopAsyncIteration:
                return
            next_delta = None
            yield delta
    finally:
        # A reader that stops early (barge-in) leaves no read pending behind it.
        if next_delta is not None and not next_delta.done():
            next_delta.cancel()
            await asyncio.wait([next_delta])
