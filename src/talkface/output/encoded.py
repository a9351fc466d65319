"""Video encoded once, for streams that carry it as it is: the idle loop of silent sessions.

Every silent live session shows the same few seconds of the listening face (see
:mod:`talkface.api.realtime.idle_clip`). Encoding those frames again for every session,
25 times a second, was most of what a silent session cost; here they are encoded once per
codec, with a keyframe every so often, and a stream puts the encoded frames in as they
are. A stream may start carrying them at one of their keyframes and go on frame by frame
(the loop's last frame is followed by its first, a keyframe); the first frame a stream
encodes itself afterwards must be a keyframe, since the decoder's reference is now a loop
frame the stream's own encoder never saw.

* ``h264``: for fragmented MP4 (:class:`~talkface.api.realtime.outgoing.FMP4Stream`); set
  up exactly as :class:`~talkface.output.mp4.MP4Writer` sets up its encoder, so both make
  the same parameter sets (``extradata``), which the stream checks before it carries them.
* ``vp8``: for WebRTC (the codec browsers offer first; aiortc sends encoded VP8 frames as
  they come, :class:`~talkface.api.realtime.webrtc.AvatarVideoTrack`).
"""

from __future__ import annotations

import contextlib
import fractions
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from talkface.output.mp4 import OutputSettings, add_h264_stream

__all__ = ["EncodedFrame", "EncodedVideo", "LoopSplice", "encode_h264_loop", "encode_vp8_loop"]

VP8_BITRATE_BPS = 600_000
"""The VP8 loop's bitrate: about what a WebRTC sender gives a talking head at 512 px."""


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One video frame as the encoder made it (for a stream to send as it is)."""

    data: bytes
    keyframe: bool


@dataclass(frozen=True, slots=True, eq=False)
class EncodedVideo:
    """Frames encoded once, to be put into streams instead of encoding them again.

    Attributes:
        codec: ``"h264"`` (length-prefixed, for MP4) or ``"vp8"``.
        frames: one per frame, in order; frame 0 is a keyframe.
        extradata: what the frames refer to besides themselves (H.264's parameter
            sets): a stream whose own is different cannot carry them.
    """

    codec: str
    frames: tuple[EncodedFrame, ...]
    extradata: bytes = b""

    def __post_init__(self) -> None:
        if not self.frames or not self.frames[0].keyframe:
            raise ValueError("encoded video must start with a keyframe")

    @property
    def size_bytes(self) -> int:
        """Bytes of the encoded frames."""
        return sum(len(f.data) for f in self.frames)


def encode_h264_loop(images: tuple[np.ndarray, ...] | list[np.ndarray], *, fps: int,
                     size_px: int, settings: OutputSettings,
                     keyframe_interval_s: float) -> EncodedVideo:
    """Encode ``images`` as :class:`~talkface.output.mp4.MP4Writer` would (same parameter
    sets), with a keyframe every ``keyframe_interval_s`` and at the first frame. Blocking:
    a second or two for a loop of a few seconds at 512 px."""
    import av

    container = av.open(io.BytesIO(), mode="w", format="mp4",
                        options={"movflags": "+frag_keyframe+empty_moov+default_base_moof"})
    try:
        stream = add_h264_stream(container, fps=fps, size_px=size_px, settings=settings,
                                 keyframe_interval_s=keyframe_interval_s)
        frames = _encode(stream.codec_context, images, fps=fps,
                         keyframe_every=max(1, round(fps * keyframe_interval_s)))
        extradata = bytes(stream.codec_context.extradata or b"")
    finally:
        with contextlib.suppress(Exception):
            container.close()
    return EncodedVideo(codec="h264", frames=frames, extradata=extradata)


def encode_vp8_loop(images: tuple[np.ndarray, ...] | list[np.ndarray], *, fps: int,
                    keyframe_interval_s: float = 1.0,
                    bitrate_bps: int = VP8_BITRATE_BPS) -> EncodedVideo:
    """Encode ``images`` as VP8 for WebRTC, one packet a frame (no hidden frames), with a
    keyframe every ``keyframe_interval_s`` and at the first frame. Blocking."""
    import av

    height, width = images[0].shape[:2]
    context = av.CodecContext.create("libvpx", "w")
    context.width, context.height = width, height
    context.pix_fmt = "yuv420p"
    context.framerate = fractions.Fraction(fps)
    context.time_base = fractions.Fraction(1, fps)
    context.bit_rate = bitrate_bps
    context.gop_size = max(1, round(fps * keyframe_interval_s))
    context.options = {
        "deadline": "good",
        "cpu-used": "4",
        "lag-in-frames": "0",  # no frame held back...
        "auto-alt-ref": "0",  # ...and no hidden reference frame: one packet a frame
        "error-resilient": "1",
    }
    frames = _encode(context, images, fps=fps, keyframe_every=context.gop_size)
    return EncodedVideo(codec="vp8", frames=frames)


def _encode(context: Any, images: tuple[np.ndarray, ...] | list[np.ndarray], *, fps: int,
            keyframe_every: int) -> tuple[EncodedFrame, ...]:
    import av

    frames: list[EncodedFrame] = []
    for index, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        if index % keyframe_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        frames += [EncodedFrame(bytes(p), p.is_keyframe) for p in context.encode(frame)]
    frames += [EncodedFrame(bytes(p), p.is_keyframe) for p in context.encode()]
    if len(frames) != len(images):
        raise RuntimeError(f"the encoder made {len(frames)} frames of {len(images)}")
    return tuple(frames)


class LoopSplice:
    """Frame by frame, whether a stream sends a loop's encoded frame or encodes its own.

    Args:
        can_carry: whether this stream can carry ``video`` at all (its codec, its
            parameter sets); asked once per video.
    """

    def __init__(self, can_carry: Callable[[EncodedVideo], bool]) -> None:
        self._can_carry = can_carry
        self._checked: tuple[EncodedVideo, bool] | None = None
        self._next: tuple[EncodedVideo, int] | None = None  # the loop frame that may follow
        self.carried_frames = 0
        """Frames sent as the loop's encoding (not encoded by the stream)."""

    def next_frame(self, loop: tuple[EncodedVideo, int] | None) -> tuple[EncodedFrame | None, bool]:
        """The stream's next frame shows frame ``i`` of ``loop`` (``(video, i)``), or is
        its own (None). Returns the encoded frame to send as it is, or None: then the
        stream encodes the frame itself, as a keyframe when the second value is True."""
        if loop is not None and self._carries(*loop):
            video, index = loop
            self._next = (video, (index + 1) % len(video.frames))
            self.carried_frames += 1
            return video.frames[index], False
        after_loop = self._next is not None
        self._next = None
        return None, after_loop

    def _carries(self, video: EncodedVideo, index: int) -> bool:
        following = self._next
        if following is not None and following[0] is video and following[1] == index:
            return True
        if not video.frames[index].keyframe:
            return False
        checked = self._checked
        if checked is None or checked[0] is not video:
            checked = self._checked = (video, self._can_carry(video))
        return checked[1]
