"""Rendering one job to an MP4: a text the avatar speaks, or an audio file it lip-syncs.

Text goes through :meth:`talkface.session.Session.say`, exactly as ``talkface say``
renders it, and through the same caches: a text whose MP4 is in the video cache is
copied from it (no engine call, no encoding), a phrase in the clip cache is played from
it, and a finished text video whose seed was known is kept in the video cache. A job
given no seed renders with ``cache.clip_seed``, so that a warmed phrase is served from
the caches and a re-run looks the same. Audio is cut into one-second pieces laid end to
end on the timeline, and the animator draws the frames for it as the pipeline would for
synthesised speech. Frames and sound are written by
:class:`~talkface.output.mp4.MP4Writer` in the encoder thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from talkface.audio import float32_to_pcm16
from talkface.audio_file import TARGET_RATE_HZ, load_audio_file
from talkface.cache import (
    CLIP_HIT_MARK,
    VIDEO_CACHE_NAME,
    VideoRequest,
    avatar_identity,
    open_caches,
)
from talkface.engines import ModelThread
from talkface.face.base import frame_pts_ns
from talkface.messages import NS_PER_S, SpeechAudio, VideoFrame
from talkface.output.mp4 import MP4Writer
from talkface.pipeline.frames import FrameScheduler
from talkface.priority import yield_to_live_turns
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions
from talkface.text.policy import choose_voice, speech_text
from talkface.text.sentences import split_sentences
from talkface.trace import TurnTrace

ProgressCallback = Callable[[float], None]
_AUDIO_PIECE_S = 1.0
_FALLBACK_S_PER_CHAR = 0.07  # speaking time per character before any sentence is spoken


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderSpec:
    """What one job renders (stored with the job, so a restart renders the same thing).

    Attributes:
        kind: "text" (spoken by a voice) or "audio" (an uploaded recording).
        text: the text, for "text" jobs.
        voice: voice name (None: the language's default).
        language: language of the text (resolved at submission).
        avatar_id: a prepared avatar (None: the bundled portrait).
        speed: speaking rate.
        seed: blinks and head motion (None: ``cache.clip_seed``, so that a re-run
            looks the same and a phrase warmed by ``talkface cache warm`` is served
            from the caches; another seed is served only from what it rendered before).
        input_suffix: file suffix of the uploaded audio, for "audio" jobs.
        max_audio_s: longest audio accepted.
    """

    kind: Literal["text", "audio"]
    text: str | None = None
    voice: str | None = None
    language: str | None = None
    avatar_id: str | None = None
    speed: float = 1.0
    seed: int | None = None
    input_suffix: str | None = None
    max_audio_s: float = 120.0

    def to_dict(self) -> dict[str, Any]:
        """The spec as stored with its job (JSON-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderSpec:
        """A stored spec (keys it does not know, from another version, are left out)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class RenderedVideo:
    """A finished render: its length, the text turn's latency trace, and what served it.

    Attributes:
        cache: "video" (the MP4 was copied from the video cache; no trace then),
            "clip" (played from the clip cache, then encoded) or None (rendered).
    """

    duration_s: float
    trace: TurnTrace | None
    cache: str | None = None


async def render_job(runtime: Runtime, spec: RenderSpec, output: Path, *,
                     input_path: Path | None, encoder: ModelThread,
                     on_progress: ProgressCallback) -> RenderedVideo:
    """Render ``spec`` to ``output`` (written under a temporary name, then moved there).

    Raises:
        BadInput: the text, voice, avatar or audio cannot be used.
        BackendError, Overloaded: from the engines.
    """
    settings = runtime.settings
    videos = (await asyncio.to_thread(open_caches, settings.cache)).videos
    video_key = None
    if spec.kind == "text" and videos is not None:
        video_key = videos.key_for(await _video_request(runtime, spec),
                                   animator=settings.animator, output=settings.output)
        stored = None if video_key is None else await asyncio.to_thread(videos.lookup, video_key)
        if stored is not None:
            written = await asyncio.to_thread(videos.copy_to, stored, output)
            return RenderedVideo(duration_s=written.duration_s, trace=None,
                                 cache=VIDEO_CACHE_NAME)
    # Opening the container is file and codec work: in the encoder thread, as is the rest.
    writer = await encoder.run(functools.partial(
        MP4Writer, output, fps=settings.animator.fps, size_px=settings.animator.size_px,
        settings=settings.output))
    try:
        if spec.kind == "text":
            trace = await _speak_text(runtime, spec, writer, encoder, on_progress)
        else:
            assert input_path is not None, "an audio job needs its input file"
            await _lip_sync_audio(runtime, spec, input_path, writer, encoder, on_progress)
            trace = None
        video = await encoder.run(writer.close)
    except BaseException:
        # In the encoder thread, after any write still running there, without blocking
        # the loop; shielded, so a second cancellation cannot skip it.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(encoder.run(writer.abort))
        raise
    if videos is not None and video_key is not None:
        await asyncio.to_thread(videos.keep, video_key, video)
    served = "clip" if trace is not None and CLIP_HIT_MARK in trace.marks_ns else None
    return RenderedVideo(duration_s=video.duration_s, trace=trace, cache=served)


def job_seed(runtime: Runtime, spec: RenderSpec) -> int:
    """The seed ``spec`` renders with: its own, else the clips' (fixed, so re-runs match)."""
    return spec.seed if spec.seed is not None else runtime.settings.cache.clip_seed


async def _video_request(runtime: Runtime, spec: RenderSpec) -> VideoRequest:
    """What decides a text job's MP4, resolved by the policy :meth:`Session.say` applies."""
    assert spec.text is not None
    checked = speech_text(spec.text, language=spec.language,
                          limit_chars=runtime.settings.limits.max_text_chars)
    return VideoRequest(
        pieces=tuple(checked.sentences()), language=checked.language,
        voice=choose_voice(runtime.resolve_voice, spec.voice, checked.language),
        speed=spec.speed, portrait=await asyncio.to_thread(avatar_identity, spec.avatar_id),
        seed=job_seed(runtime, spec),
    )


async def _speak_text(runtime: Runtime, spec: RenderSpec, writer: MP4Writer,
                      encoder: ModelThread, on_progress: ProgressCallback) -> TurnTrace | None:
    assert spec.text is not None
    session = Session(runtime, SessionOptions(
        voice=spec.voice, language=spec.language, avatar_id=spec.avatar_id, speed=spec.speed,
        seed=job_seed(runtime, spec),
    ))
    estimate = _SpeechEstimate(split_sentences(spec.text, spec.language))
    async for message in session.say(spec.text):
        if isinstance(message, SpeechAudio):
            await _encode(encoder, writer.write_speech, message)
            estimate.add(message)
        elif isinstance(message, VideoFrame):
            await _encode(encoder, writer.write_frame, message)
            on_progress(estimate.fraction((message.index + 1) / writer.fps))
    return session.last_trace


MessageT = TypeVar("MessageT", SpeechAudio, VideoFrame)


async def _encode(encoder: ModelThread, write: Callable[[MessageT], None],
                  message: MessageT) -> None:
    """Hand ``message`` to the encoder thread, once no live turn is racing to its first
    frame (a render job gives way to conversations: :mod:`talkface.priority`)."""
    await yield_to_live_turns()
    await encoder.run(write, message)


class _SpeechEstimate:
    """How far along a text render is, from the speech made so far.

    The video's length is known only once every sentence is spoken; until then it is
    estimated from the speaking time per character of the sentences spoken so far.
    """

    def __init__(self, sentences: list[str]) -> None:
        self._chars = [len(s) for s in sentences]
        self._spoken_chars = 0
        self._spoken_s = 0.0

    def add(self, speech: SpeechAudio) -> None:
        if 0 <= speech.sentence_index < len(self._chars):
            self._spoken_chars += self._chars[speech.sentence_index]
        self._spoken_s += speech.duration_ns / NS_PER_S

    def fraction(self, video_s: float) -> float:
        per_char = (self._spoken_s / self._spoken_chars if self._spoken_chars
                    else _FALLBACK_S_PER_CHAR)
        total_s = self._spoken_s + max(0, sum(self._chars) - self._spoken_chars) * per_char
        return min(0.99, video_s / total_s) if total_s > 0 else 0.0


async def _lip_sync_audio(runtime: Runtime, spec: RenderSpec, input_path: Path, writer: MP4Writer,
                          encoder: ModelThread, on_progress: ProgressCallback) -> None:
    audio, _ = await asyncio.to_thread(load_audio_file, input_path, max_duration_s=spec.max_audio_s)
    fps = writer.fps
    animator = await runtime.animator_engine()
    scheduler = FrameScheduler(
        avatar_id=spec.avatar_id or await runtime.default_avatar(), fps=fps,
        first_frame_index=0, seed=job_seed(runtime, spec),
    )
    total_frames = max(1, math.ceil(len(audio) / TARGET_RATE_HZ * fps))
    piece = int(_AUDIO_PIECE_S * TARGET_RATE_HZ)

    async def draw_ready() -> None:
        while (plan := scheduler.next_plan()) is not None:
            request = scheduler.take(plan)
            images = await animator.submit(request)
            for offset, image in enumerate(images):
                index = request.first_frame_index + offset
                await _encode(encoder, writer.write_frame, VideoFrame(
                    image=image, pts_ns=frame_pts_ns(index, fps), index=index,
                ))
            on_progress(min(0.99, scheduler.next_frame_index / total_frames))

    for start in range(0, len(audio), piece):
        speech = SpeechAudio(
            pcm=float32_to_pcm16(audio[start : start + piece]),
            sample_rate_hz=TARGET_RATE_HZ,
            pts_ns=start * NS_PER_S // TARGET_RATE_HZ,
            sentence_index=start // piece,
        )
        await _encode(encoder, writer.write_speech, speech)
        scheduler.add_speech(speech)
        await draw_ready()
    scheduler.finish()
    await draw_ready()

