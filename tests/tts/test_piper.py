"""The piper voice, loaded from its PyPI package."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from talkface.audio import pcm16_to_float32
from talkface.tts.base import SynthesisRequest, TTSSettings
from talkface.tts.piper import PiperTTS
from talkface.tts.voices import resolve_voice

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def joe() -> PiperTTS:
    settings = TTSSettings()
    return PiperTTS.load(settings, resolve_voice("joe", "en", settings))


def speak(tts: PiperTTS, text: str, speed: float = 1.0):
    return tts.synthesize(SynthesisRequest(text=text, voice=tts.voice, speed=speed))


def test_joe_speaks_a_sentence_with_phoneme_timings(joe: PiperTTS) -> None:
    speech = speak(joe, "The quick brown fox jumps over the lazy dog.")
    samples = pcm16_to_float32(speech.pcm)
    assert speech.sample_rate_hz == 22_050
    assert 1.5 < speech.duration_ns / 1e9 < 4.5
    assert np.sqrt(np.mean(samples**2)) > 0.05  # audible speech, not silence
    spans = speech.phonemes
    assert len(spans) > 20
    assert all(a.end_ns <= b.start_ns + 1 for a, b in itertools.pairwise(spans))
    assert spans[-1].end_ns <= speech.duration_ns + 1_000_000
    assert {"f", "b", "d"} <= {p.phoneme for p in spans}


def test_speed_changes_the_duration(joe: PiperTTS) -> None:
    normal = speak(joe, "Speaking at different speeds.")
    fast = speak(joe, "Speaking at different speeds.", speed=1.5)
    assert fast.duration_ns < 0.8 * normal.duration_ns
