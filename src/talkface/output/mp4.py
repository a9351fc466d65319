"""Writing the avatar's audio and video as an H.264 + AAC MP4 (plain or fragmented).

PyAV's wheel bundles FFmpeg with libx264 and the AAC encoder, so nothing else is needed.
The audio clock is the master: speech is placed at its ``pts_ns`` (silence fills any
gap), video frames at their index, and on close the shorter track is extended (silence,
or the last frame held) so that both end within one frame of each other.

A file is written under a temporary name and renamed into place when complete, so an
interrupted render never leaves a broken MP4 where the user expects a good one. The
temporary name is hidden next to the final one (``.<name>.<random>.mp4``); a process that
is killed while writing leaves it behind, and :func:`partial_files` finds it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from talkface.audio import PLAYBACK_RATE_HZ, ns_to_samples, pcm16_to_float32
from talkface.errors import BackendUnavailable, BadInput
from talkface.messages import SpeechAudio, VideoFrame

if TYPE_CHECKING:
    from talkface.output.encoded import EncodedFrame


class OutputSettings(BaseModel):
    """How videos are encoded.

    Attributes:
        crf: x264 constant rate factor (lower is better quality, bigger files).
        preset: x264 speed preset.
        encoder_threads: x264 threads (1 keeps a core free on a small box).
        audio_bitrate_kbps: AAC bitrate.
    """

    model_config = ConfigDict(extra="forbid")

    crf: int = Field(23, ge=0, le=51)
    preset: str = "veryfast"
    encoder_threads: int = Field(1, ge=0, le=64)
    audio_bitrate_kbps: int = Field(96, ge=16, le=512)


@dataclass(frozen=True, slots=True)
class WrittenVideo:
    """What :meth:`MP4Writer.close` wrote."""

    path: Path | None
    frames: int
    audio_samples: int
    fps: int

    @property
    def duration_s(self) -> float:
        """The video's length in seconds (``frames / fps``)."""
        return self.frames / self.fps


_PARTIAL_SUFFIX = ".mp4"


def _partial_prefix(path: Path) -> str:
    return f".{path.name}."


def partial_files(path: Path) -> list[Path]:
    """The unfinished files of ``path``: being written, or left by a killed writer."""
    pattern = glob.escape(_partial_prefix(path)) + "*" + _PARTIAL_SUFFIX
    return sorted(path.parent.glob(pattern))


def partial_target(partial: Path) -> Path | None:
    """The final path an unfinished file was for (None: not one of ours)."""
    name = partial.name
    if not (name.startswith(".") and name.endswith(_PARTIAL_SUFFIX)):
        return None
    final, dot, _random = name[1 : -len(_PARTIAL_SUFFIX)].rpartition(".")
    return partial.with_name(final) if dot and final else None


