"""The piper voice, loaded from its PyPI package."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from talkface.audio import pcm16_to_float32
from talkface.process_memory import release_freed_memory
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


def _anonymous_rss_mb() -> float:
    """This process's resident memory outside files, once malloc has handed back what
    it could (what a server's RSS is, between its periodic trims)."""
    release_freed_memory()
    total_kb = 0
    anonymous = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
            anonymous = len(line.split()) == 5  # no path: not a file
        elif anonymous and line.startswith("Rss:"):
            total_kb += int(line.split()[1])
    return total_kb / 1024


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_a_loaded_voice_takes_no_more_memory_as_sentences_get_longer() -> None:
    settings = TTSSettings()
    tts = PiperTTS.load(settings, resolve_voice("joe", "en", settings))
    words = "please tell me the number of your order and I will check it for you".split()
    before_mb = _anonymous_rss_mb()
    for length_chars in range(100, 161, 10):  # what replies are cut into, each a new length
        text = " ".join(itertools.islice(itertools.cycle(words), 40))[:length_chars]
        speak(tts, text.rsplit(" ", 1)[0] + ".")
    # Without the load-time sentence onnxruntime's arena grew ~130 MB at the first long
    # sentence, and a memory pattern per length added more.
    grown_mb = _anonymous_rss_mb() - before_mb
    assert grown_mb < 60, f"{grown_mb:.0f} MB"
