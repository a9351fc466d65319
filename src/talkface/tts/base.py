"""The TTS stage's contract: settings, voices, requests and the backend ABC.

To add a TTS backend, write one module with a :class:`TTSBackend` subclass and add one
line to :data:`talkface.tts.registry.TTS_BACKENDS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Self

from pydantic import Field

from talkface.engines import BatchingSettings, ModelThread, StageSettings
from talkface.errors import BadInput
from talkface.messages import Emotion, SpeechAudio

MAX_SENTENCE_CHARS = 2_000
DEFAULT_ZH_VOICES = ("zh-baker", "espeak-zh")
"""Chinese voices in order of preference when ``voice_zh`` is not set."""


class TTSSettings(StageSettings):
    """Settings of the TTS stage.

    Attributes:
        voice_en: the voice used for English when none is named.
        voice_zh: the voice used for Chinese when none is named; None picks the first
            installed of :data:`DEFAULT_ZH_VOICES` (the neural zh-baker, else espeak-zh).
        speed: speaking rate; 1.0 is the voice's natural rate.
        timeout_s: longest one synthesis batch may take.
        num_threads: inference threads per loaded voice (1 is best on a shared small CPU).
    """

    voice_en: str = "joe"
    voice_zh: str | None = None
    speed: float = Field(1.0, gt=0.25, le=4.0)
    timeout_s: float = Field(30.0, gt=0)
    num_threads: int = Field(1, ge=1, le=64)
    batching: BatchingSettings = Field(
        default_factory=lambda: BatchingSettings(
            max_batch_size=4, max_wait_ms=2.0, max_queue_size=256
        )
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceInfo:
    """A voice a user can pick with ``--voice``.

    Attributes:
        name: what the user types ("joe", "espeak-zh").
        backend: registry name of the backend that speaks it.
        language: its main language ("en", "zh").
        model_id: what the backend needs to find the voice (a path, an espeak voice).
        description: one line for ``talkface voices``.
        license: one line on the terms of use of the voice (its model and training data),
            shown by ``talkface voices``.
    """

    name: str
    backend: str
    language: str
    model_id: str
    description: str
    license: str = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class TTSCapabilities:
    """What a TTS backend can do.

    Attributes:
        phoneme_timings: it returns phoneme spans with the audio.
        batching: it gains from running several requests in one call.
        one_model_per_voice: each voice is a separately loaded model (piper); False when
            one loaded backend speaks all its voices (espeak-ng).
    """

    phoneme_timings: bool
    batching: bool
    one_model_per_voice: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthesisRequest:
    """One sentence to speak.

    Attributes:
        text: normalised text of one sentence or clause.
        voice: the voice to speak it with.
        sentence_index: copied to the resulting :class:`SpeechAudio`.
        emotion: copied to the resulting :class:`SpeechAudio`.
        speed: speaking rate, 1.0 natural.
    """

    text: str
    voice: VoiceInfo
    sentence_index: int = 0
    emotion: Emotion = Emotion.NEUTRAL
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise BadInput("nothing to speak: the sentence is empty")
        if len(self.text) > MAX_SENTENCE_CHARS:
            raise BadInput(
                f"a sentence of {len(self.text)} characters is too long for one TTS call "
                f"(limit {MAX_SENTENCE_CHARS}); split it first"
            )


class TTSBackend(ABC):
    """A loaded text-to-speech model.

    Subclasses implement :meth:`load`, :meth:`list_voices` and :meth:`_synthesize_batch`;
    the public :meth:`synthesize_batch` adds the worker thread, the timeout and the error
    mapping once for all of them.
    """

    name: ClassVar[str]
    capabilities: ClassVar[TTSCapabilities]

    def __init__(self, settings: TTSSettings, voice: VoiceInfo) -> None:
        self.settings = settings
        self.voice = voice
        self._thread = ModelThread(f"tts-{self.name}")

    @classmethod
    @abstractmethod
    def list_voices(cls) -> list[VoiceInfo]:
        """The voices this backend can speak on this machine, without loading a model."""

    @classmethod
    @abstractmethod
    def load(cls, settings: TTSSettings, voice: VoiceInfo) -> Self:
        """Load the model that speaks ``voice`` (blocking; call at warm-up).

        Raises:
            BackendUnavailable: a package or model file is missing.
        """

    async def synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SpeechAudio]:
        """Speak each request; one :class:`SpeechAudio` per request, in order.

        Raises:
            BackendError: synthesis failed or took longer than ``timeout_s``.
        """
        return await self._thread.run_limited(
            f"TTS voice {self.voice.name!r}", self.settings.timeout_s, self._synthesize_batch,
            requests,
        )

    def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        """Speak one request synchronously in the model thread (for scripts and tests)."""
        return self._thread.call(self._synthesize_batch, [request])[0]

    @abstractmethod
    def _synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SpeechAudio]:
        """Speak each request; runs in the model's worker thread."""

    async def aclose(self) -> None:
        """Release the model thread."""
        self._thread.shutdown()
