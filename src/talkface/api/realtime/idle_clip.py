"""The listening face as a loop rendered once per avatar and shared by every silent session.

A silent live session used to animate (and encode) every idle frame: blinks, breathing
and head sway, 25 times a second, for as long as nobody spoke. Those frames look the same
for every session of an avatar, so an :class:`IdleClip` holds a few seconds of them,
rendered once with the animator (and encoded once, as JPEG for the ``jpeg`` output or as
H.264 for ``fmp4``), and :class:`~talkface.api.realtime.media.AvatarMedia` plays it while
the session is silent.

The loop has no seam: the animator's motion is a pure function of time, so
:func:`build_idle_clip` renders a little more than the loop, picks the loop length whose
end looks most like its start, and cross-fades the frames past the end into the first
ones (frame ``N-1`` flows into the cross-faded frame 0 as it flowed into frame ``N``).

Clips live in an :class:`IdleClipCache` per runtime (:func:`idle_clip_cache`), bounded in
clips and bytes, least recently used out first; concurrent sessions of a new avatar wait
for one build instead of making their own.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from talkface.api.settings import IdleClipSettings
from talkface.output.encoded import EncodedVideo

logger = logging.getLogger(__name__)

MIN_LOOP_S = 3.0
MAX_LOOP_S = 6.0
SEAM_FADE_S = 0.8  # the frames past the loop's end cross-faded into its start
_SEAM_SAMPLE_PX = 8  # seam candidates are compared on every 8th pixel

IdleRender = Callable[[int, int], Awaitable[list[np.ndarray]]]
"""``(first_frame_index, count) -> frames``: a conversation's ``idle_frames``."""
ClipKey = tuple[str, int, int, str]
"""(avatar id, size_px, fps, output kind)."""
EncodeLoop = Callable[[tuple[np.ndarray, ...], int], EncodedVideo]
"""``(frames, fps) -> video``: the loop encoded once for a stream that can carry it."""


@dataclass(frozen=True, slots=True, eq=False)
class IdleClip:
    """A seamless loop of the listening face.

    Attributes:
        frames: the loop's images (HxWx3 uint8 RGB), shared: never write into them.
        jpegs: each frame encoded once as JPEG (for the ``jpeg`` output; else empty).
        video: the loop encoded once for the output's video codec (H.264 for ``fmp4``,
            VP8 for ``webrtc``; None for ``jpeg``).
    """

    frames: tuple[np.ndarray, ...]
    jpegs: tuple[bytes, ...] = ()
    video: EncodedVideo | None = None

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("an idle clip needs at least one frame")
        if self.jpegs and len(self.jpegs) != len(self.frames):
            raise ValueError("an idle clip needs one JPEG per frame, or none")
        if self.video is not None and len(self.video.frames) != len(self.frames):
            raise ValueError("an idle clip's video needs one encoded frame per frame")

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size_bytes(self) -> int:
        """Bytes the clip holds: its frames' pixels plus its encoded frames."""
        encoded = self.video.size_bytes if self.video is not None else 0
        return sum(f.nbytes for f in self.frames) + sum(len(j) for j in self.jpegs) + encoded


def blend(image: np.ndarray, toward: np.ndarray, weight: float) -> np.ndarray:
    """``image`` moved ``weight`` (0..1) of the way to ``toward`` (uint8, same shape)."""
    if image.shape != toward.shape:
        return toward if weight >= 0.5 else image
    w = round(weight * 256)
    mixed = image.astype(np.uint16) * (256 - w) + toward.astype(np.uint16) * w
    return (mixed >> 8).astype(np.uint8)


def loop_frames(frames: list[np.ndarray], *, min_frames: int, fade_frames: int) -> list[np.ndarray]:
    """A seamless loop from ``frames`` (a stretch of continuous idle motion).

    The loop length ``N`` (at least ``min_frames``; ``N + fade_frames <= len(frames)``) is
    the one whose frames ``N..N+fade`` look most like ``0..fade``; frame ``j < fade`` of
    the loop is frame ``N+j`` cross-faded into frame ``j``, so the loop's last frame
    (``N-1``) is followed by what followed it when it was rendered.
    """
    fade = max(0, fade_frames)
    longest = len(frames) - fade
    if longest < 1:
        raise ValueError("too few frames for a loop with that cross-fade")
    shortest = min(max(1, min_frames), longest)
    step = _SEAM_SAMPLE_PX
    small = [f[::step, ::step].astype(np.int16) for f in frames]
    head = small[: max(fade, 1)]

    def seam_cost(n: int) -> float:
        return float(sum(np.abs(small[n + j] - head[j]).mean() for j in range(len(head))
                         if n + j < len(small)))

    length = min(range(shortest, longest + 1), key=seam_cost)
    loop = list(frames[:length])
    for j in range(min(fade, length)):
        loop[j] = blend(frames[length + j], frames[j], (j + 1) / (fade + 1))
    return loop


