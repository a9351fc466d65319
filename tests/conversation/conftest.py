"""A runtime with every real model loaded once, shared by the conversation tests."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from talkface.audio import float32_to_pcm16
from talkface.config import load_settings
from talkface.runtime import Runtime

RATE = 16_000


@pytest.fixture(scope="session")
def chat_runtime() -> Iterator[Runtime]:
    """VAD, ASR (base), LLM (SmolLM2), TTS and the animator, loaded once.

    Engines re-attach to each test's event loop; the loaded models are shared.
    """
    runtime = Runtime(load_settings(animator={"size_px": 256}))

    async def load() -> None:
        await runtime.vad()
        await runtime.asr_engine()
        await runtime.llm_engine()
        await runtime.warm_up(voices=(runtime.resolve_voice(None, "en"),))

    asyncio.run(load())
    yield runtime
    asyncio.run(runtime.aclose())


@pytest.fixture(scope="session")
def write_wav(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, np.ndarray, int], Path]:
    """``write_wav(name, samples, rate=16000, channels=1)``: a WAV file of float samples."""
    folder = tmp_path_factory.mktemp("wav")

    def write(name: str, samples: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
        path = folder / name
        data = (
            np.repeat(samples[:, None], channels, axis=1).reshape(-1) if channels > 1 else samples
        )
        with wave.open(str(path), "wb") as handle:
            handle.setnchannels(channels)
            handle.setsampwidth(2)
            handle.setframerate(rate)
            handle.writeframes(float32_to_pcm16(data))
        return path

    return write
