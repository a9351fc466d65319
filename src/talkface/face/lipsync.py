"""Measuring lip sync from a finished video, independently of how it was made.

The mouth's opening is read from the pixels of every decoded frame with the face
landmark model (the inner-lip gap over the face's height); the audio's loudness is read
from the decoded audio track over each frame's interval. Their cross-correlation peaks
at the offset between picture and sound: positive when the picture lags the sound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkface.audio import resample
from talkface.face.landmarks import FaceTracker

_ANALYSIS_RATE_HZ = 16_000
MAX_LAG_FRAMES = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class LipSyncReport:
    """How well a video's mouth follows its sound.

    Attributes:
        offset_ms: picture minus sound delay at the correlation peak (sub-frame estimate).
        correlation: Pearson correlation of mouth opening and loudness at that offset.
        frames: frames measured.
        frames_without_face: frames where no face was found.
    """

    offset_ms: float
    correlation: float
    frames: int
    frames_without_face: int


def decode_video(path: str | Path) -> tuple[list[np.ndarray], float, np.ndarray, int]:
    """(RGB frames, fps, mono float32 audio, audio rate) of a video file."""
    import av

    frames: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        fps = float(video.average_rate)
        rate_hz = audio.rate
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
        container.seek(0)
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray().astype(np.float32)
            chunks.append(samples.mean(axis=0) if samples.ndim == 2 and samples.shape[0] > 1
                          else samples.reshape(-1))
    audio_samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return frames, fps, audio_samples, rate_hz


def mouth_openings(frames: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Inner-lip gap over face height for each frame (NaN where no face), and the misses."""
    tracker = FaceTracker()
    values = np.full(len(frames), np.nan)
    missing = 0
    for i, frame in enumerate(frames):
        landmarks = tracker.track(frame)
        if landmarks is None:
            missing += 1
            continue
        values[i] = landmarks.mouth_opening()
    return values, missing


def loudness_per_frame(audio: np.ndarray, rate_hz: int, fps: float, frames: int) -> np.ndarray:
    """RMS level in dB of the audio under each frame's interval."""
    samples = resample(audio, rate_hz, _ANALYSIS_RATE_HZ)
    per_frame = _ANALYSIS_RATE_HZ / fps
    levels = np.empty(frames)
    for k in range(frames):
        window = samples[round(k * per_frame) : round((k + 1) * per_frame)]
        rms = float(np.sqrt(np.mean(window.astype(np.float64) ** 2))) if window.size else 0.0
        levels[k] = 20 * np.log10(rms + 1e-4)
    return levels


def _correlation_at(a: np.ndarray, b: np.ndarray, lag: int) -> float:
    """Pearson correlation of a[t] with b[t - lag] over the frames where both exist."""
    if lag >= 0:
        x, y = a[lag:], b[: len(b) - lag]
    else:
        x, y = a[: len(a) + lag], b[-lag:]
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 5 or x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def speech_span(loudness_db: np.ndarray, *, margin_frames: int) -> slice:
    """The frames from the first to the last voiced one, with ``margin_frames`` either side.

    Lip sync is a property of the speech: a silent stretch before or after it (the idle
    face of a live reply, whose resting mouth is the portrait's own, open in a smile on
    the bundled one) only adds frames where the sound says nothing. "Voiced" is within
    40 dB of the loudest frame.
    """
    if loudness_db.size == 0:
        return slice(0, 0)
    voiced = np.flatnonzero(loudness_db > loudness_db.max() - 40.0)
    start = max(0, int(voiced[0]) - margin_frames)
    return slice(start, min(loudness_db.size, int(voiced[-1]) + margin_frames + 1))


def measure_lipsync(path: str | Path) -> LipSyncReport:
    """Decode ``path`` and measure its lip-sync offset and correlation over its speech."""
    frames, fps, audio, rate_hz = decode_video(path)
    loudness = loudness_per_frame(audio, rate_hz, fps, len(frames))
    span = speech_span(loudness, margin_frames=0)
    frames, loudness = frames[span], loudness[span]
    openings, missing = mouth_openings(frames)
    lags = list(range(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1))
    scores = np.array([_correlation_at(openings, loudness, lag) for lag in lags])
    best = int(np.argmax(scores))
    offset_frames = float(lags[best])
    if 0 < best < len(lags) - 1:
        # A parabola through the peak and its neighbours places it between frames.
        left, centre, right = scores[best - 1], scores[best], scores[best + 1]
        curvature = left - 2 * centre + right
        if curvature < 0:
            offset_frames += 0.5 * (left - right) / curvature
    return LipSyncReport(
        offset_ms=offset_frames * 1000.0 / fps,
        correlation=float(scores[best]),
        frames=len(frames),
        frames_without_face=missing,
    )
