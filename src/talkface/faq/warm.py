"""Speak every FAQ answer once, ahead of time, so a FAQ hit starts talking at once.

A FAQ hit costs no LLM time, but its first piece still waits for the TTS (~0.2-0.3 s on
a small CPU box), which is most of what is left after the end-of-speech hangover. Each
answer is cut into pieces by the same reply path a live turn uses (so the first piece is
the same short one) and each piece goes through the same TTS cache lookup, in the
default voice of its language at normal speed; a hit then reads its speech from disk.
A session with another voice or speed synthesises as before.
"""

from __future__ import annotations

import asyncio
import logging

from talkface.cache import open_caches
from talkface.cache.tts import TTS_HIT_MARK
from talkface.clock import MonotonicClock
from talkface.engines import Engine
from talkface.errors import TalkfaceError
from talkface.faq.service import RecitedAnswer, load_faq
from talkface.messages import Sentence, SpeechAudio
from talkface.pipeline.reply import ReplyText, reply_sentences
from talkface.pipeline.speak import synthesize_sentence
from talkface.runtime import Runtime
from talkface.text.language import detect_language
from talkface.text.policy import choose_voice
from talkface.trace import TurnTrace
from talkface.tts.base import SynthesisRequest, VoiceInfo

logger = logging.getLogger(__name__)


async def speak_faq_answers(runtime: Runtime) -> int:
    """Put the speech of every piece of every FAQ answer in the TTS cache.

    Returns how many pieces were synthesised now (0 when there is no FAQ, the cache is
    off, or every piece was cached before, as on a restart). An answer the default voice
    cannot speak is logged and skipped: a hit on it fails the same way at run time.
    """
    matcher = await load_faq(runtime.settings.faq)
    caches = await asyncio.to_thread(open_caches, runtime.settings.cache)
    if matcher is None or caches.tts is None:
        return 0

    async def voice_for(sentence: Sentence
                        ) -> tuple[VoiceInfo, Engine[SynthesisRequest, SpeechAudio]]:
        language = sentence.language or detect_language(sentence.text)
        voice = choose_voice(runtime.resolve_voice, None, language)
        return voice, await runtime.tts_engine(voice)

    synthesised = 0
    clock = MonotonicClock()
    for number, entry in enumerate(matcher.entries, start=1):
        pieces = reply_sentences(RecitedAnswer(entry.answer).as_engine(), (), max_tokens=1,
                                 temperature=0.0, language=None, turn_id=0,
                                 trace=TurnTrace.start(clock), reply=ReplyText())
        try:
            async for sentence in pieces:
                trace = TurnTrace.start(clock)  # one per piece: did this one hit?
                await synthesize_sentence(sentence, voice_for, speed=1.0,
                                          tts_cache=caches.tts, trace=trace)
                synthesised += TTS_HIT_MARK not in trace.marks_ns
        except TalkfaceError as exc:
            logger.warning("FAQ answer %d is not spoken ahead: %s", number, exc)
    logger.info("event=faq_answers_spoken entries=%d pieces_synthesised=%d",
                len(matcher.entries), synthesised)
    return synthesised
