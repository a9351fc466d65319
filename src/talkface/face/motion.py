"""Life between the words: blinks, head sway, breathing, and expression changes.

Everything here is a pure function of (session seed, time), so any chunk of frames can
be rendered by any worker in any order and still join seamlessly with its neighbours.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from talkface.messages import Emotion

_BLINK_TABLE_S = 3600.0  # the schedule repeats after an hour
_BLINK_CLOSE_S = 0.07
_BLINK_HOLD_S = 0.03
_BLINK_OPEN_S = 0.12
_MIN_BLINK_GAP_S = 1.2
_EMOTION_EASE_S = 0.4

_RELAXED_HOLD = 0.6  # how much of an expression stays in the pauses between words


@dataclass(frozen=True, slots=True)
class Expression:
    """What an emotion does to the face, in :class:`~talkface.face.render.FacePose` units."""

    smile: float = 0.0
    brow_raise: float = 0.0
    brow_furrow: float = 0.0
    cheek_raise: float = 0.0
    eye_narrow: float = 0.0


_FIELDS = tuple(f.name for f in dataclasses.fields(Expression))

# What each emotion holds while speaking: big enough to read at a glance (the corners
# of the mouth move by a tenth of its width, the brows by a few percent of the face).
EXPRESSIONS = {
    Emotion.NEUTRAL: Expression(),
    # A real smile: corners up, cheeks up (narrowing the eyes from below), brows lifted.
    Emotion.HAPPY: Expression(smile=0.9, brow_raise=0.6, cheek_raise=1.0),
    # Concentration: a frown, lids a little lowered, corners of the mouth down.
    Emotion.SERIOUS: Expression(smile=-0.7, brow_raise=-0.1, brow_furrow=1.0, eye_narrow=0.22),
}


@functools.lru_cache(maxsize=256)
def _blink_onsets(seed: int, blinks_per_min: float) -> np.ndarray:
    if blinks_per_min <= 0:
        return np.array([_BLINK_TABLE_S * 2])
    rng = np.random.default_rng(seed)
    mean_gap_s = 60.0 / blinks_per_min
    count = int(_BLINK_TABLE_S / mean_gap_s * 2) + 2
    # A refractory gap plus an exponential wait: blinks cluster a little, like people's.
    gaps = _MIN_BLINK_GAP_S + rng.exponential(max(mean_gap_s - _MIN_BLINK_GAP_S, 0.1), count)
    return np.cumsum(gaps) - gaps[0] * rng.random()


def blink_amount(seed: int, time_s: np.ndarray, blinks_per_min: float) -> np.ndarray:
    """How shut the eyes are (0..1) at each time."""
    onsets = _blink_onsets(seed, blinks_per_min)
    t = np.mod(time_s, _BLINK_TABLE_S)
    index = np.searchsorted(onsets, t, side="right") - 1
    since = np.where(index >= 0, t - onsets[np.maximum(index, 0)], 1e9)
    closing = since / _BLINK_CLOSE_S
    opening = 1.0 - (since - _BLINK_CLOSE_S - _BLINK_HOLD_S) / _BLINK_OPEN_S
    amount = np.where(since < _BLINK_CLOSE_S, closing,
                      np.where(since < _BLINK_CLOSE_S + _BLINK_HOLD_S, 1.0, opening))
    return np.clip(amount, 0.0, 1.0)


def _phases(seed: int) -> np.ndarray:
    return np.random.default_rng(seed ^ 0x5EED).uniform(0, 2 * math.pi, 8)


def head_motion(
    seed: int, time_s: np.ndarray, speech_level: np.ndarray, face_height_px: float, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(roll_rad, dx_px, dy_px, scale) of the head at each time.

    Slow incommensurate sways keep an idle head alive without a visible loop; while
    speaking the head nods a little with the loudness, as people's do.
    """
    phase = _phases(seed)
    t = time_s
    two_pi = 2 * math.pi
    roll = np.radians(1.3) * (0.6 * np.sin(two_pi * t / 6.1 + phase[0])
                              + 0.4 * np.sin(two_pi * t / 9.7 + phase[1]))
    dx = 0.010 * face_height_px * (0.7 * np.sin(two_pi * t / 7.3 + phase[2])
                                    + 0.3 * np.sin(two_pi * t / 4.1 + phase[3]))
    dy = 0.006 * face_height_px * np.sin(two_pi * t / 5.2 + phase[4])
    # Speaking: a small dip with emphasis and a faster sway.
    dy = dy + 0.012 * face_height_px * speech_level
    roll = roll + np.radians(0.6) * speech_level * np.sin(two_pi * t / 1.7 + phase[5])
    breathing = 1.0 + 0.002 * np.sin(two_pi * t / 4.3 + phase[6])
    return roll * scale, dx * scale, dy * scale, 1.0 + (breathing - 1.0) * scale


def expression(
    emotion: Emotion,
    previous: Emotion,
    since_ns: int,
    frame_times_ns: np.ndarray,
    speaking: np.ndarray,
) -> list[Expression]:
    """The expression at each frame, easing from ``previous`` to ``emotion``.

    Expressions are held while speaking and relax a little in silence.
    """
    elapsed_s = (frame_times_ns - since_ns) / 1e9
    ease = np.clip(elapsed_s / _EMOTION_EASE_S, 0.0, 1.0)
    ease = ease * ease * (3 - 2 * ease)
    new = np.array(dataclasses.astuple(EXPRESSIONS[emotion]))
    old = np.array(dataclasses.astuple(EXPRESSIONS[previous]))
    values = old[None, :] * (1 - ease[:, None]) + new[None, :] * ease[:, None]
    hold = _RELAXED_HOLD + (1.0 - _RELAXED_HOLD) * speaking
    values = values * hold[:, None]
    return [Expression(**dict(zip(_FIELDS, map(float, row), strict=True))) for row in values]
