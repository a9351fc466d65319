"""What a turn says: the FAQ or an LLM answers, the reply is spoken, memory keeps it.

:class:`Answering` belongs to one conversation and holds its memory (the history the
LLM sees). It knows nothing of turn-taking: it is given a confirmed turn's text and an
``emit`` for the messages it makes, and returns when the answer is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from talkface.cache import open_caches
from talkface.cache.tts import TTSCache
from talkface.conversation._turns import ActiveTurn, TurnState
from talkface.engines import Engine
from talkface.faq.service import answer_from_faq
from talkface.llm.memory import ConversationMemory
from talkface.llm.routing import route_answer
from talkface.messages import Message, Sentence, SpeechAudio
from talkface.output.timeline import Timeline
from talkface.pipeline.reply import ReplyText, reply_sentences, with_language_hint
from talkface.pipeline.speak import SpeakContext, speak_turn
from talkface.runtime import Runtime
from talkface.text.language import detect_language
from talkface.text.policy import choose_voice
from talkface.tts.base import SynthesisRequest, VoiceInfo

if TYPE_CHECKING:
    from talkface.conversation._conversation import ConversationOptions

Emit = Callable[[Message], Awaitable[None]]


class Answering:
    """Answers for one conversation, and the memory of what was said.

    Args:
        runtime: the shared engines.
        options: the conversation's voice, language, avatar, persona...
        timeline: where the answer's frames go.
        seed: seeds the avatar's blinks and head motion.
    """

    def __init__(self, runtime: Runtime, options: ConversationOptions, timeline: Timeline,
                 seed: int) -> None:
        self._runtime = runtime
        self._options = options
        self._timeline = timeline
        self._seed = seed
        self._memory: ConversationMemory | None = None
        self._tts_cache: TTSCache | None = None

    @property
    def memory(self) -> ConversationMemory | None:
        """The history the LLM sees (None before :meth:`open`)."""
        return self._memory

    async def open(self) -> None:
        """Make the memory (it counts tokens with the LLM's vocabulary) and warm the
        LLM's cache with the persona."""
        llm = await self._runtime.llm_backend()
        settings = self._runtime.settings.llm
        # It tokenises the persona: CPU work, off the event loop.
        self._memory = await asyncio.to_thread(
            ConversationMemory,
            self._options.persona or settings.persona,
            budget_tokens=settings.context_tokens,
            reply_tokens=settings.max_reply_tokens,
            count_tokens=llm.count_tokens,
        )
        await self._runtime.prime_llm(self._memory.persona)
        # Sentences said before (greetings, FAQ answers) are not synthesised again.
        caches = await asyncio.to_thread(open_caches, self._runtime.settings.cache)
        self._tts_cache = caches.tts

    async def answer(self, turn: ActiveTurn, text: str, emit: Emit) -> None:
        """Answer ``text``, speaking through ``emit`` (which holds the output of a turn
        still speculative); :meth:`remember` it once the turn is confirmed."""
        memory = self._memory
        assert memory is not None, "Answering.open() first"
        record = turn.record
        runtime = self._runtime
        settings = runtime.settings
        # A FAQ hit is recited along the reply path below, with no LLM call.
        faq = await answer_from_faq(settings.faq, text)
        routed = await route_answer(runtime, text, faq.answer if faq else None)
        record.route = routed.route
        # Tokenising the history is CPU work: off the event loop.
        prompt = await asyncio.to_thread(memory.prompt, text)
        messages = with_language_hint(
            prompt, self._options.language or record.language or detect_language(text))
        reply = ReplyText()

        async def on_message(message: Message) -> None:
            if isinstance(message, SpeechAudio):
                turn.speech.append(message)
            await emit(message)

        sentences = reply_sentences(
            routed.as_engine(), messages,
            # Under pressure the degradation ladder may cap answers shorter.
            max_tokens=runtime.ladder.reply_tokens(settings.llm.max_reply_tokens),
            temperature=settings.llm.temperature,
            # None: each sentence picks its own voice by its language.
            language=self._options.language,
            turn_id=record.turn_id,
            trace=record.trace,
            reply=reply,
            on_delta=on_message,
        )
        ctx = SpeakContext(
            voice_for=self._voice_for,
            animator=await runtime.animator_engine(),
            avatar_id=self._options.avatar_id or await runtime.default_avatar(),
            fps=self._timeline.fps,
            seed=self._seed,
            speed=self._options.speed,
            tts_cache=self._tts_cache,
        )
        try:
            spoken = await speak_turn(
                sentences, ctx,
                turn_id=record.turn_id,
                first_frame_index=self._timeline.first_frame_index(),
                emit=on_message,
                trace=record.trace,
            )
        finally:
            record.reply = reply.text.strip()
            record.route, record.fallback = routed.route, routed.fallback
            if reply.stats is not None:
                record.prompt_tokens = reply.stats.prompt_tokens
                record.evaluated_prompt_tokens = reply.stats.evaluated_prompt_tokens
        self._timeline.answer_made(spoken.end_frame_index)
        # What was said is the sentences as spoken (emotion tags off); the memory keeps
        # the reply as generated, so the next turn's prompt starts with the tokens the
        # LLM's cache holds.
        record.spoken = spoken.spoken_text

    def remember(self, turn: ActiveTurn, text: str) -> None:
        """The confirmed turn's exchange goes into the memory; the turn is answered."""
        assert self._memory is not None, "Answering.open() first"
        self._memory.record(text, turn.record.reply)
        turn.answered()

    def remember_cut(self, turn: ActiveTurn) -> None:
        """``turn`` was cut: the memory keeps only what the listener heard of it."""
        record = turn.record
        if self._memory is None or not record.transcript:
            return
        if turn.state is TurnState.ANSWERED:
            self._memory.amend_last(record.spoken, interrupted=True)
        else:
            self._memory.record(record.transcript, record.spoken, interrupted=True)

    async def _voice_for(
        self, sentence: Sentence
    ) -> tuple[VoiceInfo, Engine[SynthesisRequest, SpeechAudio]]:
        language = self._options.language or sentence.language or detect_language(sentence.text)
        # The same check as `talkface say`: a voice never reads a language it cannot speak.
        voice = choose_voice(self._runtime.resolve_voice, self._options.voice, language)
        return voice, await self._runtime.tts_engine(voice)
