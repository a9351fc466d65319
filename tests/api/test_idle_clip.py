"""The shared idle loop: a silent session plays it instead of animating every frame.

Unit tests with a scripted idle renderer (motion that never repeats exactly, as the
animator's); the real animator and server are in ``test_idle_clip_live.py``.
"""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import math

import av
import numpy as np
import pytest

from talkface.api.realtime.idle_clip import (
    MAX_LOOP_S,
    MIN_LOOP_S,
    SEAM_FADE_S,
    IdleClip,
    IdleClipCache,
    IdleClipSource,
    build_idle_clip,
    loop_frames,
)
from talkface.api.realtime.media import FADE_FRAMES, AvatarMedia
from talkface.api.realtime.outgoing import FMP4Stream, encode_fmp4_loop, encode_webrtc_loop
from talkface.api.realtime.webrtc import AvatarVideoTrack
from talkface.errors import BackendError
from talkface.messages import EndOfTurn, Message, SpeechAudio, VideoFrame
from talkface.output.encoded import EncodedVideo
from talkface.output.mp4 import OutputSettings

from .test_realtime_protocol import FPS, FRAME_NS, FakeConversation, Harness, run_media, tone

pytestmark = pytest.mark.unit

SIZE = 48


def swaying_face(index: int) -> np.ndarray:
    """A bright square that sways with incommensurate periods, and blinks now and then."""
    t = index / FPS
    x = 18 + 6 * math.sin(2 * math.pi * t / 6.1 + 0.3) + 3 * math.sin(2 * math.pi * t / 4.1)
    y = 18 + 4 * math.sin(2 * math.pi * t / 5.2 + 1.0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    # A soft-edged square, so sub-pixel motion changes the image a little every frame.
    inside = np.clip(6 - np.maximum(np.abs(xx - x - 6), np.abs(yy - y - 6)), 0, 1)
    image = np.repeat((40 + 200 * inside)[:, :, None], 3, axis=2).astype(np.uint8)
    if index % 97 in (40, 41, 42):  # a blink: a dark bar across the square
        image[int(y) + 4 : int(y) + 7, int(x) : int(x) + 12] = 30
    return image


class SwayingConversation(FakeConversation):
    async def idle_frames(self, first_frame_index: int, count: int) -> list[np.ndarray]:
        self.idle_requests.append((first_frame_index, count))
        return [swaying_face(first_frame_index + k) for k in range(count)]


def spoken(index: int) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), 150 + index % 100, np.uint8)


def turn(turn_id: int, seconds: float, first_index: int) -> list[Message]:
    frames = round(seconds * FPS)
    return [SpeechAudio(pcm=tone(seconds), sample_rate_hz=16_000, pts_ns=0, turn_id=turn_id),
            *[VideoFrame(image=spoken(first_index + k), pts_ns=k * FRAME_NS,
                         index=first_index + k, turn_id=turn_id) for k in range(frames)]]


def step(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_the_loop_has_no_jump_at_its_seam() -> None:
    frames = [swaying_face(k) for k in range(170)]
    loop = loop_frames(frames, min_frames=75, fade_frames=10)
    assert 75 <= len(loop) <= 160
    steps = [step(loop[k], loop[k + 1]) for k in range(len(loop) - 1)]
    seam = step(loop[-1], loop[0])
    # The step from the last frame to the first is like any other step of the loop...
    assert seam <= 1.5 * float(np.percentile(steps, 90)), (seam, np.percentile(steps, 90))
    # ...where cutting the same frames without the cross-fade jumps.
    assert step(frames[len(loop) - 1], frames[0]) > 2 * seam


async def test_concurrent_sessions_share_one_build_and_a_failed_build_is_retried() -> None:
    cache = IdleClipCache(max_clips=2, max_bytes=1 << 30)
    builds = 0

    async def build() -> IdleClip:
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.01)
        if builds == 1:
            raise BackendError("animator busy", retryable=True)
        return IdleClip(frames=(np.zeros((2, 2, 3), np.uint8),))

    key = ("avatar", 64, FPS, "jpeg")
    results = await asyncio.gather(*(cache.get(key, build) for _ in range(3)),
                                   return_exceptions=True)
    assert isinstance(results[0], BackendError)  # the first builder saw its failure...
    assert results[1] is results[2]  # ...the others waited, one built again, both share it
    assert builds == 2
    assert await cache.get(key, build) is results[1] and builds == 2


async def test_the_cache_keeps_the_most_recently_used_clips() -> None:
    cache = IdleClipCache(max_clips=2, max_bytes=1 << 30)
    clip = IdleClip(frames=(np.zeros((2, 2, 3), np.uint8),))

    async def make() -> IdleClip:
        return clip

    for name in ("a", "b", "a", "c"):  # "a" was used after "b": "b" goes
        await cache.get((name, 64, FPS, "webrtc"), make)
    assert cache.peek(("a", 64, FPS, "webrtc")) is clip
    assert cache.peek(("b", 64, FPS, "webrtc")) is None
    assert cache.peek(("c", 64, FPS, "webrtc")) is clip


