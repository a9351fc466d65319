"""The clip cache: a whole phrase, spoken and animated, played back from disk.

What a clip is. Blinks and head motion come from a seed and the frame index, and a
sentence's first and last frames see the audio of its neighbours, so frames rendered
inside one session's timeline are not reusable by another. A clip is therefore a whole
``say`` text (a phrase of one or a few sentences) rendered as a turn of its own: on a
fresh timeline (first frame 0, silence before and after) with the fixed seed
``cache.clip_seed``. Played in a session it is moved to the session's next frame: its
messages are the clip's, with ``pts_ns``, frame ``index`` and ``turn_id`` shifted.

The trade-off: every session shows the same blinks and head motion for a cached phrase
(a session's own seed does not apply, so a session whose seed was fixed to another
value renders fresh), and a phrase said in the middle of a session starts from the
clip's head pose, not from where the previous turn left the head.

What identical means. Audio is kept as the PCM bytes and frames losslessly (each frame
minus the one before it, deflated), so a clip plays back the streams a fresh render of
the text with seed ``clip_seed`` yields: the same speech messages in order (byte-equal
PCM, equal phonemes, times, texts) and the same frames in order (equal indices and
times, pixel-equal images). Only how the two streams interleave may differ: in a fresh
render the TTS and the animator run side by side; a clip replays the order it was made in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from collections.abc import AsyncIterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from talkface.cache._keys import cache_key
from talkface.cache.store import DiskCache, Entry
from talkface.face.base import AnimatorSettings, frame_pts_ns
from talkface.messages import Emotion, Message, PhonemeSpan, Sentence, SpeechAudio, VideoFrame
from talkface.pipeline.speak import Emit, SpeakContext, SpokenTurn, speak_turn
from talkface.text.normalize import normalize_text
from talkface.trace import TurnTrace
from talkface.tts.base import VoiceInfo

_ZLIB_LEVEL = 1  # level 1 is within a few % of level 6 on frame deltas, and much faster


@dataclass(frozen=True, slots=True, kw_only=True)
class ClipPlan:
    """A turn that the clip cache can serve: the cache, the key, the seed it renders with."""

    cache: ClipCache
    key: str
    seed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Clip:
    """A rendered turn at frame 0: its messages in the order they were made."""

    messages: tuple[SpeechAudio | VideoFrame, ...]
    end_frame_index: int
    spoken_text: str
    audio_end_ns: int


CLIP_HIT_MARK = "clip_cache_hit"
"""The trace mark of a turn played from the clip cache (when the clip was found)."""


def turn_key_parts(pieces: Sequence[tuple[str, Emotion]], *, language: str, voice: VoiceInfo,
                   speed: float, avatar: str, animator: AnimatorSettings,
                   seed: int) -> dict[str, Any]:
    """Everything that shapes a turn's sound and frames, rendered from frame 0.

    ``avatar`` names the portrait: a prepared avatar's id, or what the video cache
    calls it (:func:`talkface.cache.videos.portrait_identity`).
    """
    return {
        "sentences": [[normalize_text(text, language), str(emotion)] for text, emotion in pieces],
        "language": language, "voice": voice.name, "voice_backend": voice.backend,
        "voice_model": voice.model_id, "speed": round(speed, 4), "avatar": avatar,
        "animator": animator.backend, "size_px": animator.size_px, "fps": animator.fps,
        "framing": str(animator.framing), "head_motion": animator.head_motion,
        "blinks_per_min": animator.blinks_per_min, "seed": seed,
    }


def clip_key(pieces: list[tuple[str, Emotion]], *, language: str, voice: VoiceInfo,
             speed: float, avatar_id: str, animator: AnimatorSettings, seed: int) -> str:
    """The key of a phrase's clip: everything that shapes its sound and its frames."""
    return cache_key("clip", turn_key_parts(pieces, language=language, voice=voice, speed=speed,
                                            avatar=avatar_id, animator=animator, seed=seed))


