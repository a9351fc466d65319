"""The one owner of a conversation's time, on virtual time."""

from __future__ import annotations

import numpy as np
import pytest

from talkface.clock import ManualClock
from talkface.messages import NS_PER_S, SpeechAudio, TextDelta, VideoFrame
from talkface.output.timeline import TURN_GAP_FRAMES, Timeline

pytestmark = pytest.mark.unit
MS = 1_000_000


def speech(turn_id: int, pts_ns: int, seconds: float) -> SpeechAudio:
    return SpeechAudio(pcm=bytes(2 * int(16_000 * seconds)), sample_rate_hz=16_000,
                       pts_ns=pts_ns, turn_id=turn_id, text=f"at {pts_ns}")


def frame(turn_id: int, index: int, fps: int = 25) -> VideoFrame:
    return VideoFrame(image=np.zeros((2, 2, 3), np.uint8), pts_ns=index * NS_PER_S // fps,
                      index=index, turn_id=turn_id)


def test_a_turn_is_anchored_when_its_first_media_is_placed_and_keeps_its_spacing() -> None:
    clock = ManualClock(1_000 * MS)
    timeline = Timeline(clock)
    assert timeline.due_ns(TextDelta(text="hi", turn_id=1)) is None
    clock.advance(300 * MS)  # the answer took 300 ms to start
    assert timeline.due_ns(speech(1, 2_000 * MS, 1.0)) == 1_300 * MS
    assert timeline.due_ns(speech(1, 3_000 * MS, 1.0)) == 2_300 * MS
    # The next turn starts when this one's media ends, not before.
    assert timeline.due_ns(speech(2, 9_000 * MS, 0.5)) == 3_300 * MS


def test_what_the_listener_heard_follows_the_clock_and_a_cut_frees_the_stream() -> None:
    clock = ManualClock()
    timeline = Timeline(clock)
    assert timeline.heard_ns(1) is None
    timeline.due_ns(speech(1, 0, 2.0))
    clock.advance(700 * MS)
    assert timeline.heard_ns(1) == 700 * MS
    timeline.cut(1)
    # The answer after the cut one starts now, not when the cut one would have ended.
    assert timeline.due_ns(speech(2, 5_000 * MS, 1.0)) == 700 * MS


async def test_waiting_for_media_runs_on_the_clock_it_was_given() -> None:
    clock = ManualClock()
    timeline = Timeline(clock)
    await timeline.wait_due(speech(1, 0, 1.0))
    await timeline.wait_due(speech(1, 1_000 * MS, 1.0))
    assert clock.now_ns() == 1_000 * MS  # slept a virtual second, in no real time
    offline = Timeline(ManualClock(), realtime=False)
    await offline.wait_due(speech(1, 5_000 * MS, 1.0))
    assert offline.heard_ns(1) is not None and offline.heard_ns(1) > 5_000 * MS


def test_frame_numbers_follow_the_wall_clock_live_and_leave_a_gap_in_scripts() -> None:
    clock = ManualClock()
    live = Timeline(clock, fps=25)
    clock.advance(2 * NS_PER_S)
    assert live.first_frame_index() == 50
    live.answer_made(80)
    assert live.first_frame_index() == 80  # never back over an answer's frames
    script = Timeline(clock, fps=25, realtime=False)
    assert script.first_frame_index() == 0
    script.answer_made(40)
    assert script.first_frame_index() == 40 + TURN_GAP_FRAMES


def test_the_listening_face_resumes_after_the_last_frame_or_where_the_cut_left_it() -> None:
    timeline = Timeline(ManualClock())
    for index in range(10, 20):
        timeline.due_ns(frame(1, index))
    assert timeline.idle_from(1) == 20
    for index in range(30, 40):
        timeline.due_ns(frame(2, index))
    timeline.frame_shown(2, 33)
    assert timeline.idle_from(2, cut=True) == 34
    assert timeline.idle_from(3, cut=True) is None  # nothing of it was shown
