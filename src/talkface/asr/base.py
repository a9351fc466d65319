"""The ASR stage's contract: settings, requests and the backend ABC.

To add an ASR backend, write one module with an :class:`ASRBackend` subclass and add one
line to :data:`talkface.asr.registry.ASR_BACKENDS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
from pydantic import Field, model_validator

from talkface.audio import pcm16_to_float32, resample
from talkface.engines import BatchingSettings, ModelThread, StageSettings
from talkface.errors import BadInput, PayloadTooLarge
from talkface.messages import AudioChunk, Transcript

ASR_SAMPLE_RATE_HZ = 16_000
"""Sample rate of the audio in an :class:`ASRRequest`."""


class ASRSettings(StageSettings):
    """Settings of the ASR stage.

    Attributes:
        backend: registry name ("faster-whisper").
        model: ``"base"`` (multilingual, English and Chinese), ``"tiny.en"`` (English
            only, ~3x faster) or the path of a CTranslate2 Whisper directory.
        language: the language users speak ("en", "zh"); None detects it per utterance.
        languages: when detecting, choose among these only (empty: any language Whisper
            knows). Short utterances are often mistaken for a related language; a
            talkface deployment speaks a known few.
        beam_size: 1 is greedy decoding (fastest); more is slower and rarely better on
            short turns.
        num_threads: CPU threads of the model (1 is best on a shared small CPU).
        timeout_s: longest one transcription batch may take.
        max_utterance_s: longest audio one request may carry; longer is refused.
        partial_interval_ms: how often a streaming transcriber re-transcribes the growing
            utterance while the user speaks; 0 turns partial transcripts off (saves CPU;
            the final transcript is then computed during the end-of-speech hangover).
        no_speech_threshold: with ``log_prob_threshold``, when Whisper's no-speech
            probability is above this and its confidence below that, the audio is
            taken as silence or noise and the transcript is empty.
        log_prob_threshold: mean log-probability per token under which a result with a
            high no-speech probability is dropped.
        cache_dir: where the ``base`` model is assembled (default: ``$TALKFACE_CACHE_DIR``
            or ``~/.cache/talkface``).
    """

    backend: str = "faster-whisper"
    model: str = "base"
    language: str | None = None
    languages: tuple[str, ...] = ("en", "zh")
    beam_size: int = Field(1, ge=1, le=10)
    num_threads: int = Field(1, ge=1, le=64)
    timeout_s: float = Field(30.0, gt=0)
    max_utterance_s: float = Field(120.0, gt=0, le=3600)
    partial_interval_ms: float = Field(1000.0, ge=0, le=60_000)
    no_speech_threshold: float = Field(0.6, ge=0, le=1)
    log_prob_threshold: float = Field(-1.0, le=0)
    cache_dir: Path | None = None
    batching: BatchingSettings = Field(
        default_factory=lambda: BatchingSettings(
            max_batch_size=4, max_wait_ms=5.0, max_queue_size=64
        )
    )

    @model_validator(mode="after")
    def _check_languages(self) -> Self:
        if self.language is not None and not self.language.strip():
            raise ValueError("language must be a language code such as 'en', or None")
        if self.partial_interval_ms and self.partial_interval_ms < 100:
            raise ValueError(
                "partial_interval_ms must be 0 (off) or at least 100: each partial is a "
                "full model pass"
            )
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class ASRCapabilities:
    """What an ASR backend can do.

    Attributes:
        batching: it gains from transcribing several requests in one call.
        partials: a pass over a short, growing utterance is cheap enough to repeat while
            the user speaks.
        gpu: it needs a GPU.
    """

    batching: bool
    partials: bool
    gpu: bool


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ASRRequest:
    """Audio to transcribe: one utterance, or the part of it heard so far.

    Attributes:
        audio: float32 mono samples at :data:`ASR_SAMPLE_RATE_HZ`.
        language: the language spoken, or None to detect it.
        is_final: False for a partial pass while the user still speaks.
        turn_id: copied to the :class:`Transcript`.
        end_pts_ns: input-timeline time of the end of ``audio``; copied to the transcript.
    """

    audio: np.ndarray = field(repr=False)
    language: str | None = None
    is_final: bool = True
    turn_id: int = 0
    end_pts_ns: int = 0

    def __post_init__(self) -> None:
        audio = self.audio
        if not isinstance(audio, np.ndarray) or audio.dtype != np.float32 or audio.ndim != 1:
            raise BadInput(
                "ASR audio must be a 1-D float32 array of 16 kHz mono samples; "
                "convert it with ASRRequest.from_chunk or talkface.audio.resample"
            )

    @property
    def duration_s(self) -> float:
        """Length of ``audio``, in seconds."""
        return len(self.audio) / ASR_SAMPLE_RATE_HZ

    @classmethod
    def from_chunk(
        cls, chunk: AudioChunk, *, language: str | None = None, is_final: bool = True
    ) -> ASRRequest:
        """A request for an :class:`AudioChunk` of any sample rate (resampled to 16 kHz)."""
        audio = resample(
            pcm16_to_float32(chunk.pcm), chunk.sample_rate_hz, ASR_SAMPLE_RATE_HZ
        ).astype(np.float32, copy=False)
        return cls(
            audio=audio,
            language=language,
            is_final=is_final,
            turn_id=chunk.turn_id,
            end_pts_ns=chunk.pts_ns + chunk.duration_ns,
        )


class ASRBackend(ABC):
    """A loaded speech recogniser.

    Subclasses implement :meth:`load` and :meth:`_transcribe_batch`; the public
    :meth:`transcribe_batch` adds the worker thread, the length check, the timeout and
    the error mapping once for all of them.
    """

    name: ClassVar[str]
    capabilities: ClassVar[ASRCapabilities]

    def __init__(self, settings: ASRSettings) -> None:
        self.settings = settings
        self._thread = ModelThread(f"asr-{self.name}")

    @classmethod
    @abstractmethod
    def load(cls, settings: ASRSettings) -> Self:
        """Load the model (blocking; call at warm-up).

        Raises:
            BackendUnavailable: a package or model file is missing.
            ConfigError: a setting names a model or language that does not exist.
        """

    @property
    @abstractmethod
    def languages(self) -> tuple[str, ...]:
        """The language codes this loaded model can transcribe."""

    def check_language(self, language: str | None) -> None:
        """Refuse a language hint this model cannot transcribe.

        Raises:
            BadInput: the model does not know ``language``.
        """
        if language is not None and language not in self.languages:
            raise BadInput(
                f"the ASR model {self.settings.model!r} cannot transcribe language "
                f"{language!r}; it knows: {', '.join(self.languages[:12])}"
                + ("..." if len(self.languages) > 12 else "")
            )

    async def transcribe_batch(self, requests: list[ASRRequest]) -> list[Transcript]:
        """Transcribe each request; one :class:`Transcript` per request, in order.

        A request with no speech in it (silence, noise) gets a transcript with empty text.

        Raises:
            PayloadTooLarge: a request is longer than ``max_utterance_s``.
            BackendError: the model failed or took longer than ``timeout_s``.
        """
        for request in requests:
            self.check_request(request)
        return await self._thread.run_limited(
            f"ASR model {self.settings.model!r}", self.settings.timeout_s,
            self._transcribe_batch, requests,
            hint="; the box may be overloaded, try again",
        )

    def transcribe(self, request: ASRRequest) -> Transcript:
        """Transcribe one request synchronously in the model thread (scripts, tests)."""
        self.check_request(request)
        return self._thread.call(self._transcribe_batch, [request])[0]

    def check_request(self, request: ASRRequest) -> None:
        """Refuse a request this backend would refuse, before it joins a batch.

        An engine batch fails as a whole, so a session checks its own requests first
        and one bad request never fails other sessions' requests.

        Raises:
            PayloadTooLarge: the audio is longer than ``max_utterance_s``.
            BadInput: the request's language hint is one the model cannot transcribe.
        """
        self.check_language(request.language)
        if request.duration_s > self.settings.max_utterance_s:
            raise PayloadTooLarge(
                f"{request.duration_s:.0f} s of audio is longer than one spoken turn may be "
                f"(asr.max_utterance_s={self.settings.max_utterance_s:g}); "
                "send a shorter recording or split it"
            )

    @abstractmethod
    def _transcribe_batch(self, requests: list[ASRRequest]) -> list[Transcript]:
        """Transcribe each request; runs in the model's worker thread."""

    async def aclose(self) -> None:
        """Release the model thread."""
        self._thread.shutdown()
