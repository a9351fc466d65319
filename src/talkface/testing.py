"""Fakes for unit tests of orchestration: real ABCs, no models.

They subclass the real backend ABCs, so they go through the same engines, timeouts and
error mapping as the real thing. They are for testing how sessions and engines are
wired; every feature also has tests with the real models.
"""

from __future__ import annotations

import threading
from typing import Self

import numpy as np

from talkface.audio import float32_to_pcm16
from talkface.face.base import (
    AUDIO_RATE_HZ,
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
from talkface.messages import SpeechAudio
from talkface.tts.base import (
    SynthesisRequest,
    TTSBackend,
    TTSCapabilities,
    TTSSettings,
    VoiceInfo,
)

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
        return [FAKE_VOICE]

    @classmethod
    def load(cls, settings: TTSSettings, voice: VoiceInfo) -> Self:
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
                i = (start_ns - request.audio_start_ns) * AUDIO_RATE_HZ // 1_000_000_000
                window = request.audio[max(0, i) : max(0, i) + AUDIO_RATE_HZ // request.fps]
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
        return cls(settings)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        stats = []
        for request in requests:
            self.prompts.append(request.messages[-1].content)
            words = self.reply.split(" ")
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