def check_output_path(path: str | Path) -> Path:
    """Fail early, with a clear message, if a video cannot be written at ``path``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise BadInput(f"output {path} is a directory; give a file name such as {path / 'out.mp4'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise BadInput(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise BadInput(f"cannot write to folder {parent}: permission denied")
    if path.exists() and not os.access(path, os.W_OK):
        raise BadInput(f"cannot overwrite {path}: permission denied")
    return path


class MP4Writer:
    """Encodes speech audio and video frames into an MP4.

    Args:
        target: a file path, or a writable binary file object (fragmented output only).
        fps: video frame rate.
        size_px: frame width and height.
        fragmented: write fragmented MP4 (playable while it is being written, for streams).
        settings: encoder settings.
        keyframe_interval_s: seconds between keyframes (None: x264's default of 10 s).
            A fragmented stream is cut at keyframes, so this sets its latency.
    """

    def __init__(
        self,
        target: str | Path | BinaryIO,
        *,
        fps: int,
        size_px: int,
        fragmented: bool = False,
        settings: OutputSettings | None = None,
        keyframe_interval_s: float | None = None,
    ) -> None:
        try:
            import av
        except ImportError as exc:
            raise BackendUnavailable("writing video needs PyAV; run: pip install av") from exc
        self._av = av
        settings = settings or OutputSettings()
        self.fps = fps
        self.size_px = size_px
        self._final_path: Path | None = None
        self._temp_path: Path | None = None
        if isinstance(target, (str, Path)):
            self._final_path = check_output_path(target)
            try:
                handle, temp = tempfile.mkstemp(
                    dir=self._final_path.parent, prefix=_partial_prefix(self._final_path),
                    suffix=_PARTIAL_SUFFIX,
                )
            except OSError as exc:
                raise BadInput(f"cannot write {self._final_path}: {exc.strerror}") from None
            os.close(handle)
            self._temp_path = Path(temp)
            sink: Any = str(self._temp_path)
        elif fragmented:
            sink = target
        else:
            raise ValueError("a file object target needs fragmented=True")
        movflags = "+frag_keyframe+empty_moov+default_base_moof" if fragmented else "+faststart"
        self._container = av.open(sink, mode="w", format="mp4", options={"movflags": movflags})
        self._video = add_h264_stream(self._container, fps=fps, size_px=size_px,
                                       settings=settings,
                                       keyframe_interval_s=keyframe_interval_s)
        self._audio = self._container.add_stream("aac", rate=PLAYBACK_RATE_HZ, layout="mono")
        self._audio.bit_rate = settings.audio_bitrate_kbps * 1000
        self._audio_samples = 0  # samples written so far at PLAYBACK_RATE_HZ
        self._speech_end_ns = 0  # timeline end of the speech given so far
        self._frames = 0
        self._last_image: np.ndarray | None = None
        self._resampler: Any = None
        self._resampler_rate_hz = 0
        self._force_keyframe = False
        self._closed = False

    @property
    def frames_written(self) -> int:
        """Video frames written so far, repeated frames that fill gaps included."""
        return self._frames

    def write_speech(self, speech: SpeechAudio) -> None:
        """Place ``speech`` at its ``pts_ns`` (filling any gap before it with silence).

        Speech must come in timeline order; overlapping speech is appended, not mixed.
        """
        samples = pcm16_to_float32(speech.pcm)
        gap_ns = speech.pts_ns - self._speech_end_ns
        if gap_ns > 0:
            # Silence goes through the same resampler as speech: the resampler holds back
            # a few samples, so counting samples written would misplace the next sentence.
            silence = np.zeros(ns_to_samples(gap_ns, speech.sample_rate_hz), np.float32)
            samples = np.concatenate([silence, samples])
        self._write_samples(self._resample(samples, speech.sample_rate_hz))
        self._speech_end_ns = max(self._speech_end_ns, speech.pts_ns + speech.duration_ns)

    def write_frame(self, frame: VideoFrame) -> None:
        """Encode one frame; frames must come in order (a gap repeats the last frame)."""
        if frame.image.shape[:2] != (self.size_px, self.size_px):
            raise ValueError(f"frame is {frame.image.shape[:2]}, expected {self.size_px}px")
        while self._frames < frame.index and self._last_image is not None:
            self._encode_image(self._last_image)
        if frame.index < self._frames:
            return  # already covered
        self._encode_image(frame.image)

    def write_encoded(self, index: int, frame: EncodedFrame, image: np.ndarray) -> None:
        """Put ``frame``, encoded elsewhere (:func:`~talkface.output.encoded.encode_h264_loop`),
        at frame ``index`` instead of encoding ``image`` (which it shows).

        The caller keeps the stream decodable: a run of encoded frames starts at one of
        their keyframes, continues frame by frame, and the first frame this writer
        encodes after it must be a keyframe (:meth:`force_keyframe`).
        """
        if index < self._frames:
            return
        while self._frames < index and self._last_image is not None:
            self._encode_image(self._last_image)
        packet = self._av.Packet(frame.data)
        packet.pts = packet.dts = index
        packet.time_base = self._video.codec_context.time_base
        packet.is_keyframe = frame.keyframe
        packet.stream = self._video
        self._container.mux(packet)
        self._frames = index + 1
        self._last_image = image

    def force_keyframe(self) -> None:
        """Make the next frame this writer encodes a keyframe (an IDR)."""
        self._force_keyframe = True

    @property
    def video_extradata(self) -> bytes:
        """The H.264 parameter sets (SPS, PPS) every frame of the video refers to."""
        if not self._video.codec_context.is_open:
            self._video.codec_context.open()
        return bytes(self._video.codec_context.extradata or b"")

    def _encode_image(self, image: np.ndarray) -> None:
        video_frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        video_frame.pts = self._frames
        if self._force_keyframe:
            video_frame.pict_type = self._av.video.frame.PictureType.I
            self._force_keyframe = False
        for packet in self._video.encode(video_frame):
            self._container.mux(packet)
        self._frames += 1
        self._last_image = image

    def _resample(self, samples: np.ndarray, rate_hz: int) -> np.ndarray:
        if rate_hz == PLAYBACK_RATE_HZ:
            return samples
        import soxr

        if self._resampler is None or self._resampler_rate_hz != rate_hz:
            # A streaming resampler keeps its filter state across sentences: no clicks.
            self._resampler = soxr.ResampleStream(rate_hz, PLAYBACK_RATE_HZ, 1, dtype="float32")
            self._resampler_rate_hz = rate_hz
        return self._resampler.resample_chunk(samples.astype(np.float32), last=False)

    def _write_samples(self, samples: np.ndarray) -> None:
        if samples.size == 0:
            return
        frame = self._av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, np.float32).reshape(1, -1), format="fltp", layout="mono"
        )
        frame.sample_rate = PLAYBACK_RATE_HZ
        frame.pts = self._audio_samples
        for packet in self._audio.encode(frame):
            self._container.mux(packet)
        self._audio_samples += samples.size

    def close(self) -> WrittenVideo:
        """Even out the tracks, flush the encoders and move the file into place."""
        if self._closed:
            raise RuntimeError("MP4Writer is already closed")
        self._closed = True
        try:
            if self._resampler is not None:
                self._write_samples(
                    self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                )
            samples_per_frame = PLAYBACK_RATE_HZ / self.fps
            # Hold the last frame while audio goes on; pad audio with silence to the end.
            audio_frames = int(np.ceil(self._audio_samples / samples_per_frame - 1e-9))
            while self._frames < audio_frames and self._last_image is not None:
                self._encode_image(self._last_image)
            target_samples = round(self._frames * samples_per_frame)
            if target_samples > self._audio_samples:
                self._write_samples(np.zeros(target_samples - self._audio_samples, np.float32))
            for packet in self._video.encode():
                self._container.mux(packet)
            for packet in self._audio.encode():
                self._container.mux(packet)
            self._container.close()
        except BaseException:
            self._discard()
            raise
        if self._temp_path is not None and self._final_path is not None:
            os.replace(self._temp_path, self._final_path)
        return WrittenVideo(
            path=self._final_path, frames=self._frames, audio_samples=self._audio_samples,
            fps=self.fps,
        )

    def abort(self) -> None:
        """Stop without producing a file (an error or a cancel happened)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._container.close()
        self._discard()

    def _discard(self) -> None:
        if self._temp_path is not None:
            with contextlib.suppress(OSError):
                self._temp_path.unlink()


def add_h264_stream(container: Any, *, fps: int, size_px: int, settings: OutputSettings,
                     keyframe_interval_s: float | None) -> Any:
    """The H.264 video stream of ``container``: one setup for every encoder, so that frames
    encoded apart (:func:`~talkface.output.encoded.encode_h264_loop`) share the live
    stream's parameter sets."""
    video = container.add_stream(
        "libx264",
        rate=fps,
        options={
            "preset": settings.preset,
            "crf": str(settings.crf),
            "threads": str(settings.encoder_threads),
            # No B-frames and no lookahead: a frame is out as soon as it is encoded.
            "tune": "zerolatency",
            # A frame asked to be a keyframe is an IDR: a decoder may start there.
            "forced-idr": "1",
        },
    )
    video.width = video.height = size_px
    video.pix_fmt = "yuv420p"
    if keyframe_interval_s is not None:
        video.codec_context.gop_size = max(1, round(fps * keyframe_interval_s))
    return video
