"""What goes out to a WebSocket client: a send queue bounded in bytes, and the encoders.

* :class:`SendQueue`: frames wait here for a slow client; JPEG frames are dropped oldest
  first, audio and MP4 fragments are never dropped, so memory stays bounded either way.
  It knows how long its oldest unsent message has waited (:meth:`SendQueue.stalled_ns`):
  a client whose messages wait longer than ``STALL_TIMEOUT_S`` is disconnected (1013),
  however few bytes its stream needs;
* :class:`FMP4Stream`: the live stream as fragmented MP4 through
  :class:`~talkface.output.mp4.MP4Writer` (init segment first, then fragments);
* :func:`encode_jpeg` and :func:`media_header`: the ``jpeg`` output's binary frames.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from talkface.api.errors import ClientTooSlow
from talkface.audio import PLAYBACK_RATE_HZ
from talkface.clock import Clock, MonotonicClock
from talkface.messages import NS_PER_S, SpeechAudio, VideoFrame
from talkface.output.encoded import EncodedVideo, LoopSplice, encode_h264_loop, encode_vp8_loop
from talkface.output.mp4 import MP4Writer, OutputSettings

logger = logging.getLogger(__name__)

STALL_TIMEOUT_S = 10.0
"""A client whose oldest unsent message has waited this long is disconnected."""
MAX_SEND_BYTES = 4 * 1024 * 1024
JPEG_QUALITY = 80
FRAGMENT_S = 0.5  # fMP4 fragment length: what a client waits for, at most, for new media
_MEDIA_HEADER = struct.Struct(">cQ")


@dataclass(slots=True)
class _Outgoing:
    payload: str | bytes
    queued_ns: int
    droppable: bool = False
    on_sent: Callable[[], None] | None = None


class SendQueue:
    """Frames waiting to go to one client, bounded in bytes.

    Args:
        max_bytes: how much may wait; JSON events may exceed it (they are small and never
            dropped) up to twice as much.
        clock: when each message was queued (tests pass a manual clock).
    """

    def __init__(self, max_bytes: int = MAX_SEND_BYTES, *, clock: Clock | None = None) -> None:
        self._items: collections.deque[_Outgoing] = collections.deque()
        self._bytes = 0
        self._max = max_bytes
        self._clock = clock or MonotonicClock()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._sending_since_ns: int | None = None  # queued_ns of the message being sent
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet taken by :meth:`get` (the message being sent excluded)."""
        return self._bytes

    def stalled_ns(self) -> int:
        """How long the oldest message not yet taken by the client has waited (0: none).

        A message counts until :meth:`sent` says the transport has handed it over, so a
        send that blocks on a client that stopped reading counts too.
        """
        oldest = [at for at in (self._sending_since_ns,
                                self._items[0].queued_ns if self._items else None)
                  if at is not None]
        return self._clock.now_ns() - min(oldest) if oldest else 0

    def put_event(self, text: str) -> None:
        """Queue a JSON event (never dropped).

        Raises:
            ClientTooSlow: the client has not read anything for a long while.
        """
        if self._bytes > 2 * self._max:
            raise ClientTooSlow("the client is not reading its messages")
        self._append(_Outgoing(text, self._clock.now_ns()))

    def put_droppable(self, data: bytes, on_sent: Callable[[], None] | None = None) -> None:
        """Queue a video frame; if the queue is full the oldest frames go first."""
        while self._bytes + len(data) > self._max and self._drop_oldest():
            pass
        if self._bytes + len(data) > self._max:
            self.dropped += 1
            return
        self._append(_Outgoing(data, self._clock.now_ns(), droppable=True, on_sent=on_sent))

    async def put(self, data: bytes, on_sent: Callable[[], None] | None = None) -> None:
        """Queue audio or an MP4 fragment (never dropped); waits while the queue is full.

        Raises:
            ClientTooSlow: no room for ``STALL_TIMEOUT_S``.
        """
        while self._items and self._bytes + len(data) > self._max:
            if self._drop_oldest():
                continue
            self._writable.clear()
            try:
                async with asyncio.timeout(STALL_TIMEOUT_S):
                    await self._writable.wait()
            except TimeoutError:
                raise ClientTooSlow(
                    f"the client took nothing for {STALL_TIMEOUT_S:.0f} s; its connection "
                    "is too slow for live video") from None
        self._append(_Outgoing(data, self._clock.now_ns(), on_sent=on_sent))

    async def get(self) -> _Outgoing:
        """The next frame to send (waits for one); call :meth:`sent` once it is sent."""
        while not self._items:
            self._readable.clear()
            await self._readable.wait()
        item = self._items.popleft()
        self._bytes -= len(item.payload)
        self._sending_since_ns = item.queued_ns
        self._writable.set()
        return item

    def sent(self) -> None:
        """The frame :meth:`get` returned has been handed to the connection."""
        self._sending_since_ns = None

    def _append(self, item: _Outgoing) -> None:
        self._items.append(item)
        self._bytes += len(item.payload)
        self._readable.set()

    def _drop_oldest(self) -> bool:
        for index, item in enumerate(self._items):
            if item.droppable:
                del self._items[index]
                self._bytes -= len(item.payload)
                self.dropped += 1
                return True
        return False


