"""A session: one conversation's state. Cheap: no model inside, many per process.

A session owns its timeline (frames and speech are laid on it turn after turn), its
voice, portrait, language and seed, and borrows the runtime's shared engines for every
turn.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from talkface.cache import open_caches, speak_clip_turn
from talkface.clock import Clock, MonotonicClock
from talkface.engines import Engine
from talkface.messages import EndOfTurn, Message, Sentence
from talkface.pipeline.speak import SpeakContext, SpokenTurn
from talkface.runtime import Runtime
from talkface.text.policy import SpeechText, check_language, choose_voice, speech_text
from talkface.trace import TurnTrace
from talkface.tts.base import VoiceInfo

_OUTPUT_QUEUE_SIZE = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOptions:
    """How a session speaks and looks.

    Attributes:
        voice: voice name (None: the default voice of each text's language).
        language: "en" or "zh" (None: detected from each text).
        avatar_id: a prepared avatar (None: the default portrait).
        speed: speaking rate, 1.0 natural.
        seed: seeds blinks and head motion (None: random).
    """

    voice: str | None = None
    language: str | None = None
    avatar_id: str | None = None
    speed: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check_language(self.language)


@dataclass(frozen=True, slots=True)
class _Failure:
    error: BaseException


class Session:
    """One conversation.

    Args:
        runtime: the host whose engines this session borrows.
        options: voice, language, avatar...
        clock: time source for latency traces.
    """

    def __init__(
        self, runtime: Runtime, options: SessionOptions | None = None, *, clock: Clock | None = None
    ) -> None:
        self.runtime = runtime
        self.options = options or SessionOptions()
        self.clock = clock or MonotonicClock()
        self.seed = self.options.seed if self.options.seed is not None else random.getrandbits(31)
        self.next_frame_index = 0
        self.turn_id = 0
        self.last_trace: TurnTrace | None = None

    def check_text(self, text: str) -> str:
        """The text stripped, or a clear error when it cannot be spoken (its emotion tag
        is kept: :meth:`say` shows it)."""
        self._speech_text(text)
        return text.strip()

    def _speech_text(self, text: str) -> SpeechText:
        return speech_text(text, language=self.options.language,
                           limit_chars=self.runtime.settings.limits.max_text_chars)

    async def say(self, text: str) -> AsyncIterator[Message]:
        """Speak ``text``: yields :class:`SpeechAudio` and :class:`VideoFrame` messages as
        they are made, then one :class:`EndOfTurn`.

        A leading emotion tag ("[happy] Hello!") sets the expression and is not spoken.

        Raises:
            BadInput: the text is empty or too long, or the voice cannot speak it.
            BackendError: a model failed.
        """
        checked = self._speech_text(text)
        language = checked.language
        voice = choose_voice(self.runtime.resolve_voice, self.options.voice, language)
        tts = await self.runtime.tts_engine(voice)

        async def voice_for(sentence: Sentence) -> tuple[VoiceInfo, Engine[Any, Any]]:
            return voice, tts

        trace = TurnTrace.start(self.clock)
        self.last_trace = trace  # filled in as the turn goes
        self.turn_id += 1
        turn_id = self.turn_id
        caches = open_caches(self.runtime.settings.cache)
        ctx = SpeakContext(
            voice_for=voice_for,
            animator=await self.runtime.animator_engine(),
            avatar_id=self.options.avatar_id or await self.runtime.default_avatar(),
            fps=self.runtime.settings.animator.fps,
            seed=self.seed,
            speed=self.options.speed,
            tts_cache=caches.tts,
        )
        pieces = checked.sentences()
        clip = None if caches.clips is None else caches.clips.plan(
            pieces, language=language, voice=voice, speed=ctx.speed, avatar_id=ctx.avatar_id,
            animator=self.runtime.settings.animator, session_seed=self.options.seed)

        async def sentences() -> AsyncIterator[Sentence]:
            for index, (piece, emotion) in enumerate(pieces):
                yield Sentence(text=piece, index=index, language=language, emotion=emotion,
                               turn_id=turn_id)

        queue: asyncio.Queue[Message | _Failure] = asyncio.Queue(_OUTPUT_QUEUE_SIZE)

        async def produce() -> None:
            try:
                # Plays the phrase from the clip cache when it can, else speak_turn.
                spoken: SpokenTurn = await speak_clip_turn(
                    clip,
                    sentences(),
                    ctx,
                    turn_id=turn_id,
                    first_frame_index=self.next_frame_index,
                    emit=queue.put,
                    trace=trace,
                )
            except Exception as exc:
                await queue.put(_Failure(exc))
                return
            self.next_frame_index = spoken.end_frame_index
            await queue.put(EndOfTurn(turn_id=turn_id, spoken_text=spoken.spoken_text))

        producer = asyncio.create_task(produce(), name=f"say-turn-{turn_id}")
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Failure):
                    raise item.error
                yield item
                if isinstance(item, EndOfTurn):
                    break
        finally:
            producer.cancel()
            await asyncio.wait([producer])
