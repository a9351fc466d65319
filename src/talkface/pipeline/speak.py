"""Speaking a turn: sentences → speech (TTS engine) → frames (animator engine).

Two tasks run side by side, joined by a small bounded queue: the synthesiser speaks
sentence ``i + 1`` while the animator draws sentence ``i``, and each sentence is spoken
as soon as it exists (the sentences may still be coming from the LLM). Speech is laid
end to end on the session's output timeline; frames follow the audio clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from talkface.engines import Engine
from talkface.face.base import AnimationRequest, frame_pts_ns
from talkface.messages import Message, Sentence, SpeechAudio, VideoFrame
from talkface.pipeline.frames import FrameScheduler, animator_samples
from talkface.text.normalize import normalize_text
from talkface.trace import TurnTrace
from talkface.tts.base import SynthesisRequest, VoiceInfo

if TYPE_CHECKING:
    from talkface.cache.tts import TTSCache

Emit = Callable[[Message], Awaitable[None]]
VoiceChooser = Callable[
    [Sentence], Awaitable[tuple[VoiceInfo, Engine[SynthesisRequest, SpeechAudio]]]
]
"""The voice (and its engine) that speaks a sentence: fixed, or by the sentence's language."""
_SPEECH_QUEUE_SIZE = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakContext:
    """What a session lends a turn: its engines, voices, avatar and timeline."""

    voice_for: VoiceChooser
    animator: Engine[AnimationRequest, list[np.ndarray]]
    avatar_id: str
    fps: int
    seed: int
    speed: float = 1.0
    tts_cache: TTSCache | None = None
    """Speech of sentences spoken before (None: every sentence goes to the TTS engine)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpokenTurn:
    """What a turn put on the timeline.

    Attributes:
        end_frame_index: one past the turn's last frame.
        spoken_text: the sentences that were spoken, joined.
        audio_end_ns: where the turn's speech ends on the timeline.
    """

    end_frame_index: int
    spoken_text: str
    audio_end_ns: int


async def synthesize_sentence(sentence: Sentence, voice_for: VoiceChooser, *, speed: float,
                              tts_cache: TTSCache | None, trace: TurnTrace
                              ) -> SpeechAudio | None:
    """``sentence``'s speech, from ``tts_cache`` when it holds it (None: nothing to say).

    Every spoken sentence goes through here, so a sentence spoken ahead of time (a FAQ's
    answer at start-up) has the cache key a turn will look up.
    """
    text = normalize_text(sentence.text, sentence.language)
    if not text.strip():
        return None
    voice, tts = await voice_for(sentence)
    request = SynthesisRequest(text=text, voice=voice, sentence_index=sentence.index,
                               emotion=sentence.emotion, speed=speed)
    if tts_cache is None:
        return await tts.submit(request)
    return await tts_cache.synthesize(tts, request, trace)


async def speak_turn(
    sentences: AsyncIterable[Sentence],
    ctx: SpeakContext,
    *,
    turn_id: int,
    first_frame_index: int,
    emit: Emit,
    trace: TurnTrace,
) -> SpokenTurn:
    """Speak and animate ``sentences``; every message goes to ``emit`` as it is made."""
    speech_queue: asyncio.Queue[SpeechAudio | None] = asyncio.Queue(_SPEECH_QUEUE_SIZE)
    spoken: list[str] = []
    scheduler = FrameScheduler(
        avatar_id=ctx.avatar_id, fps=ctx.fps, first_frame_index=first_frame_index, seed=ctx.seed
    )

    async def synthesise() -> None:
        cursor_ns = frame_pts_ns(first_frame_index, ctx.fps)
        async for sentence in sentences:
            trace.mark("first_sentence")
            speech = await synthesize_sentence(sentence, ctx.voice_for, speed=ctx.speed,
                                               tts_cache=ctx.tts_cache, trace=trace)
            if speech is None:
                continue
            speech = dataclasses.replace(speech, pts_ns=cursor_ns, turn_id=turn_id)
            cursor_ns += speech.duration_ns
            trace.mark("first_audio")
            spoken.append(sentence.text)
            await emit(speech)
            await speech_queue.put(speech)
        # Only on success: on failure the task group cancels the animator anyway.
        await speech_queue.put(None)

    async def animate() -> None:
        while True:
            speech = await speech_queue.get()
            if speech is None:
                scheduler.finish()
            else:
                # Resampling a sentence is CPU work: off the loop every session shares.
                scheduler.add_speech(speech, await asyncio.to_thread(animator_samples, speech))
            while (plan := scheduler.next_plan()) is not None:
                request = scheduler.take(plan)
                images = await ctx.animator.submit(request)
                for offset, image in enumerate(images):
                    index = request.first_frame_index + offset
                    trace.mark("first_video_frame")
                    await emit(
                        VideoFrame(
                            image=image,
                            pts_ns=frame_pts_ns(index, ctx.fps),
                            index=index,
                            turn_id=turn_id,
                        )
                    )
            if speech is None:
                return

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(synthesise(), name=f"tts-turn-{turn_id}")
            group.create_task(animate(), name=f"animate-turn-{turn_id}")
    except BaseExceptionGroup as failed:
        # Callers handle one error (a BackendError, a BadInput), not a task group's bundle.
        raise first_error(failed) from None
    return SpokenTurn(
        end_frame_index=scheduler.next_frame_index,
        spoken_text=" ".join(spoken),
        audio_end_ns=scheduler.audio_end_ns,
    )


def first_error(error: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