def clip_harness(output: str = "jpeg") -> tuple[Harness, IdleClipCache]:
    harness = Harness()
    harness.conversation = SwayingConversation()
    cache = IdleClipCache(max_clips=4, max_bytes=1 << 30)

    async def avatar_id() -> str:
        return "portrait"

    source = IdleClipSource(cache=cache, output=output, size_px=SIZE, phase_frames=7,
                            avatar_id=avatar_id,
                            encode_jpeg=(lambda image: image.tobytes()[:16])
                            if output == "jpeg" else None,
                            encode_video={
                                "fmp4": functools.partial(encode_fmp4_loop, size_px=SIZE,
                                                          settings=OutputSettings()),
                                "webrtc": encode_webrtc_loop,
                            }.get(output))
    harness.media = AvatarMedia(harness.conversation, fps=FPS,  # type: ignore[arg-type]
                                on_message=harness._on_message,
                                on_first_output=harness.started.append, idle_clip=source)
    return harness, cache


async def wait_for_clip(cache: IdleClipCache) -> IdleClip:
    async with asyncio.timeout(5):
        while len(cache) == 0:
            await asyncio.sleep(0.01)
    clip = next(c for c in (cache.peek(("portrait", SIZE, FPS, output))
                            for output in ("jpeg", "webrtc", "fmp4")) if c is not None)
    assert clip is not None
    return clip


async def test_a_silent_session_plays_the_loop_without_animating_or_encoding() -> None:
    harness, cache = clip_harness("jpeg")
    media = harness.media

    async def body() -> None:
        clip = await wait_for_clip(cache)
        requests = len(harness.conversation.idle_requests)
        start = media.start_clock()
        shown = [media.video_frame(start + k * FRAME_NS) for k in range(3 * len(clip))]
        await asyncio.sleep(0.05)  # the live renderer would have asked for more by now
        assert len(harness.conversation.idle_requests) == requests  # no animator while silent
        # Frame k of the stream is loop frame (k + phase) mod N: the loop, over and over,
        # each with its JPEG made once (the first frames fade in from the rendered ones).
        assert all(shown[k] is clip.frames[(k + 7) % len(clip)] for k in range(len(shown)))
        assert media.cached_jpeg(shown[-1]) == clip.jpegs[(len(shown) - 1 + 7) % len(clip)]

    await run_media(harness, body)


async def test_a_turn_after_idling_fades_in_plays_and_the_loop_resumes() -> None:
    harness, cache = clip_harness("webrtc")
    media = harness.media

    async def body() -> None:
        clip = await wait_for_clip(cache)
        start = media.start_clock()
        for k in range(10):
            idle = media.video_frame(start + k * FRAME_NS)
        await harness.put(*turn(1, 0.4, first_index=500), EndOfTurn(turn_id=1, spoken_text="hi"))
        anchor = harness.anchor_ns(1)
        shown = [media.video_frame(anchor + k * FRAME_NS) for k in range(10)]
        # The turn's frames come in, cross-faded from the idle frame on screen, then as made.
        first = spoken(500)
        assert step(idle, shown[0]) < step(idle, first) / 2
        assert all(step(a, b) < step(idle, first) / 2 for a, b in itertools.pairwise(shown))
        assert [int(f[0, 0, 0]) for f in shown[FADE_FRAMES:]] == [
            150 + (500 + k) % 100 for k in range(FADE_FRAMES, 10)]
        assert harness.started == [1]
        # After the turn the loop goes on (fading in), on the stream's own frame clock.
        tick = round((anchor - start) / FRAME_NS) + 10 + FADE_FRAMES
        after = media.video_frame(start + tick * FRAME_NS)
        for _ in range(FADE_FRAMES):
            after = media.video_frame(start + tick * FRAME_NS)
        assert after is clip.frames[(tick + 7) % len(clip)]
        await asyncio.wait_for(harness.ended.wait(), 5)

    await run_media(harness, body)


