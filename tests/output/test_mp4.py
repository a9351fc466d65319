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
from talkface.output.encoded import encode_h264_loop
from talkface.output.mp4 import MP4Writer, OutputSettings

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


def moving(index: int, kind: int) -> np.ndarray:
    """A picture that changes every frame (one family of them per ``kind``)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    red = np.sin(xx / 9 + index / 4 + kind) * 100 + 128
    green = (yy + 3 * index) % 256
    blue = np.full_like(red, 60 + 120 * kind)
    return np.stack([red, green, blue], -1).astype(np.uint8)


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255**2 / max(error, 1e-9)))


def test_frames_encoded_once_play_inside_a_stream_from_a_keyframe_on() -> None:
    """A loop encoded once goes into a live stream as it is (no encoding): from one of its
    keyframes, frame after frame, and the stream's own next frame is a keyframe; every
    frame decodes as the picture it stands for."""
    loop_images = [moving(k, kind=0) for k in range(40)]
    loop = encode_h264_loop(loop_images, fps=FPS, size_px=SIZE, settings=OutputSettings(),
                             keyframe_interval_s=0.4)
    keyframes = [i for i, f in enumerate(loop.frames) if f.keyframe]
    assert keyframes == [0, 10, 20, 30]
    sink = io.BytesIO()
    writer = MP4Writer(sink, fps=FPS, size_px=SIZE, fragmented=True, keyframe_interval_s=0.4)
    assert writer.video_extradata == loop.extradata  # the same parameter sets
    expected = []
    for tick in range(0, 15):  # live frames
        expected.append(moving(tick, kind=1))
        writer.write_frame(VideoFrame(image=expected[-1], pts_ns=0, index=tick))
    for tick in range(15, 45):  # loop frames 10..39 as encoded, then live again
        index = tick - 5
        expected.append(loop_images[index])
        writer.write_encoded(tick, loop.frames[index], loop_images[index])
    writer.force_keyframe()
    for tick in range(45, 55):
        expected.append(moving(tick, kind=1))
        writer.write_frame(VideoFrame(image=expected[-1], pts_ns=0, index=tick))
    writer.close()
    with av.open(io.BytesIO(sink.getvalue())) as container:
        decoded = [(f.to_ndarray(format="rgb24"), f.key_frame)
                   for f in container.decode(video=0)]
    assert len(decoded) == len(expected)
    pairs = zip(decoded, expected, strict=True)
    assert min(psnr_db(image, want) for (image, _), want in pairs) > 25
    assert decoded[15][1] and decoded[45][1]  # the loop's keyframe, the stream's forced one
