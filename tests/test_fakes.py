"""The VAD and ASR fakes of talkface.testing: chosen by the settings like real backends,
and hearing exactly what a test scripts as loud audio and silence.

They stand in for silero and Whisper in unit tests of turn-taking; the real models are
tested in tests/vad/test_vad_silero.py and tests/asr/test_asr_live.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from talkface.asr.base import ASRRequest, ASRSettings
from talkface.asr.registry import ASR_BACKENDS
from talkface.audio import float32_to_pcm16
from talkface.config import load_settings
from talkface.errors import BadInput
from talkface.messages import NS_PER_S, AudioChunk
from talkface.registry import BackendEntry
from talkface.runtime import Runtime
from talkface.testing import FakeASR, FakeVAD
from talkface.vad.base import VADSettings
from talkface.vad.endpoint import Endpointer, SpeechEnd, SpeechPause, SpeechStart, VADEvent
from talkface.vad.registry import VAD_BACKENDS

pytestmark = pytest.mark.unit

RATE = 16_000
MS = 1_000_000  # ns
WINDOW_NS = 32 * MS


def tone(seconds: float) -> np.ndarray:
    """The user speaking: a 220 Hz tone at 0.3 of full scale."""
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def feed(endpointer: Endpointer, audio: np.ndarray, chunk_ms: int = 20) -> list[VADEvent]:
    """Push 16 kHz ``audio`` in microphone-sized chunks, then end the input."""
    step = RATE * chunk_ms // 1000
    events: list[VADEvent] = []
    for begin in range(0, len(audio), step):
        chunk = AudioChunk(pcm=float32_to_pcm16(audio[begin : begin + step]),
                           sample_rate_hz=RATE, pts_ns=begin * NS_PER_S // RATE)
        events += endpointer.push(chunk)
    return events + endpointer.flush()


@pytest.fixture
async def runtime(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    for table, kind in ((VAD_BACKENDS, "FakeVAD"), (ASR_BACKENDS, "FakeASR")):
        monkeypatch.setitem(table, "fake", BackendEntry(f"talkface.testing:{kind}", "test", ""))
    async with Runtime(load_settings(vad={"backend": "fake"}, asr={"backend": "fake"})) as rt:
        yield rt


async def test_the_settings_select_the_fakes_through_the_registries(runtime: Runtime) -> None:
    vad, asr = await runtime.vad(), await runtime.asr_backend()
    assert isinstance(vad, FakeVAD) and isinstance(asr, FakeASR)
    engine = await runtime.asr_engine()
    transcript = await engine.submit(ASRRequest(audio=tone(0.8), turn_id=3))
    assert (transcript.text, transcript.turn_id) == ("what is", 3)


def test_the_vad_hears_speech_where_the_audio_is_loud_and_the_asr_its_words() -> None:
    vad = FakeVAD.load(VADSettings())  # the real thresholds: 400 ms hangover, 100 ms pad
    events = feed(Endpointer(vad), np.concatenate([silence(0.5), tone(1.2), silence(1.0)]))
    start, pause, end = events
    assert isinstance(start, SpeechStart) and isinstance(pause, SpeechPause)
    assert isinstance(end, SpeechEnd) and not end.forced
    assert abs(start.pts_ns - 500 * MS) <= WINDOW_NS
    utterance = end.utterance
    assert abs(utterance.speech_start_pts_ns - 500 * MS) <= WINDOW_NS
    assert abs(utterance.end_pts_ns - (1700 + 100) * MS) <= WINDOW_NS  # speech + pad
    # Everything the user said is in the utterance: 1.2 s of speech is three words.
    asr = FakeASR.load(ASRSettings())
    assert asr.transcribe(ASRRequest(audio=utterance.audio)).text == "what is the"
    assert len(vad.streams) == 1 and vad.streams[0].windows_seen > 0


def test_silence_is_no_turn_and_a_pause_shorter_than_the_hangover_ends_none() -> None:
    vad = FakeVAD.load(VADSettings(min_silence_ms=400))
    assert feed(Endpointer(vad), silence(2.0)) == []
    speech = np.concatenate([tone(0.8), silence(0.2), tone(0.8), silence(1.0)])
    events = feed(Endpointer(vad), speech)
    # Each pause starts a speculative pass; only the second one lasts the hangover.
    assert [type(e) for e in events] == [SpeechStart, SpeechPause, SpeechPause, SpeechEnd]
    end = events[-1]
    assert isinstance(end, SpeechEnd)
    asr = FakeASR.load(ASRSettings())
    assert asr.transcribe(ASRRequest(audio=end.utterance.audio)).text == "what is the weather"


async def test_the_asr_hears_one_word_per_interval_of_speech_in_one_batch() -> None:
    asr = FakeASR.load(ASRSettings())
    requests = [
        ASRRequest(audio=silence(1.0), is_final=False, turn_id=1, end_pts_ns=1 * NS_PER_S),
        ASRRequest(audio=np.concatenate([silence(0.3), tone(0.8), silence(0.3)]),
                   is_final=False, turn_id=1, end_pts_ns=2 * NS_PER_S),
        ASRRequest(audio=tone(10.0), language="zh", turn_id=2, end_pts_ns=3 * NS_PER_S),
    ]
    transcripts = await asr.transcribe_batch(requests)
    assert [t.text for t in transcripts] == ["", "what is", FakeASR.text]
    assert [(t.is_final, t.turn_id, t.end_pts_ns) for t in transcripts] == [
        (r.is_final, r.turn_id, r.end_pts_ns) for r in requests]
    assert [t.language for t in transcripts] == ["en", "en", "zh"]
    assert asr.batches == [requests]  # one model call, like a batching backend
    await asr.aclose()


def test_the_answer_depends_on_the_audio_alone_and_text_scripts_the_next_turn() -> None:
    asr = FakeASR.load(ASRSettings())
    request = ASRRequest(audio=tone(1.6))
    assert asr.transcribe(request).text == asr.transcribe(request).text == "what is the weather"
    asr.text = "and tomorrow"
    assert asr.transcribe(request).text == "and tomorrow"
    with pytest.raises(BadInput, match="cannot transcribe language 'fr'"):
        asr.transcribe(ASRRequest(audio=tone(1.0), language="fr"))


async def test_a_held_asr_answers_once_released() -> None:
    asr = FakeASR.load(ASRSettings())
    asr.release.clear()
    task = asyncio.create_task(asr.transcribe_batch([ASRRequest(audio=tone(0.4))]))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done() and asr.batches == []
    asr.release.set()
    (transcript,) = await task
    assert transcript.text == "what"
    await asr.aclose()
