"""What a pipeline simulation is asked for and what it measured.

:func:`talkface.planner.simulate.simulate` takes :class:`SimOptions` and returns a
:class:`SimulationResult` (both re-exported there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from talkface.degradation import DegradationSettings
from talkface.planner.ladder import LadderReport
from talkface.planner.profile import Stage
from talkface.planner.workload import SLO

__all__ = ["SEGMENTS", "SimOptions", "SimulationResult", "StageStats"]

SEGMENTS = ("vad", "asr", "llm", "tts", "animator", "encoder")
"""TTFF is the sum of these segments (each one: its queue wait plus its service)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOptions:
    """How long and how finely to simulate.

    Attributes:
        seed: random seed; the same seed gives the same result.
        target_turns: turns to measure; sets the simulated length.
        min_duration_s: shortest measured window.
        max_duration_s: longest measured window.
        warmup_s: simulated time before measuring (default: 60 % of a turn cycle; the
            sessions start at random points of their first cycle).
        vad_window_ms: coarser VAD windows than the profile's (fewer events for large
            runs; the VAD's total work is the same). None keeps the profile's.
        degradation: run the server's degradation ladder with these settings (see
            :mod:`talkface.planner.ladder`); None (default): no ladder, as every published
            plan and validation was simulated.
    """

    seed: int = 0
    target_turns: int = 3000
    min_duration_s: float = 10.0
    max_duration_s: float = 4 * 3600.0
    warmup_s: float | None = None
    vad_window_ms: float | None = None
    degradation: DegradationSettings | None = None

    def __post_init__(self) -> None:
        if self.target_turns < 1:
            raise ValueError("target_turns must be at least 1")
        if not 0 < self.min_duration_s <= self.max_duration_s:
            raise ValueError("need 0 < min_duration_s <= max_duration_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class StageStats:
    """One stage in the measured window.

    Attributes:
        requests: requests served.
        mean_batch_size: requests per batch (LLM: sequences running per decoding step).
        wait_mean_ms: mean wait in the queue (batch formation included).
        wait_p95_ms: 95th percentile of that wait.
        busy: mean busy share of one replica; for per-session stages, processors kept
            busy on average.
    """

    requests: int
    mean_batch_size: float
    wait_mean_ms: float
    wait_p95_ms: float
    busy: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationResult:
    """What one simulation measured.

    Attributes:
        sessions: concurrent sessions simulated.
        turns: turns measured (those whose speech ended inside the window).
        simulated_s: length of the measured window.
        ttff_ms: every measured turn's TTFF, sorted (inf for turns that never got a frame).
        fps_achieved: every completed reply's achieved frame rate, sorted, in nominal
            fps: a reply of a session the ladder started at a lower frame rate counts
            as the share of that rate it achieved (so only stalls lower it).
        fps_nominal: the pipeline's frame rate.
        breakdown_ms: mean of each TTFF segment (see :data:`SEGMENTS`).
        breakdown_p95_ms: 95th percentile of each TTFF segment.
        stages: per simulated stage.
        pools: busy share of each shared processor pool (the CPU box, shared GPUs).
        degradation: what the degradation ladder did (None: simulated without it).
    """

    sessions: int
    turns: int
    simulated_s: float
    ttff_ms: tuple[float, ...]
    fps_achieved: tuple[float, ...]
    fps_nominal: float
    breakdown_ms: dict[str, float]
    breakdown_p95_ms: dict[str, float]
    stages: dict[Stage, StageStats]
    pools: dict[str, float] = field(default_factory=dict)
    degradation: LadderReport | None = None

    def ttff_percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile of time to first frame, in ms (inf when no turn finished)."""
        if not self.ttff_ms:
            return math.inf
        return float(np.percentile(self.ttff_ms, q, method="higher"))

    @property
    def ttff_p50_ms(self) -> float:
        """Median time to first frame, in ms."""
        return self.ttff_percentile_ms(50)

    @property
    def ttff_p95_ms(self) -> float:
        """95th percentile of time to first frame, in ms."""
        return self.ttff_percentile_ms(95)

    @property
    def ttff_p99_ms(self) -> float:
        """99th percentile of time to first frame, in ms."""
        return self.ttff_percentile_ms(99)

    def sustained_share(self, slo: SLO) -> float:
        """Share of replies that played at ``slo.min_fps_share`` of the nominal fps or better."""
        if not self.fps_achieved:
            return 0.0
        floor = slo.min_fps_share * self.fps_nominal * (1 - 1e-9)
        return sum(f >= floor for f in self.fps_achieved) / len(self.fps_achieved)

    @property
    def fps_p05(self) -> float:
        """5th percentile of the frame rate replies played at, in fps (0 without replies)."""
        if not self.fps_achieved:
            return 0.0
        return float(np.percentile(self.fps_achieved, 5, method="lower"))

    def meets(self, slo: SLO) -> bool:
        """True when this run meets ``slo``: TTFF p95 and sustained frame rate."""
        return (
            self.turns > 0
            and self.ttff_p95_ms <= slo.ttff_p95_ms
            and self.sustained_share(slo) >= slo.sustained_turn_share
        )
