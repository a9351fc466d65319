"""Fakes for unit tests of orchestration: real ABCs, no models.

They subclass the real backend ABCs, so they go through the same engines, timeouts and
error mapping as the real thing. They are for testing how sessions and engines are
wired; every feature also has tests with the real models.

A test selects a fake the way a deployment selects a backend: it registers the fakes
under the name ``"fake"`` and names them in the settings::

    register_fakes(monkeypatch.setitem)
    runtime = Runtime(fake_settings(llm={"max_reply_tokens": 8}))

(:func:`fake_settings` names every stage's fake; a section given replaces its keys, so
``fake_settings(llm={"backend": "llama-cpp"})`` fakes every stage but the LLM.)

The user's speech is then scripted as loud audio (a tone) and their silence as zeros:
:class:`FakeVAD` hears speech where the audio is loud, and :class:`FakeASR` hears one
word of its :attr:`~FakeASR.text` per :attr:`~FakeASR.seconds_per_word` of loud audio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self

import numpy as np

from talkface.asr.base import ASRBackend, ASRCapabilities, ASRRequest, ASRSettings
from talkface.audio import float32_to_pcm16
from talkface.config import Settings, load_settings
from talkface.face.base import (
    ANIMATOR_AUDIO_RATE_HZ,
    AnimationRequest,
    AnimatorBackend,
    AnimatorCapabilities,
    AnimatorSettings,
)
from talkface.llm.base import (
    GenerationRequest,
    GenerationStats,
    LLMBackend,
    LLMCapabilities,
    LLMSettings,
)
from talkface.messages import SpeechAudio, Transcript
from talkface.tts.base import (
    SynthesisRequest,
    TTSBackend,
    TTSCapabilities,
    TTSSettings,
    VoiceInfo,
)
from talkface.vad.base import VAD_SAMPLE_RATE_HZ, VADBackend, VADSettings, VADStream

FAKE_VOICE = VoiceInfo(
    name="fake", backend="fake", language="en", model_id="fake", description="a test tone"
)


class FakeTTS(TTSBackend):
    """Speaks every sentence as a tone lasting ``seconds_per_char`` per character."""

    name = "fake"
    capabilities = TTSCapabilities(phoneme_timings=False, batching=True, one_model_per_voice=False)
    sample_rate_hz = 16_000
    seconds_per_char = 0.02

    def __init__(self, settings: TTSSettings, voice: VoiceInfo) -> None:
        super().__init__(settings, voice)
        self.batches: list[list[str]] = []
        self.fail_on: str | None = None
        self.release = threading.Event()
        self.release.set()

    @classmethod
    def list_voices(cls) -> list[VoiceInfo]:
        """The one fake voice."""
        return [FAKE_VOICE]

    @classmethod
    def load(cls, settings: TTSSettings, voice: VoiceInfo) -> Self:
        """A fake TTS speaking ``voice``; there is nothing to load."""
        return cls(settings, voice)

    def _synthesize_batch(self, requests: list[SynthesisRequest]) -> list[SpeechAudio]:
        self.release.wait()
        self.batches.append([r.text for r in requests])
        results = []
        for request in requests:
            if self.fail_on is not None and self.fail_on in request.text:
                raise RuntimeError(f"fake TTS refuses {self.fail_on!r}")
            samples = int(len(request.text) * self.seconds_per_char * self.sample_rate_hz)
            t = np.arange(samples) / self.sample_rate_hz
            tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            results.append(
                SpeechAudio(
                    pcm=float32_to_pcm16(tone),
                    sample_rate_hz=self.sample_rate_hz,
                    sentence_index=request.sentence_index,
                    text=request.text,
                    emotion=request.emotion,
                )
            )
        return results


class FakeAnimator(AnimatorBackend):
    """Draws frames whose brightness is the loudness of the audio they show."""

    name = "fake"
    capabilities = AnimatorCapabilities(batching=True, uses_phonemes=False, gpu=False)

    def __init__(self, settings: AnimatorSettings) -> None:
        super().__init__(settings)
        self.requests: list[AnimationRequest] = []

    @classmethod
    def load(cls, settings: AnimatorSettings) -> Self:
        """A fake animator with ``settings``; there is nothing to load."""
        return cls(settings)

    def _prepare_avatar(self, image: np.ndarray) -> str:
        return "fake-avatar"

    def _animate_batch(self, requests: list[AnimationRequest]) -> list[list[np.ndarray]]:
        self.requests.extend(requests)
        size = self.settings.size_px
        out = []
        for request in requests:
            frames = []
            for k in range(request.num_frames):
                start_ns = (request.first_frame_index + k) * 1_000_000_000 // request.fps
                i = (start_ns - request.audio_start_ns) * ANIMATOR_AUDIO_RATE_HZ // 1_000_000_000
                frame_samples = ANIMATOR_AUDIO_RATE_HZ // request.fps
                window = request.audio[max(0, i) : max(0, i) + frame_samples]
                level = float(np.sqrt(np.mean(window**2))) if window.size else 0.0
                frames.append(np.full((size, size, 3), min(255, int(level * 600)), np.uint8))
            out.append(frames)
        return out


class FakeLLM(LLMBackend):
    """Answers every prompt with :attr:`reply`, streamed word by word."""

    name = "fake"
    capabilities = LLMCapabilities(batching=True, prefix_reuse=False)
    reply = "This is the answer of a fake model, long enough to take a while to say."

    def __init__(self, settings: LLMSettings) -> None:
        super().__init__(settings)
        self.prompts: list[str] = []

    @classmethod
    def load(cls, settings: LLMSettings) -> Self:
        """A fake LLM with ``settings``; there is nothing to load."""
        return cls(settings)

    def count_tokens(self, text: str) -> int:
        """Words, standing in for tokens."""
        return len(text.split())

    async def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        stats = []
        for request in requests:
            self.prompts.append(request.messages[-1].content)
            words = self.reply.split(" ")[: request.max_tokens]  # a word per token
            for index, word in enumerate(words):
                if request.stream.cancelled:
                    break
                request.stream.put(word if index == 0 else " " + word)
            request.stream.close()
            stats.append(GenerationStats(
                prompt_tokens=sum(self.count_tokens(m.content) for m in request.messages),
                completion_tokens=len(words),
            ))
        return stats


SPEECH_MEAN_ABS = 0.05
"""Audio whose mean absolute amplitude (float, full scale 1.0) is above this, -26 dBFS,
is speech to :class:`FakeVAD` and :class:`FakeASR`; a 0.3 tone is, zeros are not."""


def _is_loud(blocks: np.ndarray) -> np.ndarray:
    """One bool per row of ``blocks`` (float32 samples): is that row speech?"""
    loud: np.ndarray = np.abs(blocks).mean(axis=1) > SPEECH_MEAN_ABS
    return loud


class FakeVADStream(VADStream):
    """Scores each window 1.0 when it is loud (:data:`SPEECH_MEAN_ABS`), else 0.0.

    It keeps no state from window to window, so the speech the endpointer reports starts
    and ends exactly where the test's loud audio does, to within one 32 ms window.
    """

    def __init__(self) -> None:
        self.windows_seen = 0
        """Windows scored so far (all resets included)."""

    def speech_probabilities(self, windows: np.ndarray) -> np.ndarray:
        """1.0 for each loud window, 0.0 for each quiet one."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(
                f"VAD windows must have shape (n, {self.window_samples}), got {windows.shape}"
            )
        self.windows_seen += len(windows)
        return _is_loud(windows).astype(np.float32)

    def reset(self) -> None:
        """Nothing to forget: every window is scored on its own."""


