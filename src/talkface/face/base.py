"""The animator stage's contract: settings, requests and the backend ABC.

An animator turns speech audio into video frames of a prepared avatar. Requests are
stateless: everything that makes frame N look the way it does (its audio with some
context either side, the phonemes, the emotion, the session's random seed for blinks and
head motion) travels in the request, so any replica can render any chunk and batches can
mix sessions freely.

To add an animator backend, write one module with an :class:`AnimatorBackend` subclass
and add one line to :data:`talkface.face.registry.ANIMATOR_BACKENDS`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
from pydantic import Field

from talkface.engines import BatchingSettings, ModelThread, StageSettings
from talkface.messages import NS_PER_S, Emotion, PhonemeSpan

ANIMATOR_AUDIO_RATE_HZ = 16_000
"""Sample rate of the audio in :class:`AnimationRequest`."""


class Framing(enum.StrEnum):
    """How much of the portrait the video shows around the face.

    ``face``: a close-up, the face about three fifths of the frame's height; ``bust``
    (the default): head and shoulders, the face about two fifths of it; ``full``: as much
    of the photo as fits in the square frame (the face at least a fifth of its width).
    """

    FACE = "face"
    BUST = "bust"
    FULL = "full"


class AnimatorSettings(StageSettings):
    """Settings of the animator stage.

    Attributes:
        backend: registry name ("landmark-warp").
        size_px: output frames are size_px x size_px.
        framing: how closely the frames frame the face (see :class:`Framing`); chosen
            once when a portrait is prepared.
        fps: frames per second.
        head_motion: scale of idle and speaking head motion (0 keeps the head still).
        blinks_per_min: mean blink rate.
        timeout_s: longest one batch may take.
        cache_dir: where prepared avatars are kept (default: ``$TALKFACE_CACHE_DIR`` or
            ``~/.cache/talkface``).
    """

    backend: str = "landmark-warp"
    size_px: int = Field(512, ge=128, le=2048)
    framing: Framing = Framing.BUST
    fps: int = Field(25, ge=5, le=60)
    head_motion: float = Field(1.0, ge=0.0, le=3.0)
    blinks_per_min: float = Field(14.0, ge=0.0, le=60.0)
    timeout_s: float = Field(30.0, gt=0)
    cache_dir: Path | None = None
    batching: BatchingSettings = Field(
        default_factory=lambda: BatchingSettings(
            max_batch_size=8, max_wait_ms=2.0, max_queue_size=256
        )
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AnimatorCapabilities:
    """What an animator backend can do.

    Attributes:
        batching: it gains from rendering several sessions' chunks in one call.
        uses_phonemes: it shapes the mouth from phoneme timings when given them.
        gpu: it needs a GPU.
    """

    batching: bool
    uses_phonemes: bool
    gpu: bool


def frame_pts_ns(frame_index: int, fps: int) -> int:
    """Presentation time of frame ``frame_index`` at ``fps``."""
    return frame_index * NS_PER_S // fps


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class AnimationRequest:
    """Render frames ``first_frame_index .. first_frame_index + num_frames - 1``.

    Attributes:
        avatar_id: a prepared avatar (see :meth:`AnimatorBackend.prepare_avatar`).
        first_frame_index: frame number on the session's output timeline.
        num_frames: how many frames to render.
        fps: frame rate of the timeline.
        audio: float32 mono speech at :data:`ANIMATOR_AUDIO_RATE_HZ`, starting at
            ``audio_start_ns`` on the timeline; it should reach a little before the first
            frame and after the last (context), and is silence where it does not.
        audio_start_ns: timeline time of ``audio[0]``.
        phonemes: phoneme spans with timeline times (may be empty).
        emotion: expression for these frames.
        previous_emotion: expression before ``emotion_since_ns`` (for a smooth change).
        emotion_since_ns: when ``emotion`` began.
        seed: the session's seed, so blinks and head motion differ between sessions but
            are the same every time a chunk is rendered.
    """

    avatar_id: str
    first_frame_index: int
    num_frames: int
    fps: int
    audio: np.ndarray = field(repr=False)
    audio_start_ns: int
    phonemes: tuple[PhonemeSpan, ...] = ()
    emotion: Emotion = Emotion.NEUTRAL
    previous_emotion: Emotion = Emotion.NEUTRAL
    emotion_since_ns: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        if self.first_frame_index < 0:
            raise ValueError("first_frame_index must not be negative")
        if self.audio.dtype != np.float32 or self.audio.ndim != 1:
            raise ValueError("audio must be 1-D float32")


class AnimatorBackend(ABC):
    """A loaded animator: prepares avatars and renders frames.

    Subclasses implement :meth:`load`, :meth:`_prepare_avatar` and :meth:`_animate_batch`;
    the public async methods add the worker thread, timeout and error mapping.
    """

    name: ClassVar[str]
    capabilities: ClassVar[AnimatorCapabilities]

    def __init__(self, settings: AnimatorSettings) -> None:
        self.settings = settings
        self._thread = ModelThread(f"animator-{self.name}")

    @classmethod
    @abstractmethod
    def load(cls, settings: AnimatorSettings) -> Self:
        """Load the models (blocking; call at warm-up)."""

    async def prepare_avatar(self, image: np.ndarray) -> str:
        """Prepare a portrait (RGB array) once and return its avatar id.

        Raises:
            BadInput: no usable face in the portrait.
        """
        return await self._thread.run(self._prepare_avatar, image)

    def prepare_avatar_sync(self, image: np.ndarray) -> str:
        """:meth:`prepare_avatar` for synchronous code (scripts, benchmarks)."""
        return self._thread.call(self._prepare_avatar, image)

    @abstractmethod
    def _prepare_avatar(self, image: np.ndarray) -> str: ...

    async def animate_batch(self, requests: list[AnimationRequest]) -> list[list[np.ndarray]]:
        """Render each request's frames (HxWx3 uint8 RGB), in order.

        Raises:
            BackendError: rendering failed or took longer than ``timeout_s``.
        """
        return await self._thread.run_limited(
            f"the {self.name} animator", self.settings.timeout_s, self._animate_batch, requests
        )

    def animate_sync(self, request: AnimationRequest) -> list[np.ndarray]:
        """Render one request synchronously in the model thread (benchmarks, tests)."""
        return self._thread.call(self._animate_batch, [request])[0]

    @abstractmethod
    def _animate_batch(self, requests: list[AnimationRequest]) -> list[list[np.ndarray]]:
        """Render each request; runs in the model's worker thread."""

    async def aclose(self) -> None:
        """Release the worker thread."""
        self._thread.shutdown()