def encode_clip(clip: Clip) -> Entry:
    """The clip as one entry: PCM bytes, then the deflated frame deltas."""
    speeches = [m for m in clip.messages if isinstance(m, SpeechAudio)]
    frames = [m for m in clip.messages if isinstance(m, VideoFrame)]
    pcm = b"".join(s.pcm for s in speeches)
    packed = b""
    shape: list[int] = [0, 0, 0, 3]
    if frames:
        stack = np.stack([f.image for f in frames])
        shape = list(stack.shape)
        delta = stack.copy()
        delta[1:] -= stack[:-1]  # uint8 wraps: lossless, and static pixels become 0
        packed = zlib.compress(delta.tobytes(), _ZLIB_LEVEL)
    header: dict[str, Any] = {
        "order": "".join("s" if isinstance(m, SpeechAudio) else "f" for m in clip.messages),
        "speech": [{
            "samples": s.num_samples, "sample_rate_hz": s.sample_rate_hz, "pts_ns": s.pts_ns,
            "sentence_index": s.sentence_index, "text": s.text, "emotion": str(s.emotion),
            "phonemes": [[p.phoneme, p.start_ns, p.end_ns] for p in s.phonemes],
        } for s in speeches],
        "frames": [[f.index, f.pts_ns, f.speaking] for f in frames],
        "frame_shape": shape, "pcm_bytes": len(pcm),
        "end_frame_index": clip.end_frame_index, "spoken_text": clip.spoken_text,
        "audio_end_ns": clip.audio_end_ns,
    }
    return Entry(header, pcm + packed)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class StoredClip:
    """A clip read from disk; its frames are inflated one by one as they are played."""

    speech: tuple[SpeechAudio, ...]
    frames: tuple[tuple[int, int, bool], ...]  # index, pts_ns, speaking
    frame_shape: tuple[int, int, int]
    order: str
    packed_frames: bytes = field(repr=False)
    end_frame_index: int
    spoken_text: str
    audio_end_ns: int

    def messages(self) -> Iterator[SpeechAudio | VideoFrame]:
        """The clip's messages in the order they were made (blocking: a worker thread)."""
        inflate = zlib.decompressobj()
        pending = self.packed_frames
        frame_bytes = int(np.prod(self.frame_shape))
        previous: np.ndarray | None = None
        speech, frames = iter(self.speech), iter(self.frames)
        for kind in self.order:
            if kind == "s":
                yield next(speech)
                continue
            index, pts_ns, speaking = next(frames)
            raw = inflate.decompress(pending, frame_bytes)
            pending = inflate.unconsumed_tail
            image = np.frombuffer(raw, np.uint8).reshape(self.frame_shape).copy()
            if previous is not None:
                np.add(image, previous, out=image)  # uint8 wraps back: undoes the delta
            previous = image
            yield VideoFrame(image=image, pts_ns=pts_ns, index=index, speaking=speaking)