class FakeVAD(VADBackend):
    """Hears speech wherever the audio is loud: a deterministic VAD for unit tests.

    Feed loud chunks (a 0.3 tone) where the user speaks and zeros where they are silent;
    the :class:`~talkface.vad.endpoint.Endpointer` over it then applies the real
    thresholds, hangover and padding of :class:`~talkface.vad.base.VADSettings`.
    """

    name = "fake"

    def __init__(self, settings: VADSettings) -> None:
        super().__init__(settings)
        self.streams: list[FakeVADStream] = []
        """Every stream handed out, in order (one per session)."""

    @classmethod
    def load(cls, settings: VADSettings) -> Self:
        """A fake VAD with ``settings``; there is nothing to load."""
        return cls(settings)

    def new_stream(self) -> FakeVADStream:
        """A fresh stream, also kept in :attr:`streams`."""
        stream = FakeVADStream()
        self.streams.append(stream)
        return stream


class FakeASR(ASRBackend):
    """Hears :attr:`text`, one word per :attr:`seconds_per_word` of loud audio.

    A request's transcript is the first ``round(loud_s / seconds_per_word)`` words of
    :attr:`text` (split on spaces), where ``loud_s`` counts the 10 ms blocks of its audio
    that are loud (:data:`SPEECH_MEAN_ABS`): a partial pass over the first 0.8 s of
    speech hears two words, and once the speech has lasted ``len(words) *
    seconds_per_word`` every pass hears the whole text. Silence is empty text, as the
    real backends transcribe it.

    The answer depends on the audio alone, never on how many passes came before, so a
    speculative pass that is repeated or cancelled changes nothing. To script what the
    user says next, set :attr:`text` on the instance between turns. Clear
    :attr:`release` to hold every pass in the model thread until the test sets it.
    """

    name = "fake"
    capabilities = ASRCapabilities(batching=True, partials=True, gpu=False)
    text = "what is the weather like today"
    """What the user says (instances may set their own)."""
    seconds_per_word = 0.4
    """Loud audio per word heard, in seconds (150 words a minute; one word outlasts the
    VAD's default ``min_speech_ms``)."""
    block_samples = VAD_SAMPLE_RATE_HZ // 100
    """Loudness is judged per block of this many samples (10 ms)."""

    def __init__(self, settings: ASRSettings) -> None:
        super().__init__(settings)
        self.batches: list[list[ASRRequest]] = []
        """The requests of each model call, in the order they ran."""
        self.release = threading.Event()
        self.release.set()

    @classmethod
    def load(cls, settings: ASRSettings) -> Self:
        """A fake ASR with ``settings``; there is nothing to load."""
        return cls(settings)

    @property
    def languages(self) -> tuple[str, ...]:
        """English and Chinese, like the default Whisper model."""
        return ("en", "zh")

    def heard_words(self, audio: np.ndarray) -> int:
        """How many words of :attr:`text` ``audio`` (16 kHz float32) holds."""
        blocks = len(audio) // self.block_samples
        shaped = audio[: blocks * self.block_samples].reshape(blocks, self.block_samples)
        loud_s = int(_is_loud(shaped).sum()) * self.block_samples / VAD_SAMPLE_RATE_HZ
        return int(loud_s / self.seconds_per_word + 0.5)

    def _transcribe_batch(self, requests: list[ASRRequest]) -> list[Transcript]:
        self.release.wait()
        self.batches.append(list(requests))
        words = self.text.split()
        return [
            Transcript(
                text=" ".join(words[: self.heard_words(request.audio)]),
                is_final=request.is_final,
                language=request.language or self.settings.language or "en",
                end_pts_ns=request.end_pts_ns,
                turn_id=request.turn_id,
            )
            for request in requests
        ]


