"""Cutting speech into animation requests on the 25 fps grid."""

from __future__ import annotations

import numpy as np
import pytest

from talkface.audio import float32_to_pcm16
from talkface.messages import Emotion, PhonemeSpan, SpeechAudio
from talkface.pipeline.frames import CHUNK_FRAMES, FIRST_CHUNK_FRAMES, FrameScheduler

pytestmark = pytest.mark.unit


def speech(seconds: float, pts_ns: int, **extra: object) -> SpeechAudio:
    samples = np.full(int(seconds * 22_050), 0.2, np.float32)
    return SpeechAudio(pcm=float32_to_pcm16(samples), sample_rate_hz=22_050, pts_ns=pts_ns, **extra)


def drain(scheduler: FrameScheduler) -> list:
    requests = []
    while (plan := scheduler.next_plan()) is not None:
        requests.append(scheduler.take(plan))
    return requests


def test_frames_wait_for_enough_audio_then_cover_all_of_it_at_the_end() -> None:
    scheduler = FrameScheduler(avatar_id="a", fps=25, first_frame_index=0, seed=1)
    assert scheduler.next_plan() is None
    scheduler.add_speech(speech(1.0, 0))
    ready = drain(scheduler)
    assert ready[0].num_frames == FIRST_CHUNK_FRAMES
    assert all(r.num_frames <= CHUNK_FRAMES for r in ready)
    # Without knowing what follows, the last frame or two wait for more audio.
    assert scheduler.next_frame_index < 25
    scheduler.finish()
    rest = drain(scheduler)
    assert scheduler.next_frame_index == 25
    indices = [
        i
        for r in ready + rest
        for i in range(r.first_frame_index, r.first_frame_index + r.num_frames)
    ]
    assert indices == list(range(25))


def test_requests_carry_the_audio_around_their_frames() -> None:
    scheduler = FrameScheduler(avatar_id="a", fps=25, first_frame_index=50, seed=1)
    scheduler.add_speech(speech(0.5, 2_000_000_000))
    scheduler.finish()
    first = drain(scheduler)[0]
    # Audio starts a little before the first frame (context) and is silence before speech.
    assert first.audio_start_ns < 2_000_000_000
    lead = (2_000_000_000 - first.audio_start_ns) * 16_000 // 1_000_000_000
    assert np.all(first.audio[: lead - 5] == 0)
    assert np.all(np.abs(first.audio[lead + 50 : lead + 500] - 0.2) < 0.02)


def test_phonemes_and_emotion_move_onto_the_timeline() -> None:
    scheduler = FrameScheduler(avatar_id="a", fps=25, first_frame_index=0, seed=1)
    scheduler.add_speech(
        speech(
            0.4,
            1_000_000_000,
            emotion=Emotion.HAPPY,
            phonemes=(PhonemeSpan(phoneme="m", start_ns=0, end_ns=80_000_000),),
        )
    )
    scheduler.finish()
    requests = drain(scheduler)
    last = requests[-1]
    assert last.emotion is Emotion.HAPPY and last.emotion_since_ns == 1_000_000_000
    spans = [p for r in requests for p in r.phonemes]
    assert spans and spans[0].start_ns == 1_000_000_000


def test_a_long_turn_keeps_only_recent_audio() -> None:
    scheduler = FrameScheduler(avatar_id="a", fps=25, first_frame_index=0, seed=1)
    for i in range(30):
        scheduler.add_speech(speech(2.0, i * 2_000_000_000))
        drain(scheduler)
    assert scheduler._audio.size < 4 * 16_000
