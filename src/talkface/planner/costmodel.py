"""Service times from a profile's cost curve: the mean, and random draws around it.

For each measured batch size ``b`` the model fits ``time = fixed_b + per_unit_b * work``
(least squares through the points of that batch size, or the curve's ``fixed_share``
when only one work size was measured). Between measured batch sizes both terms are
interpolated linearly; below the smallest and above the largest the time grows in
proportion to the batch (no batching gain is assumed where none was measured).

Random draws multiply the mean by a noise factor of mean 1: resampled from the measured
samples when the profile has them, else log-normal with the points' p95/p50 ratio.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from talkface.planner.profile import CostCurve

_Z95 = 1.6448536269514722


@dataclass(frozen=True, slots=True, kw_only=True)
class _Fit:
    batch_size: int
    fixed_ms: float
    per_unit_ms: float


def _fit_batch(curve: CostCurve, batch_size: int) -> _Fit:
    points = [p for p in curve.points if p.batch_size == batch_size]
    works = np.array([p.work_units for p in points])
    times = np.array([p.mean_ms for p in points])
    if len(set(works.tolist())) < 2:
        t, w = float(times.mean()), float(works.mean())
        fixed = curve.fixed_share * t
        return _Fit(batch_size=batch_size, fixed_ms=fixed, per_unit_ms=(t - fixed) / w)
    slope, intercept = np.polyfit(works, times, 1)
    if intercept < 0:  # a line through the origin: all of the time scales with work
        slope, intercept = float((times * works).sum() / (works * works).sum()), 0.0
    if slope < 0:  # more work was not slower: treat the time as fixed
        slope, intercept = 0.0, float(times.mean())
    return _Fit(batch_size=batch_size, fixed_ms=float(intercept), per_unit_ms=float(slope))


class ServiceModel:
    """Service time of one kind of model call (one :class:`CostCurve`) on one device.

    Args:
        curve: the profile's curve.
        speed: how much faster the device runs than the one the curve was measured on.
    """

    def __init__(self, curve: CostCurve, *, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.curve = curve
        self.speed = speed
        self._fits = [_fit_batch(curve, b) for b in curve.batch_sizes]
        self._sizes = [f.batch_size for f in self._fits]
        factors: list[float] = []
        sigmas: list[float] = []
        for p in curve.points:
            if p.samples_ms:
                mean = float(np.mean(p.samples_ms))
                factors.extend(s / mean for s in p.samples_ms)
            else:
                sigmas.append(math.log(p.p95_ms / p.p50_ms) / _Z95)
        self._factors = tuple(factors)
        self._sigma = float(np.mean(sigmas)) if sigmas else 0.0
        self._lines: dict[int, tuple[float, float]] = {}

    @property
    def max_measured_batch(self) -> int:
        """The largest batch size the profile measured."""
        return self._sizes[-1]

    @property
    def noise_cv(self) -> float:
        """Coefficient of variation of one batch's time (for the closed-form estimates)."""
        if self._factors:
            return float(np.std(self._factors))
        return math.sqrt(math.expm1(self._sigma**2))

    def _line(self, batch_size: int) -> tuple[float, float]:
        """``(fixed_ms, per_unit_ms)`` of a batch of ``batch_size`` on this device."""
        cached = self._lines.get(batch_size)
        if cached is not None:
            return cached
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        sizes, fits = self._sizes, self._fits
        if batch_size <= sizes[0] or batch_size >= sizes[-1]:
            edge = fits[0] if batch_size <= sizes[0] else fits[-1]
            scale = batch_size / edge.batch_size / self.speed
            line = (edge.fixed_ms * scale, edge.per_unit_ms * scale)
        else:
            i = bisect.bisect_left(sizes, batch_size)
            lo, hi = fits[i - 1], fits[i]
            x = (batch_size - lo.batch_size) / (hi.batch_size - lo.batch_size)
            line = (
                (lo.fixed_ms + x * (hi.fixed_ms - lo.fixed_ms)) / self.speed,
                (lo.per_unit_ms + x * (hi.per_unit_ms - lo.per_unit_ms)) / self.speed,
            )
        self._lines[batch_size] = line
        return line

    def mean_ms(self, batch_size: int, work_units: float) -> float:
        """Mean wall time of one batch of ``batch_size`` requests of ``work_units`` each."""
        fixed, per_unit = self._line(batch_size)
        return fixed + per_unit * work_units

    def mean_s(self, batch_size: int, work_units: float) -> float:
        """Mean wall time of such a batch, in seconds."""
        return self.mean_ms(batch_size, work_units) / 1000.0

    def sample_s(self, batch_size: int, work_units: float, rng: random.Random) -> float:
        """One random wall time of such a batch, in seconds."""
        mean_s = self.mean_ms(batch_size, work_units) / 1000.0
        if self._factors:
            return mean_s * self._factors[int(rng.random() * len(self._factors))]
        if self._sigma == 0.0:
            return mean_s
        return mean_s * math.exp(self._sigma * rng.gauss(0.0, 1.0) - self._sigma**2 / 2)

    def sampler(self, seed: str) -> Callable[[int, float], float]:
        """A fast ``(batch size, work units) -> seconds`` drawing function for ``seed``.

        Noise factors are drawn in blocks with NumPy; the same seed gives the same draws.
        """
        rng = np.random.default_rng(np.frombuffer(seed.encode(), dtype=np.uint8).tolist())
        block = 4096
        if self._factors:
            table = np.asarray(self._factors)
            def draw():
                return table[rng.integers(0, len(table), block)]
        elif self._sigma > 0:
            sigma = self._sigma
            def draw():
                return np.exp(sigma * rng.standard_normal(block) - sigma**2 / 2)
        else:
            def draw():
                return np.ones(block)
        buffer: list[float] = []
        line = self._line

        def sample(batch_size: int, work_units: float) -> float:
            if not buffer:
                buffer.extend(draw().tolist())
            fixed, per_unit = line(batch_size)
            return (fixed + per_unit * work_units) * buffer.pop() / 1000.0

        return sample

    def units_per_s(self, batch_size: int, work_units: float) -> float:
        """Throughput in work units per second when every batch is full."""
        return batch_size * work_units / self.mean_s(batch_size, work_units)
