"""The silero model behind the endpointer, on real (synthesised) speech and on noise."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from talkface.audio import float32_to_pcm16
from talkface.messages import NS_PER_S, AudioChunk
from talkface.registry import load_backend_class
from talkface.vad.base import VADSettings
from talkface.vad.endpoint import Endpointer, SpeechEnd, SpeechStart, VADEvent
from talkface.vad.registry import VAD_BACKENDS

pytestmark = pytest.mark.integration

RATE = 16_000
WINDOW_NS = 32_000_000
Speak = Callable[[str, str], np.ndarray]


def run(endpointer: Endpointer, audio: np.ndarray) -> list[tuple[int, VADEvent]]:
    """Feed 20 ms chunks; (samples fed so far, event) pairs."""
    out: list[tuple[int, VADEvent]] = []
    for begin in range(0, len(audio), 320):
        piece = audio[begin : begin + 320]
        chunk = AudioChunk(
            pcm=float32_to_pcm16(piece), sample_rate_hz=RATE, pts_ns=begin * NS_PER_S // RATE
        )
        out += [(begin + len(piece), e) for e in endpointer.push(chunk)]
    return out + [(len(audio), e) for e in endpointer.flush()]


@pytest.mark.parametrize(
    ("voice", "text", "lead_s"),
    [
        ("piper", "Hello, can you hear me?", 1.0),
        ("piper", "What time is it?", 0.77),
        ("espeak", "Can you tell me the weather forecast for tomorrow?", 1.31),
        ("espeak", "How are you today?", 0.5),
    ],
)
def test_speech_is_found_at_its_onset_and_ended_after_the_hangover(
    silero, speak: Speak, voice: str, text: str, lead_s: float
) -> None:
    speech = speak(voice, text)
    lead = round(lead_s * RATE)
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(2 * RATE, np.float32)])
    events = run(Endpointer(silero), audio)
    starts = [(fed, e) for fed, e in events if isinstance(e, SpeechStart)]
    ends = [(fed, e) for fed, e in events if isinstance(e, SpeechEnd)]
    assert len(starts) == 1 and len(ends) == 1, [type(e).__name__ for _, e in events]

    fed_start, start = starts[0]
    onset_ns = lead * NS_PER_S // RATE
    assert abs(start.pts_ns - onset_ns) <= WINDOW_NS
    assert (fed_start - lead) / RATE <= 0.2  # decided while the first word is spoken

    fed_end, end = ends[0]
    speech_end = lead + len(speech)
    hangover = VADSettings().min_silence_ms / 1000
    assert fed_end / RATE >= speech_end / RATE + hangover - 2 * WINDOW_NS / NS_PER_S
    utterance = end.utterance
    assert utterance.start_pts_ns <= onset_ns
    assert utterance.end_pts_ns >= speech_end * NS_PER_S // RATE - WINDOW_NS
    assert utterance.duration_s == pytest.approx(len(speech) / RATE, abs=0.6)


def test_silence_gives_no_utterance(silero) -> None:
    endpointer = Endpointer(silero)
    assert run(endpointer, np.zeros(5 * RATE, np.float32)) == []


@pytest.mark.parametrize("level", [0.05, 0.3])
def test_white_noise_gives_no_utterance(silero, level: float) -> None:
    noise = np.random.default_rng(7).normal(0.0, level, 5 * RATE).clip(-1, 1).astype(np.float32)
    events = [e for _, e in run(Endpointer(silero), noise)]
    assert not [e for e in events if isinstance(e, SpeechEnd)]


def test_sessions_sharing_one_model_do_not_disturb_each_other(silero, speak: Speak) -> None:
    speech = np.concatenate([np.zeros(RATE, np.float32), speak("piper", "Hello there.")])
    alone = silero.new_stream().speech_probabilities(speech[: 40 * 512].reshape(40, 512))
    a, b = silero.new_stream(), silero.new_stream()
    noise = np.random.default_rng(1).normal(0, 0.2, (40, 512)).astype(np.float32)
    interleaved = []
    for i in range(40):
        interleaved.append(a.speech_probabilities(speech[i * 512 : (i + 1) * 512][None])[0])
        b.speech_probabilities(noise[i][None])
    np.testing.assert_allclose(interleaved, alone, atol=1e-5)
    assert max(alone) > 0.9


def test_registry_names_silero() -> None:
    cls = load_backend_class("vad", VAD_BACKENDS, "silero")
    assert cls.__name__ == "SileroVAD"