def decode_clip(entry: Entry) -> StoredClip | None:
    """The clip in ``entry`` (its speech decoded, its frames not yet), or None."""
    try:
        header = entry.header
        pcm_bytes = int(header["pcm_bytes"])
        shape = tuple(int(n) for n in header["frame_shape"])
        speech = []
        cursor = 0
        for s in header["speech"]:
            size = 2 * int(s["samples"])
            speech.append(SpeechAudio(
                pcm=entry.body[cursor : cursor + size], sample_rate_hz=s["sample_rate_hz"],
                pts_ns=s["pts_ns"], sentence_index=s["sentence_index"], text=s["text"],
                emotion=Emotion(s["emotion"]),
                phonemes=tuple(PhonemeSpan(phoneme=p, start_ns=a, end_ns=b)
                               for p, a, b in s["phonemes"]),
            ))
            cursor += size
        frames = tuple((int(i), int(t), bool(k)) for i, t, k in header["frames"])
        order = str(header["order"])
        if (cursor != pcm_bytes or len(shape) != 4 or shape[0] != len(frames)
                or order.count("s") != len(speech) or order.count("f") != len(frames)):
            return None
        return StoredClip(
            speech=tuple(speech), frames=frames, frame_shape=(shape[1], shape[2], shape[3]),
            order=order, packed_frames=entry.body[pcm_bytes:],
            end_frame_index=int(header["end_frame_index"]),
            spoken_text=str(header["spoken_text"]), audio_end_ns=int(header["audio_end_ns"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


class ClipCache:
    """Rendered phrases on disk, shared by every process that uses the folder.

    Args:
        store: the folder.
        seed: the seed every clip is rendered with.
        max_chars: longest text kept as a clip.
    """

    def __init__(self, store: DiskCache, *, seed: int, max_chars: int) -> None:
        self.store = store
        self.seed = seed
        self.max_chars = max_chars

    def plan(self, pieces: list[tuple[str, Emotion]], *, language: str, voice: VoiceInfo,
             speed: float, avatar_id: str, animator: AnimatorSettings,
             session_seed: int | None) -> ClipPlan | None:
        """The clip for a ``say`` of ``pieces``, or None when the turn renders fresh.

        A turn renders fresh when its text is longer than ``max_chars`` or the session's
        seed was fixed to another value than the clips'.
        """
        if session_seed not in (None, self.seed):
            return None
        if sum(len(text) for text, _ in pieces) > self.max_chars:
            return None
        key = clip_key(pieces, language=language, voice=voice, speed=speed,
                       avatar_id=avatar_id, animator=animator, seed=self.seed)
        return ClipPlan(cache=self, key=key, seed=self.seed)

    def lookup(self, key: str) -> StoredClip | None:
        """The stored clip (blocking read and check), or None."""
        entry = self.store.get(key)
        if entry is None:
            return None
        clip = decode_clip(entry)
        if clip is None:
            self.store.discard(key)
        return clip

    def keep(self, key: str, clip: Clip) -> None:
        """Store ``clip`` (blocking encode and write)."""
        self.store.put(key, encode_clip(clip))


def _shifted(message: SpeechAudio | VideoFrame, *, first_frame_index: int, fps: int,
             turn_id: int) -> Message:
    """A clip's message (made at frame 0) placed at ``first_frame_index``."""
    if isinstance(message, SpeechAudio):
        return dataclasses.replace(
            message, pts_ns=message.pts_ns + frame_pts_ns(first_frame_index, fps),
            turn_id=turn_id)
    index = message.index + first_frame_index
    return dataclasses.replace(message, index=index, pts_ns=frame_pts_ns(index, fps),
                               turn_id=turn_id)


async def speak_clip_turn(
    plan: ClipPlan | None,
    sentences: AsyncIterable[Sentence],
    ctx: SpeakContext,
    *,
    turn_id: int,
    first_frame_index: int,
    emit: Emit,
    trace: TurnTrace,
) -> SpokenTurn:
    """:func:`~talkface.pipeline.speak.speak_turn` for a phrase the clip cache serves.

    A stored clip is played (no TTS, no animator), and ``trace`` is marked
    :data:`CLIP_HIT_MARK`; otherwise the turn is rendered at frame 0 with the clip seed,
    emitted as it is made, and stored once it is complete.
    Without a ``plan`` this is just :func:`~talkface.pipeline.speak.speak_turn`.
    """
    if plan is None:
        return await speak_turn(sentences, ctx, turn_id=turn_id,
                                first_frame_index=first_frame_index, emit=emit, trace=trace)
    cache = plan.cache
    fps = ctx.fps
    offset_ns = frame_pts_ns(first_frame_index, fps)
    clip = await asyncio.to_thread(cache.lookup, plan.key)
    if clip is not None:
        trace.mark(CLIP_HIT_MARK)
        trace.mark("first_sentence")
        played = clip.messages()
        while (message := await asyncio.to_thread(next, played, None)) is not None:
            trace.mark("first_audio" if isinstance(message, SpeechAudio) else "first_video_frame")
            await emit(_shifted(message, first_frame_index=first_frame_index, fps=fps,
                                turn_id=turn_id))
        return SpokenTurn(end_frame_index=clip.end_frame_index + first_frame_index,
                          spoken_text=clip.spoken_text, audio_end_ns=clip.audio_end_ns + offset_ns)

    made: list[SpeechAudio | VideoFrame] = []

    async def keep_and_emit(message: Message) -> None:
        if isinstance(message, (SpeechAudio, VideoFrame)):
            made.append(dataclasses.replace(message, turn_id=0))
            message = _shifted(message, first_frame_index=first_frame_index, fps=fps,
                               turn_id=turn_id)
        await emit(message)

    spoken = await speak_turn(sentences, dataclasses.replace(ctx, seed=plan.seed),
                              turn_id=turn_id, first_frame_index=0, emit=keep_and_emit,
                              trace=trace)
    made_clip = Clip(messages=tuple(made), end_frame_index=spoken.end_frame_index,
                     spoken_text=spoken.spoken_text, audio_end_ns=spoken.audio_end_ns)
    await asyncio.to_thread(cache.keep, plan.key, made_clip)
    return SpokenTurn(end_frame_index=spoken.end_frame_index + first_frame_index,
                      spoken_text=spoken.spoken_text, audio_end_ns=spoken.audio_end_ns + offset_ns)