async def test_a_silent_fmp4_stream_carries_the_loop_encoded_once() -> None:
    """The ``fmp4`` output encodes the loop once for all sessions: a silent stream takes
    its frames as they are from the loop's next keyframe on, encodes a turn's frames
    itself (from a keyframe), and goes back to the loop; all of it decodes as shown."""
    harness, cache = clip_harness("fmp4")
    media = harness.media
    stream = FMP4Stream(fps=FPS, size_px=SIZE, settings=OutputSettings())
    shown: list[np.ndarray] = []
    chunks: list[bytes] = []

    def send(tick: int, image: np.ndarray, loop: tuple[EncodedVideo, int] | None) -> None:
        chunks.append(stream.encode(tick, image, b"", loop))
        shown.append(image)

    async def body() -> None:
        clip = await wait_for_clip(cache)
        assert clip.video is not None and len(clip.video.frames) == len(clip)
        start = media.start_clock()
        for tick in range(60):  # silent: what the WebSocket's clock does
            image = media.video_frame(start + tick * FRAME_NS)
            send(tick, image, media.encoded_loop_frame(image))
        # Up to one fragment (0.5 s) is encoded before the loop's next keyframe.
        assert stream.loop_frames >= 60 - FADE_FRAMES - round(0.5 * FPS) - 1
        silent = stream.loop_frames
        for tick in range(60, 75):  # a turn: frames the stream encodes itself
            talking = swaying_face(tick).copy()  # (alike: no scene cut makes a keyframe)
            talking[30:34, 20:28] = 90
            send(tick, talking, None)
        assert stream.loop_frames == silent
        for tick in range(75, 110):  # the loop again, from its next keyframe
            index = (tick + 7) % len(clip)
            send(tick, clip.frames[index], (clip.video, index))
        assert stream.loop_frames >= silent + 35 - round(0.5 * FPS)

    await run_media(harness, body)
    chunks.append(stream.finish())
    with av.open(io.BytesIO(b"".join(chunks))) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == len(shown)
    worst = max(step(image, want) for image, want in zip(decoded, shown, strict=True))
    assert worst < 8  # mean absolute error per pixel: each frame is the one shown


async def test_a_silent_webrtc_track_sends_the_loop_encoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WebRTC (VP8, what browsers offer first): the loop's frames leave as the packets
    encoded once, aiortc's encoder starts again with a keyframe after them, and a VP8
    decoder shows every frame as it was meant, through the switches both ways."""
    from aiortc.codecs import get_encoder
    from aiortc.codecs.vpx import vp8_depayload
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    async def on_time(media: object, due_ns: int) -> int:
        return 0  # pacing is not what is tested: frames are asked for one after another

    monkeypatch.setattr("talkface.api.realtime.webrtc._sleep_until", on_time)
    harness, cache = clip_harness("webrtc")
    media = harness.media
    track = AvatarVideoTrack(media)
    track.codec = "vp8"
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000,
                                                payloadType=96))
    decoder = av.CodecContext.create("libvpx", "r")
    shown: list[np.ndarray] = []
    decoded: list[np.ndarray] = []

    async def send(ticks: range, talking: bool) -> None:
        for tick in ticks:
            if talking:  # a turn's frames (alike the loop's: no scene cut)
                image = swaying_face(tick).copy()
                image[30:34, 20:28] = 90
                monkeypatch.setattr(media, "video_frame", lambda at_ns, image=image: image)
            else:
                monkeypatch.undo()
                monkeypatch.setattr("talkface.api.realtime.webrtc._sleep_until", on_time)
                image = None
            out = await track.recv()
            shown.append(image if image is not None else media._last_image)
            if isinstance(out, av.Packet):
                payloads, _ = encoder.pack(out)
            else:  # what RTCRtpSender does with a frame (no keyframe asked by the browser)
                payloads, _ = encoder.encode(out, False)
            data = b"".join(vp8_depayload(p) for p in payloads)
            decoded.extend(f.to_ndarray(format="rgb24") for f in decoder.decode(av.Packet(data)))

    async def body() -> None:
        clip = await wait_for_clip(cache)
        assert clip.video is not None and clip.video.codec == "vp8"
        await send(range(0, 60), talking=False)
        # Up to one keyframe interval (1 s) is encoded before the loop's next keyframe.
        assert track.loop_frames >= 60 - FADE_FRAMES - FPS - 1
        silent = track.loop_frames
        await send(range(60, 75), talking=True)
        assert track.loop_frames == silent
        await send(range(75, 140), talking=False)
        assert track.loop_frames >= silent + 65 - FADE_FRAMES - FPS - 1

    await run_media(harness, body)
    assert len(decoded) == len(shown)
    worst = max(step(image, want) for image, want in zip(decoded, shown, strict=True))
    assert worst < 8  # mean absolute error per pixel: each frame is the one shown


async def test_a_loop_is_built_from_one_stretch_of_idle_motion() -> None:
    conversation = SwayingConversation()
    clip = await build_idle_clip(conversation.idle_frames, fps=FPS)
    assert conversation.idle_requests == [(0, round((MAX_LOOP_S + SEAM_FADE_S) * FPS))]
    assert MIN_LOOP_S * FPS <= len(clip) <= MAX_LOOP_S * FPS
    assert clip.size_bytes == len(clip) * SIZE * SIZE * 3
    assert not clip.jpegs  # only the jpeg output asks for JPEGs
