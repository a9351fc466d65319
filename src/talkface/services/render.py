"""Rendering one job to an MP4: a text the avatar speaks, or an audio file it lip-syncs.

Text goes through :meth:`talkface.session.Session.say`, exactly as ``talkface say``
renders it. Audio is cut into one-second pieces laid end to end on the timeline, and the
animator draws the frames for it as the pipeline would for synthesised speech. Frames
and sound are written by :class:`~talkface.output.mp4.MP4Writer` in the encoder thread.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from talkface.audio import float32_to_pcm16
from talkface.audio_file import TARGET_RATE_HZ, load_audio_file
from talkface.engines import ModelThread
from talkface.face.base import frame_pts_ns
from talkface.messages import NS_PER_S, SpeechAudio, VideoFrame
from talkface.output.mp4 import MP4Writer
from talkface.pipeline.frames import FrameScheduler
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions
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
        seed: blinks and head motion (fixed at submission, so a re-run looks the same).
        input_suffix: file suffix of the uploaded audio, for "audio" jobs.
        max_audio_s: longest audio accepted.
    """

    kind: Literal["text", "audio"]
    text: str | None = None
    voice: str | None = None
    language: str | None = None
    avatar_id: str | None = None
    speed: float = 1.0
    seed: int = 0
    input_suffix: str | None = None
    max_audio_s: float = 120.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderSpec:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class RenderedVideo:
    """A finished render: its length, and the text turn's latency trace."""

    duration_s: float
    trace: TurnTrace | None


async def render_job(runtime: Runtime, spec: RenderSpec, output: Path, *,
                     input_path: Path | None, encoder: ModelThread,
                     on_progress: ProgressCallback) -> RenderedVideo:
    """Render ``spec`` to ``output`` (written under a temporary name, then moved there).

    Raises:
        BadInput: the text, voice, avatar or audio cannot be used.
        BackendError, Overloaded: from the engines.
    """
    settings = runtime.settings
    writer = MP4Writer(output, fps=settings.animator.fps, size_px=settings.animator.size_px,
                       settings=settings.output)
    try:
        if spec.kind == "text":
            trace = await _speak_text(runtime, spec, writer, encoder, on_progress)
        else:
            assert input_path is not None, "an audio job needs its input file"
            await _lip_sync_audio(runtime, spec, input_path, writer, encoder, on_progress)
            trace = None
        video = await encoder.run(writer.close)
    except BaseException:
        # In the encoder thread, after any write still running there.
        encoder.call(writer.abort)
        raise
    return RenderedVideo(duration_s=video.duration_s, trace=trace)


async def _speak_text(runtime: Runtime, spec: RenderSpec, writer: MP4Writer,
                      encoder: ModelThread, on_progress: ProgressCallback) -> TurnTrace | None:
    assert spec.text is not None
    session = Session(runtime, SessionOptions(
        voice=spec.voice, language=spec.language, avatar_id=spec.avatar_id, speed=spec.speed,
        seed=spec.seed,
    ))
    estimate = _SpeechEstimate(split_sentences(spec.text, spec.language))
    async for message in session.say(spec.text):
        if isinstance(message, SpeechAudio):
            await encoder.run(writer.write_speech, message)
            estimate.add(message)
        elif isinstance(message, VideoFrame):
            await encoder.run(writer.write_frame, message)
            on_progress(estimate.fraction((message.index + 1) / writer.fps))
    return session.last_trace


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
        first_frame_index=0, seed=spec.seed,
    )
    total_frames = max(1, math.ceil(len(audio) / TARGET_RATE_HZ * fps))
    piece = int(_AUDIO_PIECE_S * TARGET_RATE_HZ)

    async def draw_ready() -> None:
        while (plan := scheduler.next_plan()) is not None:
            request = scheduler.take(plan)
            images = await animator.submit(request)
            for offset, image in enumerate(images):
                index = request.first_frame_index + offset
                await encoder.run(writer.write_frame, VideoFrame(
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
        await encoder.run(writer.write_speech, speech)
        scheduler.add_speech(speech)
        await draw_ready()
    scheduler.finish()
    await draw_ready()

