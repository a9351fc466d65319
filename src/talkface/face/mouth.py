"""From speech audio (and phonemes, when the voice gives them) to mouth shapes per frame.

The mouth opens with the loudness of the speech it shows: each frame takes the RMS level
of the 40 ms of audio it is on screen for, on a dB scale. Smoothing is symmetric (the
audio around each frame is known before the frame is drawn), so it adds no lag: lip
sync stays at 0 ms by construction and is checked from the pixels in the tests.

The mouth's shape follows the spectrum: energy high in the spectrum (front vowels,
"ee") spreads the lips, energy low in it ("oo", "oh") rounds them. Phoneme timings, when
present, sharpen this: lips meet for m/b/p, rest on the teeth for f/v, round for
rounded vowels and spread for front ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ
from talkface.messages import NS_PER_S, PhonemeSpan

# Loudness (dBFS of the frame's RMS) that maps to a shut and a fully open mouth.
_QUIET_DB = -48.0
_LOUD_DB = -16.0
MAX_OPEN = 0.32  # inner-lip gap at full loudness, as a fraction of mouth width
WIDEST_OPEN = 1.1 * MAX_OPEN  # open vowels may go a little further
MIN_SPEAKING_OPEN = 0.03
_PRESENCE_REACH_S = 0.18  # how far speech presence reaches into pauses around speech

_BILABIAL = frozenset("pbm")
_LABIODENTAL = frozenset("fv")
_ROUNDED = frozenset("uoʊɔwɒɵʉy")
_SPREAD = frozenset("iɪeɛjæ")
_OPEN = frozenset("aɑæʌɐɒ")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MouthTrack:
    """Per-frame mouth controls (arrays of length num_frames).

    Attributes:
        open: inner-lip gap as a fraction of mouth width while speaking.
        speaking: 0 in silence .. 1 in speech; the renderer blends from the portrait's
            own resting mouth to ``open`` by it.
        round: 0..1 lip rounding.
        spread: 0..1 lip spreading.
        level: 0..1 loudness (drives speaking head motion).
    """

    open: np.ndarray
    speaking: np.ndarray
    round: np.ndarray
    spread: np.ndarray
    level: np.ndarray


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _windows(audio: np.ndarray, centres: np.ndarray, half_width: int) -> np.ndarray:
    """Rows of ``2*half_width`` samples around each centre index (zeros outside)."""
    padded = np.pad(audio, (half_width, half_width))
    offsets = np.arange(-half_width, half_width)
    index = np.clip(centres[:, None] + offsets[None, :] + half_width, 0, len(padded) - 1)
    return padded[index]


def mouth_track(
    audio: np.ndarray,
    audio_start_ns: int,
    frame_times_ns: np.ndarray,
    fps: int,
    phonemes: tuple[PhonemeSpan, ...] = (),
) -> MouthTrack:
    """Mouth controls for frames shown at ``frame_times_ns`` (timeline ns).

    Args:
        audio: float32 mono at :data:`ANIMATOR_AUDIO_RATE_HZ` starting at ``audio_start_ns``.
        audio_start_ns: timeline time of ``audio[0]``.
        frame_times_ns: presentation time of each frame.
        fps: frame rate; a frame shows the audio of the next 1/fps seconds.
        phonemes: phoneme spans in timeline ns (optional).
    """
    frame_s = 1.0 / fps
    # Frames one step before and after, so the smoothing needs no state between calls.
    step_ns = NS_PER_S // fps
    times = np.concatenate([[frame_times_ns[0] - step_ns], frame_times_ns,
                            [frame_times_ns[-1] + step_ns]])
    centres_ns = times + step_ns // 2
    centres = ((centres_ns - audio_start_ns) * ANIMATOR_AUDIO_RATE_HZ // NS_PER_S).astype(np.int64)
    half = int(ANIMATOR_AUDIO_RATE_HZ * frame_s / 2)
    windows = _windows(audio, centres, half)
    rms = np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1) + 1e-12)
    level = _smoothstep((20.0 * np.log10(rms) - _QUIET_DB) / (_LOUD_DB - _QUIET_DB))
    level = np.convolve(np.pad(level, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")

    spectrum = np.abs(np.fft.rfft(windows * np.hanning(windows.shape[1]), n=1024, axis=1)) ** 2
    freqs = np.fft.rfftfreq(1024, 1.0 / ANIMATOR_AUDIO_RATE_HZ)
    low = spectrum[:, (freqs >= 250) & (freqs < 1000)].sum(axis=1)
    high = spectrum[:, (freqs >= 1500) & (freqs < 4500)].sum(axis=1)
    brightness = high / (low + high + 1e-12)
    voiced = _smoothstep((level - 0.25) / 0.3)
    rounding = _smoothstep((0.22 - brightness) / 0.18) * voiced
    spreading = _smoothstep((brightness - 0.45) / 0.3) * voiced

    opening = MIN_SPEAKING_OPEN + (MAX_OPEN - MIN_SPEAKING_OPEN) * level**0.9
    if phonemes:
        opening, rounding, spreading = _apply_phonemes(
            centres_ns, phonemes, opening, rounding, spreading
        )
    speaking = _presence(level, fps)
    inner = slice(1, -1)
    return MouthTrack(
        open=opening[inner].astype(np.float32),
        speaking=speaking[inner].astype(np.float32),
        round=rounding[inner].astype(np.float32),
        spread=spreading[inner].astype(np.float32),
        level=level[inner].astype(np.float32),
    )


def _presence(level: np.ndarray, fps: int) -> np.ndarray:
    """1 in and just around speech, easing to 0 in longer pauses."""
    reach = max(1, round(_PRESENCE_REACH_S * fps))
    active = (level > 0.08).astype(np.float64)
    padded = np.pad(active, reach, mode="edge")
    spread = np.array([padded[i : i + 2 * reach + 1].max() for i in range(len(active))])
    return np.convolve(np.pad(spread, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")


def _apply_phonemes(
    centres_ns: np.ndarray,
    phonemes: tuple[PhonemeSpan, ...],
    opening: np.ndarray,
    rounding: np.ndarray,
    spreading: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.array([p.start_ns for p in phonemes])
    ends = np.array([p.end_ns for p in phonemes])
    opening, rounding, spreading = opening.copy(), rounding.copy(), spreading.copy()
    for i, centre in enumerate(centres_ns):
        j = int(np.searchsorted(starts, centre, side="right")) - 1
        if j < 0 or centre >= ends[j]:
            continue
        symbol = phonemes[j].phoneme[:1]
        if symbol in _BILABIAL:
            opening[i] = min(opening[i], 0.01)
        elif symbol in _LABIODENTAL:
            opening[i] = min(opening[i], 0.05)
        elif symbol in _ROUNDED:
            rounding[i] = max(rounding[i], 0.75)
            spreading[i] *= 0.3
        elif symbol in _SPREAD:
            spreading[i] = max(spreading[i], 0.6)
            rounding[i] *= 0.3
        elif symbol in _OPEN:
            opening[i] = min(WIDEST_OPEN, opening[i] * 1.15)
    return opening, rounding, spreading
