"""The TTS cache: one sentence's speech by (normalised text, voice, speed, emotion, model).

It sits in front of the TTS engine wherever the session runs (in the gateway under the
Ray host), so a hit costs one file read and no engine call.
"""

from __future__ import annotations

import asyncio

from talkface.cache._keys import cache_key
from talkface.cache.store import DiskCache, Entry
from talkface.engines import Engine
from talkface.messages import PhonemeSpan, SpeechAudio
from talkface.trace import TurnTrace
from talkface.tts.base import SynthesisRequest


def tts_key(request: SynthesisRequest) -> str:
    """The key of ``request``'s speech: text (already normalised), voice, speed, emotion.

    The voice's backend and model id stand for the TTS model version: a new model file is
    a new ``model_id``, a new talkface release a new key (see :mod:`talkface.cache._keys`).
    """
    voice = request.voice
    return cache_key("tts", {
        "text": request.text, "voice": voice.name, "backend": voice.backend,
        "model_id": voice.model_id, "speed": round(request.speed, 4),
        # No backend changes its sound with the emotion today; one that does must not
        # be served another emotion's speech.
        "emotion": str(request.emotion),
    })


def speech_entry(speech: SpeechAudio) -> Entry:
    """``speech`` as a cache entry: its PCM, with its rate and phonemes in the header."""
    phonemes = [[p.phoneme, p.start_ns, p.end_ns] for p in speech.phonemes]
    return Entry({"sample_rate_hz": speech.sample_rate_hz, "phonemes": phonemes}, speech.pcm)


def speech_from_entry(entry: Entry, request: SynthesisRequest) -> SpeechAudio | None:
    """The speech in ``entry``, labelled for ``request``, or None when it is unusable."""
    try:
        return SpeechAudio(
            pcm=entry.body,
            sample_rate_hz=int(entry.header["sample_rate_hz"]),
            phonemes=tuple(PhonemeSpan(phoneme=p, start_ns=int(s), end_ns=int(e))
                           for p, s, e in entry.header["phonemes"]),
            sentence_index=request.sentence_index,
            text=request.text,
            emotion=request.emotion,
        )
    except (KeyError, TypeError, ValueError):
        return None


TTS_HIT_MARK = "tts_cache_hit"
"""The trace mark of a turn whose speech (its first such sentence) came from the cache."""


class TTSCache:
    """Speech per sentence on disk, shared by every process that uses the folder."""

    def __init__(self, store: DiskCache) -> None:
        self.store = store

    def lookup(self, request: SynthesisRequest) -> SpeechAudio | None:
        """The cached speech for ``request`` (blocking file read), or None."""
        entry = self.store.get(tts_key(request))
        return None if entry is None else speech_from_entry(entry, request)

    def store_speech(self, request: SynthesisRequest, speech: SpeechAudio) -> None:
        """Keep ``speech`` for ``request`` (blocking file write)."""
        self.store.put(tts_key(request), speech_entry(speech))

    async def synthesize(self, engine: Engine[SynthesisRequest, SpeechAudio],
                         request: SynthesisRequest,
                         trace: TurnTrace | None = None) -> SpeechAudio:
        """``request``'s speech from the cache, else from ``engine`` (and then kept); a
        hit is marked :data:`TTS_HIT_MARK` in ``trace``."""
        cached = await asyncio.to_thread(self.lookup, request)
        if cached is not None:
            if trace is not None:
                trace.mark(TTS_HIT_MARK)
            return cached
        speech = await engine.submit(request)
        await asyncio.to_thread(self.store_speech, request, speech)
        return speech
