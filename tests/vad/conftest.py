"""VAD test fixtures: the silero model and real speech from the project's own TTS."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from talkface.audio import pcm16_to_float32, resample
from talkface.tts.base import SynthesisRequest, TTSBackend, TTSSettings

RATE = 16_000
Speak = Callable[[str, str], np.ndarray]


@pytest.fixture(scope="session")
def silero():  # type: ignore[no-untyped-def]
    from talkface.vad.base import VADSettings
    from talkface.vad.silero import SileroVAD

    return SileroVAD.load(VADSettings())


@pytest.fixture(scope="session")
def speak() -> Speak:
    """``speak(voice, text)``: 16 kHz float32 speech, leading/trailing silence trimmed.

    ``voice`` is "piper" (en_US-joe) or "espeak" (espeak-ng English).
    """
    from talkface.tts.espeak import EspeakTTS, voice_for_language
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    voices: dict[str, TTSBackend] = {
        "piper": PiperTTS.load(settings, resolve_voice("joe", "en", settings)),
        "espeak": EspeakTTS.load(settings, voice_for_language("en")),
    }

    def _speak(voice: str, text: str) -> np.ndarray:
        tts = voices[voice]
        speech = tts.synthesize(SynthesisRequest(text=text, voice=tts.voice))
        audio = resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz, RATE)
        loud = np.flatnonzero(np.abs(audio) > 0.02)
        return audio[loud[0] : loud[-1] + 1].astype(np.float32)

    return _speak
