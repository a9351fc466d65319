"""ASR settings, requests and registry: the contract other stages program against."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from talkface.asr.base import ASRRequest, ASRSettings
from talkface.asr.registry import ASR_BACKENDS
from talkface.audio import float32_to_pcm16
from talkface.errors import BadInput, ConfigError
from talkface.messages import AudioChunk
from talkface.registry import load_backend_class

pytestmark = pytest.mark.unit


def test_settings_defaults_are_the_real_time_ones() -> None:
    settings = ASRSettings()
    assert settings.model == "base"
    assert settings.beam_size == 1
    assert settings.num_threads == 1
    assert settings.language is None
    options = settings.batching_options()
    assert options.max_batch_size == settings.batching.max_batch_size
    assert options.timeout_s > settings.timeout_s


def test_settings_refuse_unknown_keys_and_too_frequent_partials() -> None:
    with pytest.raises(ValidationError):
        ASRSettings(temperature=0.2)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="partial_interval_ms"):
        ASRSettings(partial_interval_ms=20)
    assert ASRSettings(partial_interval_ms=0).partial_interval_ms == 0


def test_request_needs_16khz_float32_mono() -> None:
    with pytest.raises(BadInput, match="float32"):
        ASRRequest(audio=np.zeros(16_000, dtype=np.float64))
    with pytest.raises(BadInput, match="1-D"):
        ASRRequest(audio=np.zeros((2, 16_000), dtype=np.float32))
    assert ASRRequest(audio=np.zeros(8_000, dtype=np.float32)).duration_s == 0.5


def test_request_from_a_48khz_chunk_is_resampled_and_timed() -> None:
    tone = (0.3 * np.sin(np.arange(48_000) / 10)).astype(np.float32)
    chunk = AudioChunk(
        pcm=float32_to_pcm16(tone), sample_rate_hz=48_000, pts_ns=2_000_000_000, turn_id=3
    )
    request = ASRRequest.from_chunk(chunk, language="en", is_final=False)
    assert request.audio.dtype == np.float32
    assert len(request.audio) == 16_000
    assert request.end_pts_ns == 3_000_000_000
    assert request.turn_id == 3 and not request.is_final and request.language == "en"


def test_registry_names_faster_whisper() -> None:
    cls = load_backend_class("asr", ASR_BACKENDS, "faster-whisper")
    assert cls.__name__ == "FasterWhisperASR"
    with pytest.raises(ConfigError, match="faster-whisper"):
        load_backend_class("asr", ASR_BACKENDS, "whisperx")


def test_stage_modules_import_without_model_packages() -> None:
    code = (
        "import sys, talkface.asr.base, talkface.asr.streaming, talkface.asr.registry, "
        "talkface.asr.models, talkface.vad.base, talkface.vad.endpoint, talkface.vad.registry, "
        "talkface.audio_file;"
        "print(','.join(m for m in ('faster_whisper', 'ctranslate2', 'onnxruntime', 'av', "
        "'torch', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