async def build_idle_clip(render: IdleRender, *, fps: int,
                          encode_jpeg: Callable[[np.ndarray], bytes] | None = None,
                          encode_video: EncodeLoop | None = None) -> IdleClip:
    """Render idle motion once and make it a loop (and its JPEGs or H.264 when asked).

    Raises:
        TalkfaceError: what the animator raises (a bad avatar, an overloaded engine).
    """
    fade = round(SEAM_FADE_S * fps)
    frames = await render(0, round(MAX_LOOP_S * fps) + fade)

    def finish() -> IdleClip:
        loop = tuple(loop_frames(frames, min_frames=round(MIN_LOOP_S * fps), fade_frames=fade))
        jpegs = tuple(encode_jpeg(f) for f in loop) if encode_jpeg is not None else ()
        video = encode_video(loop, fps) if encode_video is not None else None
        return IdleClip(frames=loop, jpegs=jpegs, video=video)

    return await asyncio.to_thread(finish)  # seconds of numpy and JPEG: not on the loop


class IdleClipCache:
    """Idle clips by (avatar, size, fps, output), least recently used out first.

    Args:
        max_clips: clips kept at most.
        max_bytes: bytes of frames and JPEGs kept at most (the newest clip is kept even
            when it alone is larger).
    """

    def __init__(self, *, max_clips: int, max_bytes: int) -> None:
        self._clips: collections.OrderedDict[ClipKey, IdleClip] = collections.OrderedDict()
        self._building: dict[ClipKey, asyncio.Event] = {}
        self._max_clips = max_clips
        self._max_bytes = max_bytes
        self.builds = 0

    def __len__(self) -> int:
        return len(self._clips)

    @property
    def size_bytes(self) -> int:
        """Bytes of frames and JPEGs in all cached clips (what ``max_bytes`` bounds)."""
        return sum(clip.size_bytes for clip in self._clips.values())

    def peek(self, key: ClipKey) -> IdleClip | None:
        """The cached clip for ``key``, or None; builds nothing and keeps the LRU order."""
        return self._clips.get(key)

    async def get(self, key: ClipKey, build: Callable[[], Awaitable[IdleClip]]) -> IdleClip:
        """The clip for ``key``, built with ``build`` if nobody has it or is making it.

        Raises:
            TalkfaceError: the build failed (the next caller tries again).
        """
        while True:
            clip = self._clips.get(key)
            if clip is not None:
                self._clips.move_to_end(key)
                return clip
            building = self._building.get(key)
            if building is None:
                break
            await building.wait()  # another session's build; it may fail: look again
        done = self._building[key] = asyncio.Event()
        try:
            clip = await build()
            self.builds += 1
            self._store(key, clip)
            return clip
        finally:
            del self._building[key]
            done.set()

    def _store(self, key: ClipKey, clip: IdleClip) -> None:
        self._clips[key] = clip
        self._clips.move_to_end(key)
        while len(self._clips) > 1 and (len(self._clips) > self._max_clips
                                        or self.size_bytes > self._max_bytes):
            old, _ = self._clips.popitem(last=False)
            logger.info("idle clip of avatar %s dropped (cache full)", old[0])


_CACHES: weakref.WeakKeyDictionary[object, IdleClipCache] = weakref.WeakKeyDictionary()


def idle_clip_cache(owner: object, settings: IdleClipSettings) -> IdleClipCache:
    """The cache shared by every session of ``owner`` (a runtime)."""
    cache = _CACHES.get(owner)
    if cache is None:
        cache = _CACHES[owner] = IdleClipCache(max_clips=settings.max_clips,
                                               max_bytes=settings.max_bytes)
    return cache


@dataclass(frozen=True, slots=True)
class IdleClipSource:
    """Where a session's idle clip comes from.

    Attributes:
        cache: the shared cache.
        output: the transport's output kind ("webrtc", "fmp4", "jpeg").
        size_px: frame size (part of the key).
        phase_frames: where in the loop this session's clip starts (sessions side by
            side do not blink together).
        avatar_id: resolves the session's avatar.
        encode_jpeg: set for the ``jpeg`` output: frames are encoded once, in the build.
        encode_video: set for the ``fmp4`` output: the loop is encoded once, in the build.
    """

    cache: IdleClipCache
    output: str
    size_px: int
    phase_frames: int
    avatar_id: Callable[[], Awaitable[str]]
    encode_jpeg: Callable[[np.ndarray], bytes] | None = None
    encode_video: EncodeLoop | None = None

    async def load(self, render: IdleRender, fps: int) -> IdleClip:
        """The clip (built now with ``render`` if it is the first of its key)."""
        key: ClipKey = (await self.avatar_id(), self.size_px, fps, self.output)
        return await self.cache.get(
            key, lambda: build_idle_clip(render, fps=fps, encode_jpeg=self.encode_jpeg,
                                         encode_video=self.encode_video))
