"""ASR test fixtures: the Whisper models, loaded once (speech fixtures: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def asr_base():  # type: ignore[no-untyped-def]
    """The default multilingual model (English and Chinese)."""
    from talkface.asr.base import ASRSettings
    from talkface.asr.faster_whisper import FasterWhisperASR

    return FasterWhisperASR.load(ASRSettings())


@pytest.fixture(scope="session")
def asr_tiny():  # type: ignore[no-untyped-def]
    """The English-only fast model."""
    from talkface.asr.base import ASRSettings
    from talkface.asr.faster_whisper import FasterWhisperASR

    return FasterWhisperASR.load(ASRSettings(model="tiny.en"))


@pytest.fixture(scope="session")
def silero_vad():  # type: ignore[no-untyped-def]
    from talkface.vad.base import VADSettings
    from talkface.vad.silero import SileroVAD

    return SileroVAD.load(VADSettings())
