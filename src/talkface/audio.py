"""Audio conversion helpers: the one place PCM bytes become arrays and back."""

from __future__ import annotations

import numpy as np

from talkface.messages import NS_PER_S

_INT16_SCALE = 32768.0

PLAYBACK_RATE_HZ = 48_000
"""Sample rate of the audio the listener gets: what Opus (WebRTC) and AAC (MP4) carry."""


def pcm16_to_float32(pcm: bytes) -> np.ndarray:
    """Mono s16le bytes to float32 samples in [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / _INT16_SCALE


def float32_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to mono s16le bytes (clipped, rounded)."""
    scaled = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0
    return np.rint(scaled).astype("<i2").tobytes()


def resample(samples: np.ndarray, src_rate_hz: int, dst_rate_hz: int) -> np.ndarray:
    """High-quality resampling of mono float32 samples (libsoxr)."""
    if src_rate_hz == dst_rate_hz:
        return np.asarray(samples, dtype=np.float32)
    import soxr  # imported here: a small C extension only the audio paths need

    return soxr.resample(np.asarray(samples, dtype=np.float32), src_rate_hz, dst_rate_hz)


def pcm16_at(pcm: bytes, src_rate_hz: int, dst_rate_hz: int) -> np.ndarray:
    """Mono s16le bytes at ``src_rate_hz`` as float32 samples at ``dst_rate_hz``: what
    a consumer of speech does to it once per sentence (CPU work: call it in a worker
    thread on a live path)."""
    return resample(pcm16_to_float32(pcm), src_rate_hz, dst_rate_hz)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16 (clipped, rounded)."""
    return np.clip(np.rint(np.asarray(samples) * 32767.0), -32768, 32767).astype(np.int16)


def samples_to_ns(num_samples: int, sample_rate_hz: int) -> int:
    """Duration of ``num_samples`` in integer nanoseconds."""
    return num_samples * NS_PER_S // sample_rate_hz


def ns_to_samples(duration_ns: int, sample_rate_hz: int) -> int:
    """Number of whole samples in ``duration_ns`` (rounded to nearest)."""
    return (duration_ns * sample_rate_hz + NS_PER_S // 2) // NS_PER_S


def silence_pcm16(num_samples: int) -> bytes:
    """``num_samples`` of digital silence as s16le bytes."""
    return bytes(2 * num_samples)
