"""The VAD stage's contract: settings, the backend ABC and its per-session stream.

A :class:`VADBackend` is one loaded model shared by every session; each session asks it
for a :class:`VADStream`, which holds that session's recurrent model state. The
:class:`~talkface.vad.endpoint.Endpointer` turns a stream's per-window speech
probabilities into speech start / end events.

To add a VAD backend, write one module with a :class:`VADBackend` subclass and add one
line to :data:`talkface.vad.registry.VAD_BACKENDS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from talkface.engines import BatchingSettings, ModelThread, StageSettings

VAD_SAMPLE_RATE_HZ = 16_000
"""Sample rate every VAD backend works at; the endpointer resamples to it."""


class VADSettings(StageSettings):
    """Settings of the VAD stage.

    Attributes:
        backend: registry name ("silero").
        threshold: a window whose speech probability reaches this is speech.
        neg_threshold: a window below this is silence; between the two, nothing changes
            (hysteresis). None means ``threshold - 0.15``, as silero-vad does.
        min_silence_ms: the end-of-speech hangover: speech ends after this much silence.
            400 ms: people pause 200-300 ms inside a sentence and at commas, so less
            cuts them off; every millisecond more is added to every reply's latency.
            The final ASR pass starts during the hangover, so it is not wasted.
        speech_pad_ms: audio kept after the last speech window of an utterance, and
            (plus 100 ms, see :mod:`talkface.vad.endpoint`) before its first: word onsets
            and trailing consonants score low. Kept short because the final ASR pass
            can only start once it has arrived.
        min_speech_ms: an utterance with less speech than this (a cough, a click, a
            lip smack) is discarded at its end instead of being transcribed.
        max_speech_s: an utterance is cut after this long even if the user is still
            speaking, so that each fits in one Whisper window (28 s at most).
        num_threads: CPU threads of the model (1: a 32 ms window takes ~0.25 ms).
        timeout_s: longest one model call may take.
        batching: the VAD engine's limits. Each session's chunks are scored in order;
            chunks of several sessions arriving together are scored in one call. No
            wait: a chunk is scored as soon as the model is free (every millisecond here
            is a millisecond of reply latency).
    """

    model_config = ConfigDict(extra="forbid")

    backend: str = "silero"
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    neg_threshold: float | None = Field(None, ge=0.0, lt=1.0)
    min_silence_ms: float = Field(400.0, ge=32.0, le=5_000.0)
    speech_pad_ms: float = Field(100.0, ge=0.0, le=1_000.0)
    min_speech_ms: float = Field(250.0, ge=0.0, le=5_000.0)
    max_speech_s: float = Field(28.0, ge=1.0, le=28.0)
    num_threads: int = Field(1, ge=1, le=16)
    timeout_s: float = Field(5.0, gt=0)
    batching: BatchingSettings = Field(
        default_factory=lambda: BatchingSettings(
            max_batch_size=16, max_wait_ms=0.0, max_queue_size=512
        )
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.neg_threshold is not None and self.neg_threshold > self.threshold:
            raise ValueError(
                f"neg_threshold ({self.neg_threshold}) must not be above threshold "
                f"({self.threshold})"
            )
        if self.speech_pad_ms > self.min_silence_ms:
            raise ValueError(
                f"speech_pad_ms ({self.speech_pad_ms:g}) must not exceed min_silence_ms "
                f"({self.min_silence_ms:g}): the padding after speech is taken from the "
                "hangover"
            )
        return self

    @property
    def silence_threshold(self) -> float:
        """The probability under which a window counts as silence."""
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(0.01, self.threshold - 0.15)


class VADStream(ABC):
    """One session's view of a shared VAD model: the model's state between windows."""

    window_samples: ClassVar[int] = 512
    """Samples (at :data:`VAD_SAMPLE_RATE_HZ`) in one window: 32 ms."""

    @abstractmethod
    def speech_probabilities(self, windows: np.ndarray) -> np.ndarray:
        """Speech probability of each window, in order, carrying the state across them.

        Args:
            windows: float32 array of shape ``(n, window_samples)`` at 16 kHz, the
                windows that follow the last ones this stream saw.

        Returns:
            float32 array of shape ``(n,)`` in [0, 1].
        """

    @abstractmethod
    def reset(self) -> None:
        """Forget the audio seen so far (a new conversation on the same stream)."""


@dataclass(frozen=True, slots=True, eq=False)
class VADRequest:
    """Score ``windows`` (float32 ``(n, window_samples)`` at 16 kHz) on ``stream``."""

    stream: VADStream
    windows: np.ndarray


class VADBackend(ABC):
    """A loaded voice-activity model, shared by all sessions of a process.

    Constructors never load; :meth:`load` does. Streams from :meth:`new_stream` are
    independent: each carries its own recurrent state, so many sessions can share one
    model. A stream is not thread-safe; the model itself is.
    """

    name: ClassVar[str]

    def __init__(self, settings: VADSettings) -> None:
        self.settings = settings
        self.thread = ModelThread(f"vad-{self.name}")
        """Worker thread for large chunks (see :meth:`Endpointer.apush`)."""

    @classmethod
    @abstractmethod
    def load(cls, settings: VADSettings) -> Self:
        """Load the model (blocking; call at warm-up).

        Raises:
            BackendUnavailable: a package or model file is missing.
        """

    @abstractmethod
    def new_stream(self) -> VADStream:
        """A fresh per-session stream over this model."""

    async def probabilities_batch(self, requests: list[VADRequest]) -> list[np.ndarray]:
        """Score several sessions' windows in one trip to the model thread (the VAD
        engine's batch function); one array of probabilities per request, in order."""

        def score() -> list[np.ndarray]:
            return [r.stream.speech_probabilities(r.windows) for r in requests]

        return await self.thread.run(score)

    async def aclose(self) -> None:
        """Release the worker thread."""
        self.thread.shutdown()
