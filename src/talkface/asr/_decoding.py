"""Pure helpers of the Whisper short-window decoder: window sizes, token caps, loop guards.

Kept apart from :mod:`talkface.asr.faster_whisper` so that unit tests can check them
without a model.
"""

from __future__ import annotations

import math
import zlib

SAMPLE_RATE_HZ = 16_000
HOP_SAMPLES = 160  # one mel frame is 10 ms

TAIL_SILENCE_S = 2.0
"""Silence appended after the speech: Whisper needs to *see* the speech end to stop."""
MIN_WINDOW_S = 10.0
"""Shortest encoder window. At 6 s and less, Whisper loops on short phrases ("Stop. Stop.")."""
WINDOW_STEP_S = 2.0
"""Windows are whole multiples of this, so requests of similar length share a batch."""
MAX_WINDOW_S = 30.0
"""Whisper's own window; audio that does not fit with its tail silence goes the long way."""
MAX_SHORT_AUDIO_S = MAX_WINDOW_S - 1.0
"""Longest audio decoded in one short window (at least 1 s of silence after it)."""

BASE_NEW_TOKENS = 12
NEW_TOKENS_PER_S = 8.0
"""Token cap per second of audio: fast Mandarin is ~5 syllables/s at ~1.5 tokens each."""
MAX_DECODER_TOKENS = 448

COMPRESSION_RATIO_LIMIT = 2.4
"""Text that zlib compresses better than this is a repetition loop (Whisper's own limit)."""
SILENCE_PEAK = 10 ** (-60 / 20)
"""Audio whose loudest sample is below -60 dBFS is silence; the model is not run."""

CHINESE_PROMPT = "以下是普通话的句子。"
"""Previous-text prompt for Chinese: makes Whisper write simplified, not traditional, Han."""


def window_s(duration_s: float) -> float:
    """Encoder window for ``duration_s`` of audio: audio + tail silence, rounded up."""
    needed = duration_s + TAIL_SILENCE_S
    stepped = math.ceil(needed / WINDOW_STEP_S - 1e-9) * WINDOW_STEP_S
    return min(MAX_WINDOW_S, max(MIN_WINDOW_S, stepped))


def window_frames(window: float) -> int:
    """Mel frames in a window (even: the encoder halves it)."""
    frames = round(window * SAMPLE_RATE_HZ / HOP_SAMPLES)
    return frames - frames % 2


def max_new_tokens(duration_s: float, prompt_tokens: int) -> int:
    """Most tokens a pass over ``duration_s`` of audio may generate."""
    cap = BASE_NEW_TOKENS + math.ceil(NEW_TOKENS_PER_S * duration_s)
    return max(1, min(cap, MAX_DECODER_TOKENS - prompt_tokens - 1))


def collapse_repeats(tokens: list[int], *, hit_cap: bool) -> list[int]:
    """Cut a repetition loop at the end of ``tokens`` down to its first copy.

    Whisper's failure mode on audio it cannot read is to repeat the last phrase until the
    token cap ("Thank you. Thank you. Thank you."). A tail made of one unit repeated at
    least three times is a loop; so is a tail repeated twice when the pass ran into the
    token cap (a real sentence ends before the cap).

    Args:
        tokens: generated token ids (no prompt).
        hit_cap: the pass stopped at the token cap rather than at end-of-text.
    """
    n = len(tokens)
    min_tail_periods = 1.5 if hit_cap else 3.0
    keep = n
    for period in range(1, int(n / min_tail_periods) + 1):
        # The longest tail of ``tokens`` that repeats with this period.
        start = n - period
        while start > 0 and tokens[start - 1] == tokens[start - 1 + period]:
            start -= 1
        if n - start >= min_tail_periods * period:
            keep = min(keep, start + period)
    return tokens[:keep]


def compression_ratio(text: str) -> float:
    """How well zlib compresses ``text``; above :data:`COMPRESSION_RATIO_LIMIT` it loops."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def mean_logprob(score: float, num_tokens: int) -> float:
    """Mean log-probability per token from CTranslate2's length-normalised score.

    Counts end-of-text as a token, as faster-whisper and OpenAI's Whisper do.
    """
    return score * num_tokens / (num_tokens + 1)