class _Collector(io.RawIOBase):
    """A write-only file that MP4Writer writes into; the bytes are taken after each call."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class FMP4Stream:
    """The live stream as fragmented MP4 (call from the encoder thread only)."""

    def __init__(self, *, fps: int, size_px: int, settings: OutputSettings) -> None:
        self._sink = _Collector()
        # A fragment ends at each keyframe, and x264 makes one every 250 frames by default:
        # ten seconds before a client would see anything.
        self._writer = MP4Writer(self._sink, fps=fps, size_px=size_px, fragmented=True,
                                 settings=settings, keyframe_interval_s=FRAGMENT_S)
        self._fps = fps
        self._audio_samples = 0
        self._splice = LoopSplice(self._can_carry)

    @property
    def loop_frames(self) -> int:
        """Frames taken from a loop encoded once (not encoded by this stream)."""
        return self._splice.carried_frames

    def _can_carry(self, video: EncodedVideo) -> bool:
        if video.codec == "h264" and video.extradata == self._writer.video_extradata:
            return True
        logger.warning("the idle loop was encoded for another stream (%s, other parameter "
                       "sets); its frames are encoded again", video.codec)
        return False

    def encode(self, tick: int, image: np.ndarray, pcm: bytes,
               loop: tuple[EncodedVideo, int] | None = None) -> bytes:
        """Add frame ``tick`` and the audio that goes with it; returns the bytes made.

        ``loop``: ``image`` is frame ``i`` of a video encoded once (the idle loop). Its
        encoded frame goes into the stream as it is, with no encoding here, from one of
        its keyframes on and for as long as the loop's frames follow each other; the
        first frame encoded here after such a run is a keyframe.
        """
        carried, keyframe = self._splice.next_frame(loop)
        if carried is not None:
            self._writer.write_encoded(tick, carried, image)
        else:
            if keyframe:
                self._writer.force_keyframe()  # the decoder's reference is a loop frame
            self._writer.write_frame(VideoFrame(image=image,
                                                pts_ns=tick * NS_PER_S // self._fps,
                                                index=tick))
        if pcm:
            pts_ns = self._audio_samples * NS_PER_S // PLAYBACK_RATE_HZ
            self._writer.write_speech(SpeechAudio(pcm=pcm, sample_rate_hz=PLAYBACK_RATE_HZ,
                                                  pts_ns=pts_ns))
            self._audio_samples += len(pcm) // 2
        return self._sink.take()

    def finish(self) -> bytes:
        """The last fragment (the stream ends cleanly)."""
        self._writer.close()
        return self._sink.take()

    def abort(self) -> None:
        """Stop the encoder without a last fragment (the stream failed or was cancelled)."""
        self._writer.abort()


def encode_fmp4_loop(frames: tuple[np.ndarray, ...], fps: int, *, size_px: int,
                     settings: OutputSettings) -> EncodedVideo:
    """``frames`` (a loop) encoded once so that every :class:`FMP4Stream` of this size and
    these settings can carry them as they are (same parameter sets, a keyframe every
    fragment). Blocking."""
    return encode_h264_loop(frames, fps=fps, size_px=size_px, settings=settings,
                             keyframe_interval_s=FRAGMENT_S)


def encode_webrtc_loop(frames: tuple[np.ndarray, ...], fps: int) -> EncodedVideo:
    """``frames`` (a loop) encoded once as VP8 for WebRTC connections: the codec browsers
    offer first (a connection that settles on another encodes the loop itself). Blocking."""
    return encode_vp8_loop(frames, fps=fps)


def mse_mime(init_segment: bytes) -> str:
    """The MSE type of our fMP4 (H.264 profile and level read from its avcC box)."""
    at = init_segment.find(b"avcC")
    codec = "avc1.42e01e"
    if at >= 0 and len(init_segment) >= at + 8:
        profile, compat, level = init_segment[at + 5 : at + 8]
        codec = f"avc1.{profile:02x}{compat:02x}{level:02x}"
    return f'video/mp4; codecs="{codec},mp4a.40.2"'


def moov_complete(data: bytes) -> bool:
    """Whether ``data`` (the start of the stream) holds the whole init segment."""
    at = 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        if size < 8 or at + size > len(data):
            return False
        if kind == b"moov":
            return True
        at += size
    return False


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``image`` (HxWx3 uint8 RGB) as JPEG bytes at ``quality`` (0-100)."""
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def media_header(kind: bytes, pts_ns: int) -> bytes:
    """The header of a binary frame in ``jpeg`` output: kind, then pts in µs."""
    return _MEDIA_HEADER.pack(kind, pts_ns // 1000)
