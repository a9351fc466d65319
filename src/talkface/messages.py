"""The typed messages that flow between pipeline stages.

Data messages (:class:`AudioChunk`, :class:`Transcript`, :class:`TextDelta`,
:class:`Sentence`, :class:`SpeechAudio`, :class:`VideoFrame`, :class:`EndOfTurn`) travel
through bounded queues and are dropped when their turn is interrupted. System messages
(:class:`Interrupt`, :class:`Error`) bypass the queues and are never dropped.

Audio is always mono s16le PCM bytes with its ``sample_rate_hz``; video is an HxWx3 uint8
RGB array. Times are integer nanoseconds on the session's clock; the audio clock is the
master: a video frame carries the presentation time of the audio it shows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

NS_PER_S = 1_000_000_000
MIN_SAMPLE_RATE_HZ = 8_000
MAX_SAMPLE_RATE_HZ = 192_000


class Emotion(enum.StrEnum):
    """The expression the avatar shows while speaking a sentence."""

    NEUTRAL = "neutral"
    HAPPY = "happy"
    SERIOUS = "serious"


class _PCM:
    """Checks and measures for messages that carry mono s16le ``pcm`` at ``sample_rate_hz``.

    A mixin without slots of its own, so the slotted dataclasses that use it stay slotted.
    """

    __slots__ = ()
    pcm: bytes
    sample_rate_hz: int

    def __post_init__(self) -> None:
        if len(self.pcm) % 2:
            raise ValueError(f"s16le PCM must have an even number of bytes, got {len(self.pcm)}")
        if not MIN_SAMPLE_RATE_HZ <= self.sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise ValueError(
                f"sample_rate_hz={self.sample_rate_hz} is outside "
                f"{MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ}"
            )

    @property
    def num_samples(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration_ns(self) -> int:
        return self.num_samples * NS_PER_S // self.sample_rate_hz


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every pipeline message.

    Attributes:
        turn_id: the conversation turn this message belongs to; an interrupt drops every
            data message of the interrupted turn.
    """

    turn_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioChunk(_PCM, Message):
    """Microphone (or file) audio going into the pipeline.

    Attributes:
        pcm: mono s16le samples.
        sample_rate_hz: samples per second of ``pcm``.
        pts_ns: input-timeline time of the first sample.
    """

    pcm: bytes
    sample_rate_hz: int
    pts_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript(Message):
    """What the user said, partial while they speak and final at the end of speech."""

    text: str
    is_final: bool
    language: str | None = None
    end_pts_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta(Message):
    """A piece of the reply as the LLM streams it (one or a few tokens)."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Sentence(Message):
    """A sentence or clause of the reply, ready to be spoken.

    Attributes:
        text: the normalised text to speak.
        index: position within the turn, from 0.
        language: BCP-47-ish language code ("en", "zh").
        emotion: expression to show while it is spoken.
    """

    text: str
    index: int
    language: str = "en"
    emotion: Emotion = Emotion.NEUTRAL

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("a Sentence needs non-blank text")


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonemeSpan:
    """One phoneme's place in a :class:`SpeechAudio`, relative to its first sample."""

    phoneme: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechAudio(_PCM, Message):
    """Synthesised speech for one sentence.

    Attributes:
        pcm: mono s16le samples.
        sample_rate_hz: samples per second of ``pcm``.
        pts_ns: output-timeline time of the first sample (set by the session).
        sentence_index: index of the :class:`Sentence` this speaks.
        text: the sentence text (for captions).
        phonemes: phoneme timings when the TTS backend provides them, else empty.
        emotion: expression to show while it plays.
    """

    pcm: bytes
    sample_rate_hz: int
    pts_ns: int = 0
    sentence_index: int = 0
    text: str = ""
    phonemes: tuple[PhonemeSpan, ...] = ()
    emotion: Emotion = Emotion.NEUTRAL


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class VideoFrame(Message):
    """One avatar video frame.

    Attributes:
        image: HxWx3 uint8 RGB.
        pts_ns: presentation time: the output-timeline time of the audio it shows.
        index: frame number on the output timeline, from 0.
        speaking: True while the frame shows speech, False for idle frames.
    """

    image: np.ndarray = field(repr=False)
    pts_ns: int
    index: int
    speaking: bool = True

    def __post_init__(self) -> None:
        image = self.image
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"a VideoFrame image must be HxWx3 uint8, got {image.dtype} {image.shape}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class EndOfTurn(Message):
    """The last message of a turn's output.

    Attributes:
        interrupted: True when the turn was cut short by a barge-in or a cancel.
        spoken_text: the part of the reply that was actually spoken.
    """

    interrupted: bool = False
    spoken_text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interrupt(Message):
    """Cancel everything downstream for ``turn_id`` (barge-in, client cancel)."""

    reason: str = "barge_in"


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """An error to report to the client; the session goes on when it can.

    Attributes:
        code: the error's stable identifier (``"bad_input"``, ``"overloaded"``...).
        message: what was wrong and what to do.
        retryable: trying again later may succeed.
        retry_after_s: when to try again (None: no advice).
    """

    code: str
    message: str
    retryable: bool = False
    retry_after_s: float | None = None


SYSTEM_MESSAGES = (Interrupt, Error)
