"""The cheapest cluster configuration that meets the SLO.

1. **Options per stage** (:mod:`talkface.planner.options`). For every GPU (or the CPU) a
   stage can run on and every batch limit, the fewest replicas that keep each replica's
   load at full batches under ``max_utilisation`` and keep streaming stages ahead of
   playback; then more replicas, each lowering its latency, as long as that helps.
2. **Choice.** The cheapest mix of one option per stage whose closed-form TTFF p95 is
   under ``latency_margin * SLO``: greedy marginal analysis and a Lagrangian sweep over
   the price of latency propose mixes, then cheaper options stage by stage while the
   mix stays within the target.
3. **Packing.** Replicas of the chosen options are packed on cards per GPU kind.
4. **Confirmation.** The simulator runs the packed configuration at the peak; while it
   misses the SLO, the stage whose simulated latency exceeds its unloaded latency the
   most (or, for stalls, the busier of TTS and animator) gets ~20 % more replicas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from talkface.errors import ConfigError
from talkface.planner.catalog import GPUCatalog
from talkface.planner.deployment import Deployment, StageConfig
from talkface.planner.options import StageOption, StageSizer
from talkface.planner.packing import Card, Replica, pack
from talkface.planner.plan import PlanOptions
from talkface.planner.profile import Profile, Stage
from talkface.planner.simulate import SimOptions, SimulationResult, simulate
from talkface.planner.sizing import ReplyShape, StageDemand
from talkface.planner.workload import Workload

Progress = Callable[[str], None]


def ttff_estimate_s(chosen: Mapping[Stage, StageOption]) -> tuple[float, float]:
    """Closed-form (mean, p95) TTFF: means add up, the tails add in quadrature."""
    mean = sum(o.estimate.first_mean_s for o in chosen.values())
    spread = math.sqrt(
        sum((o.estimate.first_p95_s - o.estimate.first_mean_s) ** 2 for o in chosen.values())
    )
    return mean, mean + spread


def _cost(chosen: Mapping[Stage, StageOption]) -> float:
    return sum(o.cost_usd_per_h for o in chosen.values())


def _greedy(
    options: Mapping[Stage, list[StageOption]], target_p95_s: float
) -> dict[Stage, StageOption] | None:
    """Marginal analysis: cheapest start, then the best ms-per-dollar upgrades."""
    current = {s: opts[0] for s, opts in options.items()}
    while (p95 := ttff_estimate_s(current)[1]) > target_p95_s:
        best: tuple[float, Stage, StageOption] | None = None
        for stage, opts in options.items():
            at = opts.index(current[stage])
            for option in opts[at + 1 : at + 4]:
                gain = p95 - ttff_estimate_s({**current, stage: option})[1]
                extra = option.cost_usd_per_h - current[stage].cost_usd_per_h
                if gain > 0 and (best is None or gain / max(extra, 1e-9) > best[0]):
                    best = (gain / max(extra, 1e-9), stage, option)
        if best is None:
            return None
        current[best[1]] = best[2]
    return current


def choose(
    options: Mapping[Stage, list[StageOption]], target_p95_s: float
) -> tuple[dict[Stage, StageOption], bool]:
    """The cheapest mix of per-stage options whose closed-form TTFF p95 meets the target.

    Two searches propose mixes: greedy marginal analysis (cheapest start, then the best
    milliseconds per dollar), and a Lagrangian sweep (for each price of latency ``lam``
    every stage picks the option minimising ``cost + lam * its p95``). The cheapest mix
    that meets the target wins. Then each stage in turn is moved to its cheapest option
    that keeps the mix within the target, until nothing changes. Returns the fastest mix
    (and False) when none meets the target.
    """

    def mix(lam: float) -> dict[Stage, StageOption]:
        return {
            s: min(opts, key=lambda o: o.cost_usd_per_h + lam * o.estimate.first_p95_s)
            for s, opts in options.items()
        }

    def meets(chosen: Mapping[Stage, StageOption]) -> bool:
        return ttff_estimate_s(chosen)[1] <= target_p95_s

    fastest = {s: min(opts, key=lambda o: o.estimate.first_p95_s) for s, opts in options.items()}
    if not meets(fastest):
        return fastest, False
    best = _greedy(options, target_p95_s) or fastest
    for lam in [0.0] + [10 ** (k / 8) for k in range(-24, 57)]:  # 0.001 .. 1e7 $/h per s
        chosen = mix(lam)
        if meets(chosen) and _cost(chosen) < _cost(best):
            best = chosen
    improved = True
    while improved:
        improved = False
        for stage, opts in options.items():
            for option in sorted(opts, key=lambda o: o.cost_usd_per_h):
                if option.cost_usd_per_h >= best[stage].cost_usd_per_h:
                    break
                trial = {**best, stage: option}
                if meets(trial):
                    best, improved = trial, True
                    break
    return dict(best), True


def layout(
    chosen: Mapping[Stage, StageOption], catalog: GPUCatalog, options: PlanOptions
) -> tuple[tuple[Card, ...], Deployment, dict[Stage, float]]:
    """Pack the chosen replicas on cards; the deployment the simulator runs."""
    cards: list[Card] = []
    num_gpus: dict[Stage, float] = {}
    by_device: dict[str, list[Replica]] = {}
    for option in chosen.values():
        if option.device == "cpu":
            continue
        by_device.setdefault(option.device, []).extend(
            Replica(
                stage=option.stage,
                index=i,
                memory_mb=option.memory_mb,
                compute_share=min(1.0, option.estimate.busy),
                whole_card=option.whole_card,
                min_share=option.num_gpus,
            )
            for i in range(option.replicas)
        )
    for device, replicas in by_device.items():
        packing = pack(
            replicas,
            catalog.get(device),
            gpu_name=device,
            memory_headroom=options.memory_headroom,
            utilisation_cap=options.card_utilisation_cap,
            first_index=len(cards),
        )
        cards.extend(packing.cards)
        num_gpus.update(packing.num_gpus)
    shared: dict[tuple[Stage, int], int] = {}
    names: list[str] = []
    for card in cards:
        if len(card.replicas) > 1:
            for replica in card.replicas:
                shared[(replica.stage, replica.index)] = len(names)
            names.append(f"{card.gpu}#{card.index}")
    stages = {
        stage: StageConfig(
            stage=stage,
            device=o.device,
            replicas=o.replicas,
            max_batch_size=o.max_batch_size,
            max_wait_ms=options.max_wait_ms,
            cost_speed=o.cost_speed,
            decode_speed=o.decode_speed,
            cards=tuple(shared.get((stage, i), -1) for i in range(o.replicas))
            if o.device != "cpu"
            else (),
            num_gpus=num_gpus.get(stage, 0.0),
        )
        for stage, o in chosen.items()
    }
    return (
        tuple(cards),
        Deployment(stages=stages, card_count=len(names), card_names=tuple(names)),
        num_gpus,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterChoice:
    """What the search settled on at the peak."""

    chosen: dict[Stage, StageOption]
    cards: tuple[Card, ...]
    deployment: Deployment
    num_gpus: dict[Stage, float]
    analytic_feasible: bool
    simulation: SimulationResult | None
    corrections: tuple[str, ...]


def _culprit(
    sim: SimulationResult, chosen: Mapping[Stage, StageOption], options: PlanOptions
) -> Stage | None:
    engines = [
        s
        for s, o in chosen.items()
        if o.device != "cpu" or o.replicas > 1 or s in ("asr", "llm", "tts", "animator")
    ]
    if sim.ttff_p95_ms <= options.slo.ttff_p95_ms:
        streaming = [s for s in ("animator", "tts") if s in engines]
        return max(streaming, key=lambda s: sim.stages[s].busy, default=None)
    excess = {
        s: sim.breakdown_ms.get(s, 0.0) / 1000.0 - chosen[s].unloaded_first_s for s in engines
    }
    return max(excess, key=excess.__getitem__, default=None)


def search_cluster(
    profile: Profile,
    workload: Workload,
    catalog: GPUCatalog,
    shape: ReplyShape,
    demands: Mapping[Stage, StageDemand],
    sizers: Mapping[Stage, StageSizer],
    peak_sessions: int,
    options: PlanOptions,
    progress: Progress = lambda _message: None,
) -> ClusterChoice:
    """Search, pack and (optionally) confirm by simulation at ``peak_sessions``.

    Raises:
        ConfigError: some stage has no feasible option on any allowed device.
    """
    per_stage: dict[Stage, list[StageOption]] = {}
    for stage, sizer in sizers.items():
        progress(f"sizing {stage}")
        found = sizer.options_for(demands[stage])
        if not found:
            devices = ", ".join(sizer.devices())
            raise ConfigError(
                f"no configuration of {stage} keeps up with {peak_sessions} sessions on "
                f"{devices}: it needs more memory or speed than these GPUs have, or its "
                "profile is too slow to keep up with playback"
            )
        per_stage[stage] = found
    target_s = options.latency_margin * options.slo.ttff_p95_ms / 1000.0
    chosen, feasible = choose(per_stage, target_s)
    cards, deployment, num_gpus = layout(chosen, catalog, options)
    corrections: list[str] = []
    sim = None
    if options.simulate:
        sim_options = SimOptions(seed=options.seed, target_turns=options.sim_turns)
        for round_ in range(options.bump_rounds + 1):
            progress(f"simulating {peak_sessions} sessions (round {round_ + 1})")
            sim = simulate(deployment, profile, workload, peak_sessions, sim_options)
            if sim.meets(options.slo) or round_ == options.bump_rounds:
                break
            stage = _culprit(sim, chosen, options)
            if stage is None:
                break
            old = chosen[stage]
            more = old.replicas + max(1, math.ceil(0.2 * old.replicas))
            chosen[stage] = sizers[stage].option(
                old.device, demands[stage], old.max_batch_size, more, old.min_share
            )
            why = (
                f"TTFF p95 {sim.ttff_p95_ms:.0f} ms > {options.slo.ttff_p95_ms:.0f} ms"
                if sim.ttff_p95_ms > options.slo.ttff_p95_ms
                else f"only {sim.sustained_share(options.slo):.1%} of replies sustained"
            )
            corrections.append(
                f"simulated {why}: {stage} {old.replicas} -> {more} replicas "
                f"(its share of TTFF was {sim.breakdown_ms.get(stage, 0):.0f} ms vs "
                f"{old.unloaded_first_s * 1000:.0f} ms unloaded)"
            )
            cards, deployment, num_gpus = layout(chosen, catalog, options)
    return ClusterChoice(
        chosen=chosen,
        cards=cards,
        deployment=deployment,
        num_gpus=num_gpus,
        analytic_feasible=feasible,
        simulation=sim,
        corrections=tuple(corrections),
    )
