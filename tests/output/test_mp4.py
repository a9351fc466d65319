"""The MP4 writer: the audio clock rules, tracks end together, files appear whole or not at all."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from talkface.audio import float32_to_pcm16
from talkface.errors import BadInput
from talkface.face.lipsync import decode_video
from talkface.messages import SpeechAudio, VideoFrame
from talkface.output.mp4 import MP4Writer

pytestmark = pytest.mark.integration
FPS, SIZE = 25, 128


def beep(seconds: float, rate_hz: int = 22_050, pts_ns: int = 0) -> SpeechAudio:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return SpeechAudio(pcm=float32_to_pcm16(tone), sample_rate_hz=rate_hz, pts_ns=pts_ns)


def frame(index: int, value: int = 100) -> VideoFrame:
    return VideoFrame(image=np.full((SIZE, SIZE, 3), value, np.uint8),
                      pts_ns=index * 40_000_000, index=index)


def test_short_video_holds_its_last_frame_until_the_audio_ends(tmp_path: Path) -> None:
    writer = MP4Writer(tmp_path / "a.mp4", fps=FPS, size_px=SIZE)
    writer.write_speech(beep(1.0))
    for i in range(10):
        writer.write_frame(frame(i))
    written = writer.close()
    assert written.frames == 25
    frames, fps, audio, rate = decode_video(tmp_path / "a.mp4")
    assert len(frames) == 25 and fps == 25
    assert abs(len(audio) / rate - 1.0) < 1 / FPS


def test_a_gap_between_sentences_becomes_silence_at_the_right_place(tmp_path: Path) -> None:
    writer = MP4Writer(tmp_path / "gap.mp4", fps=FPS, size_px=SIZE)
    writer.write_speech(beep(0.5))
    writer.write_speech(beep(0.5, pts_ns=1_000_000_000))  # half a second of nothing between
    for i in range(38):
        writer.write_frame(frame(i))
    writer.close()
    _, _, audio, rate = decode_video(tmp_path / "gap.mp4")
    envelope = np.abs(audio)
    assert envelope[int(0.6 * rate) : int(0.9 * rate)].max() < 0.01
    second_start = np.argmax(envelope[int(0.6 * rate) :] > 0.1) + int(0.6 * rate)
    assert abs(second_start / rate - 1.0) < 0.01


def test_fragmented_mp4_streams_into_a_file_object() -> None:
    sink = io.BytesIO()
    writer = MP4Writer(sink, fps=FPS, size_px=SIZE, fragmented=True)
    writer.write_speech(beep(0.4))
    for i in range(10):
        writer.write_frame(frame(i, value=20 * i))
    writer.close()
    data = sink.getvalue()
    assert b"moof" in data and b"mdat" in data
    with av.open(io.BytesIO(data)) as container:
        assert len(list(container.decode(video=0))) == 10


def test_an_aborted_render_leaves_no_file(tmp_path: Path) -> None:
    writer = MP4Writer(tmp_path / "x.mp4", fps=FPS, size_px=SIZE)
    writer.write_frame(frame(0))
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_bad_output_paths_are_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="is a directory"):
        MP4Writer(tmp_path, fps=FPS, size_px=SIZE)
    with pytest.raises(BadInput, match="does not exist"):
        MP4Writer(tmp_path / "nope" / "x.mp4", fps=FPS, size_px=SIZE)
