"""``make_plan``: from a profile, a workload and a session count to a complete :class:`Plan`.

A profile measured on GPUs (or the ``published`` preset) gives a **cluster** plan: GPU
pools per stage, packed, confirmed by simulation, with autoscaling bounds and costs. A
profile measured on a CPU box gives a **CPU-box** plan: how many sessions one such box
serves within the SLO (simulated) and how many boxes the peak needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from talkface.errors import ConfigError
from talkface.planner.catalog import GPUCatalog
from talkface.planner.costmodel import ServiceModel
from talkface.planner.deployment import Deployment
from talkface.planner.offline import plan_offline
from talkface.planner.options import StageOption, StageSizer
from talkface.planner.packing import Card
from talkface.planner.plan import CpuBox, Plan, PlanOptions, StagePlan
from talkface.planner.profile import Profile, Stage
from talkface.planner.search import layout, search_cluster, ttff_estimate_s
from talkface.planner.simulate import SimOptions, SimulationResult, max_sessions, simulate
from talkface.planner.sizing import ReplyShape, StageDemand, reply_shape, stage_demands
from talkface.planner.workload import Workload

Progress = Callable[[str], None]
_ESTIMATE_NOTE = (
    "Every engine number comes from the published preset: the seed's per-module table "
    "turned into curves with the assumptions listed below. They are estimates, not "
    "measurements; profile your own engines with `talkface bench profile`."
)


def _check_devices(profile: Profile, catalog: GPUCatalog) -> None:
    for stage, engine in profile.engines.items():
        if engine.on_gpu and engine.device not in catalog.gpus:
            raise ConfigError(
                f"engines.{stage} was profiled on {engine.device!r}, which the GPU catalog "
                f"does not list ({', '.join(catalog.gpus)}); add it to a --gpus file"
            )


def _streams_per_replica(sizer: StageSizer, option: StageOption, demand: StageDemand) -> float:
    model, decode, _, _ = sizer.models(option.device)
    if decode is not None:
        return float(option.max_batch_size)
    per_s = model.units_per_s(option.max_batch_size, demand.work_units)
    return per_s / sizer.profile.pipeline.fps if sizer.engine.cost.unit == "frame" else per_s


def _ongoing(option: StageOption) -> int:
    est = option.estimate
    if option.stage == "llm":
        return max(1, math.ceil(est.mean_batch))
    per_replica_s = est.requests_per_s / max(1, option.replicas)
    return max(1, math.ceil(per_replica_s * est.first_mean_s))


def _gpu_cost(cards: tuple[Card, ...], catalog: GPUCatalog) -> float:
    return sum(catalog.gpus[c.gpu].on_demand_usd_per_h for c in cards)


def _stage_costs(
    cards: tuple[Card, ...], options: Mapping[Stage, StageOption], catalog: GPUCatalog
) -> dict[Stage, float]:
    """Each card's price split by its replicas' ``num_gpus``; CPU stages by cores."""
    costs = dict.fromkeys(options, 0.0)
    for card in cards:
        price = catalog.gpus[card.gpu].on_demand_usd_per_h
        for replica, share in zip(card.replicas, card.num_gpus, strict=True):
            costs[replica.stage] += price * share / card.share_used
    for stage, option in options.items():
        costs[stage] += option.cpu_cores * catalog.vcpu_on_demand_usd_per_h
    return costs


def _counts(cards: tuple[Card, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for card in cards:
        counts[card.gpu] = counts.get(card.gpu, 0) + 1
    return counts


def _scaled(sizer: StageSizer, option: StageOption, demand: StageDemand) -> StageOption:
    """The same stage at a lower load: fewest replicas no slower than at the peak."""
    if sizer.engine.hosting == "per_session":
        return sizer.option(option.device, demand, option.max_batch_size, 1)
    replicas = sizer.min_replicas(
        option.device, demand, option.max_batch_size, first_p95_s=option.estimate.first_p95_s
    )
    replicas = min(option.replicas, replicas or option.replicas)
    return sizer.option(option.device, demand, option.max_batch_size, replicas, option.min_share)


def _curve(
    deployment: Deployment,
    profile: Profile,
    workload: Workload,
    peak: int,
    options: PlanOptions,
    known: dict[int, SimulationResult],
    progress: Progress,
) -> dict[int, SimulationResult]:
    sim_options = SimOptions(seed=options.seed, target_turns=options.sim_turns)
    results = dict(known)
    for point in options.curve_points:
        n = max(1, round(point * peak))
        if n not in results:
            progress(f"simulating {n} sessions for the load curve")
            results[n] = simulate(deployment, profile, workload, n, sim_options)
    return results


def _max_sessions(
    deployment: Deployment,
    profile: Profile,
    workload: Workload,
    options: PlanOptions,
    results: dict[int, SimulationResult],
    progress: Progress,
    *,
    rel_tol: float,
) -> tuple[int, dict[int, SimulationResult]]:
    passing = [n for n, r in results.items() if r.meets(options.slo)]
    start = max(passing) if passing else min(results, default=1)
    return max_sessions(
        deployment,
        profile,
        workload,
        options.slo,
        SimOptions(seed=options.seed, target_turns=options.sim_turns),
        start=start,
        rel_tol=rel_tol,
        known=results,
        progress=progress,
    )


def _plan_cluster(
    profile: Profile,
    workload: Workload,
    catalog: GPUCatalog,
    sessions: int,
    options: PlanOptions,
    progress: Progress,
) -> Plan:
    peak = math.ceil(sessions * workload.peak_factor)
    trough = max(1.0, sessions * workload.trough_factor)
    shape = reply_shape(workload, profile.pipeline)
    demands = stage_demands(workload, profile.pipeline, peak, shape)
    sizers = {
        s: StageSizer(s, e, profile, workload, shape, catalog, options)
        for s, e in profile.engines.items()
    }
    choice = search_cluster(
        profile, workload, catalog, shape, demands, sizers, peak, options, progress
    )
    average = {
        s: _scaled(sizers[s], o, stage_demands(workload, profile.pipeline, sessions, shape)[s])
        for s, o in choice.chosen.items()
    }
    quiet = {
        s: _scaled(sizers[s], o, stage_demands(workload, profile.pipeline, trough, shape)[s])
        for s, o in choice.chosen.items()
    }
    average_cards = layout(average, catalog, options)[0]
    cpu_cost = sum(o.cpu_cores for o in choice.chosen.values()) * catalog.vcpu_on_demand_usd_per_h
    cost_peak = _gpu_cost(choice.cards, catalog) + cpu_cost
    cost_average = (
        _gpu_cost(average_cards, catalog)
        + sum(o.cpu_cores for o in average.values()) * catalog.vcpu_on_demand_usd_per_h
    )
    costs = _stage_costs(choice.cards, choice.chosen, catalog)
    stages = {
        stage: StagePlan(
            stage=stage,
            device=o.device,
            hosting=sizers[stage].engine.hosting,
            replicas=0 if sizers[stage].engine.hosting == "per_session" else o.replicas,
            replicas_average=average[stage].replicas,
            replicas_min=quiet[stage].replicas,
            max_batch_size=o.max_batch_size,
            max_wait_ms=options.max_wait_ms,
            num_gpus=choice.num_gpus.get(stage, 0.0),
            memory_mb=o.memory_mb,
            cpu_cores=o.cpu_cores,
            target_ongoing_requests=_ongoing(o),
            streams_per_replica=_streams_per_replica(sizers[stage], o, demands[stage]),
            demand=demands[stage],
            estimate=o.estimate,
            speed=o.cost_speed,
            cost_usd_per_h=costs[stage],
        )
        for stage, o in choice.chosen.items()
    }
    mean_s, p95_s = ttff_estimate_s(choice.chosen)
    sim, curve, best = choice.simulation, (), None
    notes = [_ESTIMATE_NOTE] if profile.is_estimate else []
    if sim is not None:
        results = _curve(choice.deployment, profile, workload, peak, options, {peak: sim}, progress)
        best, results = _max_sessions(
            choice.deployment,
            profile,
            workload,
            options,
            results,
            progress,
            rel_tol=options.max_sessions_rel_tol,
        )
        curve = tuple(results[n] for n in sorted(results))
        if not sim.meets(options.slo):
            notes.append(
                f"After {len(choice.corrections)} corrections the simulated configuration "
                f"still misses the SLO at {peak} sessions (TTFF p95 {sim.ttff_p95_ms:.0f} ms); "
                "the GPUs in the catalog may be too slow for it, or the SLO too tight."
            )
    elif not choice.analytic_feasible:
        notes.append(
            "The closed-form search could not reach the latency target with the "
            "GPUs allowed; the plan is the fastest it found."
        )
    meets = (
        sim.meets(options.slo)
        if sim is not None
        else choice.analytic_feasible and p95_s * 1000 <= options.slo.ttff_p95_ms
    )
    return Plan(
        mode="cluster",
        sessions=sessions,
        peak_sessions=peak,
        profile=profile,
        workload=workload,
        catalog=catalog,
        options=options,
        stages=stages,
        cards=choice.cards,
        deployment=choice.deployment,
        shape=shape,
        ttff_estimate_ms=(mean_s * 1000, p95_s * 1000),
        simulation=sim,
        curve=curve,
        max_sessions=best,
        meets_slo=meets,
        cost_peak_usd_per_h=cost_peak,
        cost_average_usd_per_h=cost_average,
        cost_per_session_hour_usd=cost_average / sessions,
        gpu_counts=_counts(choice.cards),
        gpu_counts_average=_counts(average_cards),
        corrections=choice.corrections,
        notes=tuple(notes),
        offline=plan_offline(
            profile, workload, catalog, gpus=options.gpus, memory_headroom=options.memory_headroom
        ),
    )


def _plan_cpu_box(
    profile: Profile,
    workload: Workload,
    catalog: GPUCatalog,
    sessions: int,
    options: PlanOptions,
    progress: Progress,
) -> Plan:
    deployment = Deployment.cpu_box(profile)
    assert deployment.cpu_cores is not None
    cores = deployment.cpu_cores
    peak = math.ceil(sessions * workload.peak_factor)
    shape = reply_shape(workload, profile.pipeline)
    one = stage_demands(workload, profile.pipeline, 1, shape)
    sizers = {
        s: StageSizer(s, e, profile, workload, shape, catalog, options)
        for s, e in profile.engines.items()
    }
    # Closed-form guess: the box's cores over one session's CPU demand.
    cpu_per_session = sum(
        one[s].requests_per_s * ServiceModel(e.cost).mean_s(1, one[s].work_units) * e.threads
        for s, e in profile.engines.items()
        if s != "llm"
    ) + one["llm"].requests_per_s * profile.engines["llm"].threads * (
        ServiceModel(profile.engines["llm"].cost).mean_s(1, one["llm"].work_units)
        + workload.reply_tokens.mean * ServiceModel(profile.engines["llm"].decode).mean_s(1, 1.0)
    )
    guess = max(1, math.floor(cores * options.cpu_utilisation / cpu_per_session))
    notes = [_ESTIMATE_NOTE] if profile.is_estimate else []
    sim = None
    curve: tuple[SimulationResult, ...] = ()
    if options.simulate:
        sim_options = SimOptions(seed=options.seed, target_turns=options.sim_turns)
        per_box, results = max_sessions(
            deployment, profile, workload, options.slo, sim_options, start=guess, progress=progress
        )
        for n in (1, 2, 4, per_box + 1):
            if n not in results:
                progress(f"simulating {n} sessions for the load curve")
                results[n] = simulate(deployment, profile, workload, n, sim_options)
        curve = tuple(results[n] for n in sorted(results))
        sim = results[max(1, per_box)]
    else:
        per_box = guess
    if per_box == 0:
        notes.append(
            "One box cannot serve even one session within the SLO; the plan gives "
            "each session its own box and still misses the SLO."
        )
    per_box_found, per_box = per_box, max(1, per_box)
    boxes = math.ceil(peak / per_box)
    box_price = cores * catalog.vcpu_on_demand_usd_per_h
    load = stage_demands(workload, profile.pipeline, per_box, shape)
    stages = {}
    chosen = {}
    for stage, config in deployment.stages.items():
        option = sizers[stage].option("cpu", load[stage], config.max_batch_size, 1)
        chosen[stage] = option
        busy = sim.stages[stage].busy if sim is not None else option.estimate.busy
        stages[stage] = StagePlan(
            stage=stage,
            device="cpu",
            hosting=sizers[stage].engine.hosting,
            replicas=boxes,
            replicas_average=math.ceil(sessions / per_box),
            replicas_min=math.ceil(sessions * workload.trough_factor / per_box),
            max_batch_size=config.max_batch_size,
            max_wait_ms=config.max_wait_ms,
            num_gpus=0.0,
            memory_mb=0.0,
            cpu_cores=float(sizers[stage].engine.threads),
            target_ongoing_requests=_ongoing(option),
            streams_per_replica=_streams_per_replica(sizers[stage], option, load[stage]),
            demand=load[stage],
            estimate=option.estimate,
            speed=1.0,
            cost_usd_per_h=boxes
            * box_price
            * busy
            * sizers[stage].engine.threads
            / max(cores, 1e-9),
        )
    mean_s, p95_s = ttff_estimate_s(chosen)
    # Not simulated, a box "serves" its closed-form guess; only the estimate's own p95
    # can say whether that meets the SLO.
    meets = per_box_found >= 1 if sim is not None else p95_s * 1000 <= options.slo.ttff_p95_ms
    return Plan(
        mode="cpu_box",
        sessions=sessions,
        peak_sessions=peak,
        profile=profile,
        workload=workload,
        catalog=catalog,
        options=options,
        stages=stages,
        cards=(),
        deployment=deployment,
        shape=shape,
        ttff_estimate_ms=(mean_s * 1000, p95_s * 1000),
        simulation=sim,
        curve=curve,
        max_sessions=(per_box_found if sim is not None else None),
        meets_slo=meets,
        cost_peak_usd_per_h=boxes * box_price,
        cost_average_usd_per_h=math.ceil(sessions / per_box) * box_price,
        cost_per_session_hour_usd=math.ceil(sessions / per_box) * box_price / sessions,
        gpu_counts={},
        gpu_counts_average={},
        notes=tuple(notes),
        cpu_box=CpuBox(cores=cores, sessions_per_box=per_box, boxes=boxes, box_usd_per_h=box_price),
    )


def make_plan(
    profile: Profile,
    *,
    sessions: int,
    workload: Workload | None = None,
    catalog: GPUCatalog | None = None,
    options: PlanOptions | None = None,
    progress: Progress | None = None,
) -> Plan:
    """Plan capacity for ``sessions`` concurrent sessions.

    Args:
        profile: measured engines, or :meth:`Profile.from_published`.
        sessions: concurrent sessions on an average busy day (the plan is sized for
            ``sessions * workload.peak_factor``).
        workload: what users do (default: the shipped workload).
        catalog: GPUs and prices (default: the shipped catalog).
        options: planning options.
        progress: told what is being done, one short line at a time.

    Raises:
        ConfigError: the inputs cannot give a plan; the message says why.
    """
    if sessions < 1:
        raise ConfigError(f"--sessions must be at least 1, got {sessions}")
    workload = workload or Workload.default()
    catalog = catalog or GPUCatalog.default()
    options = options or PlanOptions()
    if options.gpus is not None:
        for name in options.gpus:
            catalog.get(name)
    _check_devices(profile, catalog)
    report = progress or (lambda _message: None)
    if profile.cpu_only:
        return _plan_cpu_box(profile, workload, catalog, sessions, options, report)
    return _plan_cluster(profile, workload, catalog, sessions, options, report)


__all__ = ["ReplyShape", "make_plan"]
