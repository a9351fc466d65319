"""Cutting a turn's speech audio into animation requests on the frame grid.

Speech arrives sentence by sentence, each with its place (``pts_ns``) on the output
timeline. Frame ``k`` is shown at ``k / fps`` and shows the audio of the next frame
interval, so it can be rendered once the audio reaches a little past its end (the
mouth's smoothing looks one frame ahead). The first request of a turn is kept short so
the first frame comes out early; later ones are longer, which costs fewer round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkface.audio import pcm16_at
from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest, frame_pts_ns
from talkface.messages import NS_PER_S, Emotion, PhonemeSpan, SpeechAudio

FIRST_CHUNK_FRAMES = 2
CHUNK_FRAMES = 8
_CONTEXT_NS = 80_000_000  # audio before the first frame and after the last, for smoothing
_KEEP_BEFORE_NS = 200_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class FramePlan:
    """Which frames the scheduler hands out next."""

    first_frame_index: int
    num_frames: int


def animator_samples(speech: SpeechAudio) -> np.ndarray:
    """A sentence's audio as the animator takes it: float32 at
    :data:`~talkface.face.base.ANIMATOR_AUDIO_RATE_HZ`."""
    return pcm16_at(speech.pcm, speech.sample_rate_hz, ANIMATOR_AUDIO_RATE_HZ)


class FrameScheduler:
    """Turns a stream of :class:`SpeechAudio` into :class:`AnimationRequest`s.

    Args:
        avatar_id: the avatar to animate.
        fps: frame rate.
        first_frame_index: the turn's first frame on the session timeline.
        seed: the session's seed (blinks, head motion).
    """

    def __init__(self, *, avatar_id: str, fps: int, first_frame_index: int, seed: int) -> None:
        self.avatar_id = avatar_id
        self.fps = fps
        self.seed = seed
        self.next_frame_index = first_frame_index
        self._first_chunk = True
        self._audio = np.zeros(0, np.float32)
        self._audio_start_ns = frame_pts_ns(first_frame_index, fps)
        self._audio_end_ns = self._audio_start_ns  # end of the speech known so far
        self._phonemes: list[PhonemeSpan] = []
        self._emotion = Emotion.NEUTRAL
        self._previous_emotion = Emotion.NEUTRAL
        self._emotion_since_ns = self._audio_start_ns
        self._finished = False

    @property
    def audio_end_ns(self) -> int:
        """Time just after the last audio added, in ns."""
        return self._audio_end_ns

    def add_speech(self, speech: SpeechAudio, samples: np.ndarray | None = None) -> None:
        """Append one sentence's audio at its ``pts_ns`` (gaps become silence).

        Args:
            speech: the sentence.
            samples: its audio already converted by :func:`animator_samples` (in a worker
                thread, on a live path); None converts it here.
        """
        if samples is None:
            samples = animator_samples(speech)
        offset = (speech.pts_ns - self._audio_start_ns) * ANIMATOR_AUDIO_RATE_HZ // NS_PER_S
        offset = max(0, int(offset))
        needed = offset + len(samples)
        if needed > len(self._audio):
            self._audio = np.concatenate(
                [self._audio, np.zeros(needed - len(self._audio), np.float32)]
            )
        self._audio[offset : offset + len(samples)] = samples
        self._audio_end_ns = max(self._audio_end_ns, speech.pts_ns + speech.duration_ns)
        self._phonemes.extend(
            PhonemeSpan(phoneme=p.phoneme, start_ns=p.start_ns + speech.pts_ns,
                        end_ns=p.end_ns + speech.pts_ns)
            for p in speech.phonemes
        )
        if speech.emotion != self._emotion:
            self._previous_emotion, self._emotion = self._emotion, speech.emotion
            self._emotion_since_ns = speech.pts_ns

    def finish(self) -> None:
        """No more speech in this turn: the remaining frames may be rendered."""
        self._finished = True

    @property
    def end_frame_index(self) -> int:
        """One past the last frame the turn needs (its audio fully covered)."""
        frame_ns = NS_PER_S / self.fps
        return max(self.next_frame_index, int(np.ceil(self._audio_end_ns / frame_ns - 1e-6)))

    def next_plan(self) -> FramePlan | None:
        """The next frames that can be rendered now, or None when none can."""
        step_ns = NS_PER_S // self.fps
        if self._finished:
            ready_end = self.end_frame_index
        else:
            # Frame k needs audio up to its own end plus one frame of look-ahead.
            ready_end = int((self._audio_end_ns - 2 * step_ns) // step_ns) + 1
        available = ready_end - self.next_frame_index
        if available <= 0:
            return None
        limit = FIRST_CHUNK_FRAMES if self._first_chunk else CHUNK_FRAMES
        return FramePlan(first_frame_index=self.next_frame_index, num_frames=min(available, limit))

    def take(self, plan: FramePlan) -> AnimationRequest:
        """The request for ``plan``; the scheduler moves past those frames."""
        first_ns = frame_pts_ns(plan.first_frame_index, self.fps)
        last_ns = frame_pts_ns(plan.first_frame_index + plan.num_frames, self.fps)
        start_ns = first_ns - _CONTEXT_NS
        lo = int((start_ns - self._audio_start_ns) * ANIMATOR_AUDIO_RATE_HZ // NS_PER_S)
        hi = int((last_ns + _CONTEXT_NS - self._audio_start_ns) * ANIMATOR_AUDIO_RATE_HZ
                 // NS_PER_S)
        audio = np.zeros(hi - lo, np.float32)
        src_lo, src_hi = max(lo, 0), min(hi, len(self._audio))
        if src_hi > src_lo:
            audio[src_lo - lo : src_hi - lo] = self._audio[src_lo:src_hi]
        phonemes = tuple(
            p
            for p in self._phonemes
            if p.end_ns >= start_ns and p.start_ns <= last_ns + _CONTEXT_NS
        )
        request = AnimationRequest(
            avatar_id=self.avatar_id,
            first_frame_index=plan.first_frame_index,
            num_frames=plan.num_frames,
            fps=self.fps,
            audio=audio,
            audio_start_ns=start_ns,
            phonemes=phonemes,
            emotion=self._emotion,
            previous_emotion=self._previous_emotion,
            emotion_since_ns=self._emotion_since_ns,
            seed=self.seed,
        )
        self.next_frame_index = plan.first_frame_index + plan.num_frames
        self._first_chunk = False
        self._forget_before(frame_pts_ns(self.next_frame_index, self.fps) - _KEEP_BEFORE_NS)
        return request

    def _forget_before(self, time_ns: int) -> None:
        """Drop audio and phonemes no future frame needs, so long turns stay small."""
        drop = int((time_ns - self._audio_start_ns) * ANIMATOR_AUDIO_RATE_HZ // NS_PER_S)
        if drop > ANIMATOR_AUDIO_RATE_HZ:  # in steps of at least a second
            self._audio = self._audio[drop:]
            self._audio_start_ns += drop * NS_PER_S // ANIMATOR_AUDIO_RATE_HZ
            self._phonemes = [p for p in self._phonemes if p.end_ns >= self._audio_start_ns]
