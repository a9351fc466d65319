"""What a plan is: the options it was made with and everything it decided.

:func:`talkface.planner.make.make_plan` returns a :class:`Plan`; the report, the Ray
Serve config and ``plan.json`` are written from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from talkface.planner.catalog import GPUCatalog
from talkface.planner.deployment import Deployment
from talkface.planner.offline import OfflinePlan
from talkface.planner.packing import Card
from talkface.planner.profile import Profile, Stage
from talkface.planner.simulate import SimulationResult
from talkface.planner.sizing import ReplyShape, StageDemand, StageEstimate
from talkface.planner.workload import SLO, Workload


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOptions:
    """How to plan.

    Attributes:
        slo: the service level to meet at the peak.
        seed: random seed of every simulation.
        max_utilisation: most a replica is loaded, counted at full batches.
        max_busy: most a replica is busy at its expected (not full) batches; queues of
            replicas busier than this swing widely and latency with them.
        memory_headroom: share of each GPU's memory never planned for.
        card_utilisation_cap: most busy share planned on one shared GPU.
        cpu_utilisation: busy share CPU capacity is sized for.
        gpus: GPU names the plan may use (None: the whole catalog).
        latency_margin: the closed-form search aims TTFF p95 at this share of the SLO.
        max_wait_ms: the batching wait of every micro-batched stage.
        simulate: confirm (and correct) the plan with the simulator.
        sim_turns: turns measured per simulation.
        curve_points: loads of the sessions-vs-latency curve, as shares of the peak.
        bump_rounds: most corrections the simulator may ask for.
        max_sessions_rel_tol: how close the simulated "most sessions within the SLO" is
            bracketed in a cluster plan (0.03: within 3 %); CPU boxes are found exactly.
        cache_rate_sources: where each cache hit rate of the workload came from
            (``(name, source)`` pairs, see :mod:`talkface.planner.cache_rates`; None: the
            report derives them from the workload).
    """

    slo: SLO = field(default_factory=SLO)
    seed: int = 0
    max_utilisation: float = 0.8
    max_busy: float = 0.85
    memory_headroom: float = 0.10
    card_utilisation_cap: float = 0.85
    cpu_utilisation: float = 0.6
    gpus: tuple[str, ...] | None = None
    latency_margin: float = 0.85
    max_wait_ms: float = 5.0
    simulate: bool = True
    sim_turns: int = 2000
    curve_points: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    bump_rounds: int = 8
    max_sessions_rel_tol: float = 0.03
    cache_rate_sources: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.max_utilisation < 1:
            raise ValueError("max_utilisation must be in (0, 1)")
        if not 0 < self.max_busy <= 1:
            raise ValueError("max_busy must be in (0, 1]")
        if not 0 < self.cpu_utilisation <= 1:
            raise ValueError("cpu_utilisation must be in (0, 1]")
        if not 0 < self.latency_margin <= 1:
            raise ValueError("latency_margin must be in (0, 1]")
        if self.sim_turns < 50:
            raise ValueError("sim_turns must be at least 50")


@dataclass(frozen=True, slots=True, kw_only=True)
class StagePlan:
    """One stage's part of a plan.

    Attributes:
        stage: the stage.
        device: the GPU name, or ``cpu``.
        hosting: ``engine`` (shared, batched) or ``per_session``.
        replicas: replicas at the peak (max_replicas); per-session stages: 0.
        replicas_average: replicas at the average load.
        replicas_min: replicas at the quietest hour (min_replicas).
        max_batch_size: batching limit (LLM: concurrent sequences).
        max_wait_ms: batching wait.
        num_gpus: GPU share of one replica (Ray Serve's ``num_gpus``).
        memory_mb: GPU memory of one replica (0 on CPU).
        cpu_cores: CPU cores at the peak (CPU stages).
        target_ongoing_requests: autoscaling target (Little's law at the peak).
        streams_per_replica: seconds of media per second one replica turns out at full
            batches (LLM: sequences decoding at once).
        demand: the peak demand.
        estimate: the closed-form estimate at the peak.
        speed: speed on its device relative to where it was profiled.
        cost_usd_per_h: its share of the peak cost.
    """

    stage: Stage
    device: str
    hosting: Literal["engine", "per_session"]
    replicas: int
    replicas_average: int
    replicas_min: int
    max_batch_size: int
    max_wait_ms: float
    num_gpus: float
    memory_mb: float
    cpu_cores: float
    target_ongoing_requests: int
    streams_per_replica: float
    demand: StageDemand
    estimate: StageEstimate
    speed: float
    cost_usd_per_h: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuBox:
    """A CPU-box plan: identical machines like the one profiled.

    Attributes:
        cores: cores of one box the engines share.
        sessions_per_box: most sessions one box serves within the SLO (simulated).
        boxes: boxes for the peak.
        box_usd_per_h: price of one box.
    """

    cores: float
    sessions_per_box: int
    boxes: int
    box_usd_per_h: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A complete plan.

    Attributes:
        mode: ``cluster`` (GPU pools) or ``cpu_box`` (copies of the profiled machine).
        sessions: the requested concurrent sessions (average of the busy day).
        peak_sessions: what the plan is sized for (sessions x peak factor).
        stages: per profiled stage.
        cards: the GPUs at the peak and what runs on each.
        deployment: the simulated configuration at the peak.
        shape: per-turn averages of the workload.
        ttff_estimate_ms: closed-form (p50-ish mean, p95) time to first frame at the peak.
        simulation: the simulator's run at the peak (None when not simulated).
        curve: simulations at other loads (sessions-vs-latency).
        max_sessions: most sessions the peak configuration serves within the SLO
            (simulated; None when not simulated).
        meets_slo: the peak configuration meets the SLO: simulated when simulated,
            otherwise its closed-form TTFF p95 is within the SLO (see :attr:`slo_checked_by`).
        cost_peak_usd_per_h: cost per hour at the peak.
        cost_average_usd_per_h: cost per hour at the average load (autoscaled).
        cost_per_session_hour_usd: average cost / average sessions.
        gpu_counts: GPUs by kind at the peak.
        gpu_counts_average: GPUs by kind at the average load.
        corrections: what the simulator made the search change, in words.
        notes: warnings for the reader.
        offline: offline render jobs on spot capacity (None when none are planned).
        cpu_box: the CPU-box specifics (mode ``cpu_box``).
    """

    mode: Literal["cluster", "cpu_box"]
    sessions: int
    peak_sessions: int
    profile: Profile
    workload: Workload
    catalog: GPUCatalog
    options: PlanOptions
    stages: Mapping[Stage, StagePlan]
    cards: tuple[Card, ...]
    deployment: Deployment
    shape: ReplyShape
    ttff_estimate_ms: tuple[float, float]
    simulation: SimulationResult | None
    curve: tuple[SimulationResult, ...]
    max_sessions: int | None
    meets_slo: bool
    cost_peak_usd_per_h: float
    cost_average_usd_per_h: float
    cost_per_session_hour_usd: float
    gpu_counts: Mapping[str, int]
    gpu_counts_average: Mapping[str, int]
    corrections: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    offline: OfflinePlan | None = None
    cpu_box: CpuBox | None = None

    @property
    def slo_checked_by(self) -> Literal["simulation", "closed_form"]:
        """What :attr:`meets_slo` rests on."""
        return "simulation" if self.simulation is not None else "closed_form"

    @property
    def total_gpus(self) -> int:
        """GPUs the plan needs at the peak, all kinds together."""
        return sum(self.gpu_counts.values())

    def summary(self) -> dict[str, Any]:
        """The headline numbers (also the top of ``plan.json``)."""
        sim = self.simulation
        return {
            "mode": self.mode,
            "sessions": self.sessions,
            "peak_sessions": self.peak_sessions,
            "gpus": dict(self.gpu_counts),
            "total_gpus": self.total_gpus,
            "cost_peak_usd_per_h": round(self.cost_peak_usd_per_h, 2),
            "cost_average_usd_per_h": round(self.cost_average_usd_per_h, 2),
            "cost_per_session_hour_usd": round(self.cost_per_session_hour_usd, 4),
            "ttff_p50_ms": round(sim.ttff_p50_ms) if sim else None,
            "ttff_p95_ms": round(sim.ttff_p95_ms) if sim else None,
            "ttff_estimate_p95_ms": round(self.ttff_estimate_ms[1]),
            "meets_slo": self.meets_slo,
            "slo_checked_by": self.slo_checked_by,
            "max_sessions": self.max_sessions,
        }
