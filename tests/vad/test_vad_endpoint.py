"""The endpointer's state machine, driven by a VAD whose answer is the audio's loudness.

:class:`~talkface.testing.FakeVAD` says "speech" exactly where the test put a tone, so
every expected time below is known to the sample. The real silero model is tested in
test_vad_silero.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from talkface.audio import float32_to_pcm16, resample
from talkface.messages import NS_PER_S, AudioChunk
from talkface.testing import FakeVAD
from talkface.vad.base import VADSettings
from talkface.vad.endpoint import (
    Endpointer,
    SpeechDiscarded,
    SpeechEnd,
    SpeechPause,
    SpeechStart,
    VADEvent,
)

pytestmark = pytest.mark.unit

RATE = 16_000
WINDOW = 512
MS = 1_000_000  # ns


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def feed(
    endpointer: Endpointer,
    audio: np.ndarray,
    *,
    rate: int = RATE,
    chunk_ms: float = 20.0,
    start_pts_ns: int = 0,
) -> list[tuple[int, VADEvent]]:
    """Push ``audio`` (16 kHz) in chunks; (16 kHz samples fed so far, event) pairs."""
    samples = resample(audio, RATE, rate) if rate != RATE else audio
    step = max(1, round(chunk_ms / 1000 * rate))
    out: list[tuple[int, VADEvent]] = []
    for begin in range(0, len(samples), step):
        piece = samples[begin : begin + step]
        pts = start_pts_ns + begin * NS_PER_S // rate
        chunk = AudioChunk(pcm=float32_to_pcm16(piece), sample_rate_hz=rate, pts_ns=pts)
        fed = round((begin + len(piece)) * RATE / rate)
        out += [(fed, event) for event in endpointer.push(chunk)]
    out += [(len(audio), event) for event in endpointer.flush()]
    return out


def kinds(events: list[tuple[int, VADEvent]]) -> list[str]:
    return [type(event).__name__ for _, event in events]


@pytest.fixture
def vad() -> FakeVAD:
    return FakeVAD.load(VADSettings(min_silence_ms=400, speech_pad_ms=100))


def test_speech_start_is_decided_within_one_window_of_the_onset(vad: FakeVAD) -> None:
    onset = 16_123
    audio = np.concatenate([silence(onset / RATE), tone(1.0), silence(1.0)])
    events = feed(Endpointer(vad), audio)
    assert kinds(events) == ["SpeechStart", "SpeechPause", "SpeechEnd"]
    fed, start = events[0]
    assert isinstance(start, SpeechStart)
    assert abs(start.pts_ns - onset * NS_PER_S // RATE) <= 32 * MS
    # Decided as soon as the window holding the onset was complete (+ one 20 ms chunk).
    assert fed - onset <= WINDOW + 320


def test_speech_ends_after_the_hangover_with_padded_audio(vad: FakeVAD) -> None:
    audio = np.concatenate([silence(1.0), tone(1.5), silence(1.5)])
    events = feed(Endpointer(vad), audio)
    (_, start), (fed_pause, pause), (fed_end, end) = events
    assert isinstance(pause, SpeechPause) and isinstance(end, SpeechEnd)
    speech_end_s = 2.5
    # The end comes only after 400 ms of silence, within one window more.
    assert speech_end_s + 0.4 <= fed_end / RATE <= speech_end_s + 0.4 + 2 * WINDOW / RATE
    assert fed_pause < fed_end
    utterance = end.utterance
    assert not end.forced
    # Padded by speech_pad_ms after the speech (and a bit more before it).
    assert utterance.end_pts_ns / NS_PER_S == pytest.approx(speech_end_s + 0.1, abs=0.04)
    assert utterance.start_pts_ns < start.pts_ns  # type: ignore[attr-defined]
    assert utterance.audio.dtype == np.float32
    assert len(utterance.audio) == pytest.approx(
        (utterance.end_pts_ns - utterance.start_pts_ns) * RATE / NS_PER_S, abs=1
    )
    # The pause announced exactly the audio that the end carries.
    assert pause.utterance.end_pts_ns == utterance.end_pts_ns
    assert np.array_equal(pause.utterance.audio, utterance.audio)


def test_a_short_pause_inside_speech_does_not_end_it(vad: FakeVAD) -> None:
    audio = np.concatenate([silence(0.5), tone(1.0), silence(0.25), tone(1.0), silence(1.0)])
    events = feed(Endpointer(vad), audio)
    assert kinds(events) == ["SpeechStart", "SpeechPause", "SpeechPause", "SpeechEnd"]
    first_pause, end = events[1][1], events[3][1]
    assert isinstance(first_pause, SpeechPause) and isinstance(end, SpeechEnd)
    assert end.utterance.duration_s == pytest.approx(2.25 + 0.1 + 0.2, abs=0.07)
    assert first_pause.utterance.end_pts_ns < end.utterance.end_pts_ns


def test_silence_gives_no_events(vad: FakeVAD) -> None:
    endpointer = Endpointer(vad)
    assert feed(endpointer, silence(5.0)) == []
    assert endpointer.utterance_audio() is None


def test_a_click_shorter_than_min_speech_is_discarded(vad: FakeVAD) -> None:
    audio = np.concatenate([silence(0.5), tone(0.1), silence(1.0)])
    assert kinds(feed(Endpointer(vad), audio)) == ["SpeechStart", "SpeechDiscarded"]


def test_a_long_monologue_is_cut_at_max_speech(vad: FakeVAD) -> None:
    settings = VADSettings(max_speech_s=2.0, min_silence_ms=400, speech_pad_ms=100)
    events = feed(Endpointer(vad, settings), np.concatenate([tone(5.0), silence(1.0)]))
    assert kinds(events)[:3] == ["SpeechStart", "SpeechEnd", "SpeechStart"]
    first_end = events[1][1]
    assert isinstance(first_end, SpeechEnd) and first_end.forced
    assert first_end.utterance.duration_s == pytest.approx(2.0, abs=0.04)
    ends = [e for _, e in events if isinstance(e, SpeechEnd)]
    assert all(e.utterance.duration_s <= 2.04 for e in ends)
    assert not ends[-1].forced


def test_in_progress_utterance_grows_while_the_user_speaks(vad: FakeVAD) -> None:
    endpointer = Endpointer(vad)
    durations = []
    audio = np.concatenate([silence(0.5), tone(2.0)])
    for begin in range(0, len(audio), 320):
        endpointer.push(
            AudioChunk(pcm=float32_to_pcm16(audio[begin : begin + 320]), sample_rate_hz=RATE)
        )
        utterance = endpointer.utterance_audio()
        if utterance is not None:
            durations.append(utterance.duration_s)
    assert endpointer.in_speech
    assert durations == sorted(durations)
    assert durations[-1] == pytest.approx(2.0 + 0.2, abs=0.05)


def test_48khz_input_gives_the_same_events_as_16khz(vad: FakeVAD) -> None:
    audio = np.concatenate([silence(0.7), tone(1.2), silence(1.0)])
    at_16k = feed(Endpointer(vad), audio)
    at_48k = feed(Endpointer(vad), audio, rate=48_000, chunk_ms=10)
    assert kinds(at_16k) == kinds(at_48k)
    for (_, a), (_, b) in zip(at_16k, at_48k, strict=True):
        if isinstance(a, SpeechStart) and isinstance(b, SpeechStart):
            assert abs(a.pts_ns - b.pts_ns) <= 32 * MS
        if isinstance(a, SpeechEnd) and isinstance(b, SpeechEnd):
            assert abs(a.utterance.end_pts_ns - b.utterance.end_pts_ns) <= 32 * MS


def test_times_follow_the_input_timeline(vad: FakeVAD) -> None:
    audio = np.concatenate([silence(1.0), tone(1.0), silence(1.0)])
    events = feed(Endpointer(vad), audio, start_pts_ns=5 * NS_PER_S)
    start = events[0][1]
    assert isinstance(start, SpeechStart)
    assert abs(start.pts_ns - 6 * NS_PER_S) <= 32 * MS


def test_a_gap_in_the_input_shifts_later_times(vad: FakeVAD) -> None:
    endpointer = Endpointer(vad)
    first = silence(1.0)
    endpointer.push(AudioChunk(pcm=float32_to_pcm16(first), sample_rate_hz=RATE, pts_ns=0))
    # The next chunk arrives 2 s later on the input timeline (1 s of audio was lost).
    events = endpointer.push(
        AudioChunk(pcm=float32_to_pcm16(tone(1.0)), sample_rate_hz=RATE, pts_ns=2 * NS_PER_S)
    )
    start = events[0]
    assert isinstance(start, SpeechStart)
    assert abs(start.pts_ns - 2 * NS_PER_S) <= 32 * MS


def test_end_of_input_closes_a_running_utterance(vad: FakeVAD) -> None:
    events = feed(Endpointer(vad), np.concatenate([silence(0.5), tone(1.0)]))
    assert kinds(events) == ["SpeechStart", "SpeechEnd"]


async def test_apush_runs_the_model_in_the_worker_thread(vad: FakeVAD) -> None:
    audio = np.concatenate([silence(0.5), tone(1.0), silence(1.0)])
    endpointer = Endpointer(vad)
    events: list[VADEvent] = []
    for begin in range(0, len(audio), 16_000):
        piece = audio[begin : begin + 16_000]
        events += await endpointer.apush(
            AudioChunk(pcm=float32_to_pcm16(piece), sample_rate_hz=RATE, pts_ns=begin * 62_500)
        )
    reference = [e for _, e in feed(Endpointer(vad), audio)]
    assert [type(e) for e in events] == [type(e) for e in reference]
    await vad.aclose()


def test_settings_refuse_padding_longer_than_the_hangover() -> None:
    with pytest.raises(ValueError, match="speech_pad_ms"):
        VADSettings(min_silence_ms=200, speech_pad_ms=300)
    with pytest.raises(ValueError, match="extra"):
        VADSettings(hangover_ms=300)  # type: ignore[call-arg]
    assert VADSettings(threshold=0.6).silence_threshold == pytest.approx(0.45)


def test_discarded_event_carries_times(vad: FakeVAD) -> None:
    audio = np.concatenate([silence(1.0), tone(0.1), silence(1.0)])
    discarded = [e for _, e in feed(Endpointer(vad), audio) if isinstance(e, SpeechDiscarded)]
    assert len(discarded) == 1
    assert discarded[0].start_pts_ns < discarded[0].end_pts_ns