def register_fakes(setitem: Callable[[Any, str, Any], None]) -> None:
    """Register every fake under the backend name ``"fake"`` in its stage's registry.

    Pass ``monkeypatch.setitem``, so the registries are restored after the test; then
    name ``"fake"`` in the settings of the stages the test fakes.
    """
    from talkface.asr.registry import ASR_BACKENDS
    from talkface.face.registry import ANIMATOR_BACKENDS
    from talkface.llm.registry import LLM_BACKENDS
    from talkface.registry import BackendEntry
    from talkface.tts.registry import TTS_BACKENDS
    from talkface.vad.registry import VAD_BACKENDS

    for table, kind in ((VAD_BACKENDS, "FakeVAD"), (ASR_BACKENDS, "FakeASR"),
                        (LLM_BACKENDS, "FakeLLM"), (TTS_BACKENDS, "FakeTTS"),
                        (ANIMATOR_BACKENDS, "FakeAnimator")):
        setitem(table, "fake", BackendEntry(f"talkface.testing:{kind}", "test", ""))



FAKE_SECTIONS: dict[str, dict[str, object]] = {
    "vad": {"backend": "fake"}, "asr": {"backend": "fake"}, "llm": {"backend": "fake"},
    "tts": {"voice_en": "fake"}, "animator": {"backend": "fake", "size_px": 128},
}
"""The settings that select every stage's fake (128-px frames: small and quick)."""


def fake_settings(**sections: dict[str, object]) -> Settings:
    """Settings whose stages are all fakes (after :func:`register_fakes`).

    Each keyword is a settings section; its keys replace the fakes' keys of that
    section, so a test can keep one real stage or tune a fake one.
    """
    merged: dict[str, Any] = {**FAKE_SECTIONS}
    for name, keys in sections.items():
        merged[name] = {**FAKE_SECTIONS.get(name, {}), **keys}
    return load_settings(None, **merged)
