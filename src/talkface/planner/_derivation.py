"""Step-by-step derivations of a plan's numbers, as Markdown lines for the report.

Each stage reads: what the profile says one device does (streams), what that becomes on
the chosen device, what the peak asks for, how many replicas that takes, what latency
they give, how many GPUs after packing, what it costs, and the autoscaling bounds.
"""

from __future__ import annotations

import math

from talkface.planner.costmodel import ServiceModel
from talkface.planner.plan import Plan, StagePlan
from talkface.planner.published import PUBLISHED_TABLE

_UNIT_WORDS = {"audio_s": "s of audio", "token": "tokens", "frame": "frames"}


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.0f} ms" if ms >= 10 else f"{ms:.2g} ms"


def _stream_word(plan: Plan, sp: StagePlan) -> str:
    return "s of video" if plan.profile.engines[sp.stage].cost.unit == "frame" else "s of audio"


def _profile_line(plan: Plan, sp: StagePlan) -> str:
    engine = plan.profile.engines[sp.stage]
    model = ServiceModel(engine.cost)
    work, batch = sp.demand.work_units, sp.max_batch_size
    t = model.mean_s(batch, work)
    units_per_s = batch * work / t
    fps = plan.profile.pipeline.fps
    streams = units_per_s / fps if engine.cost.unit == "frame" else units_per_s
    where = "published estimate" if engine.estimate else "measured"
    row = next((r for r in PUBLISHED_TABLE if r.stage == sp.stage), None)
    quote = f' (table: "{row.quote}")' if engine.estimate and row is not None else ""
    return (
        f"**Profile.** {engine.backend} on **{engine.device}** ({where}{quote}): one batch of "
        f"{batch} requests of {work:.2f} {_UNIT_WORDS[engine.cost.unit]} takes {_ms(t)} "
        f"-> {units_per_s:,.1f} {_UNIT_WORDS[engine.cost.unit]} per second, i.e. "
        f"**{streams:,.1f} streams** (a stream is 1 {_stream_word(plan, sp)} per second)."
    )


def _device_line(plan: Plan, sp: StagePlan) -> str:
    engine = plan.profile.engines[sp.stage]
    if sp.device == engine.device or sp.device == "cpu":
        return (
            f"**Device.** It runs where it was profiled ({sp.device}): "
            f"**{sp.streams_per_replica:,.1f} streams per replica** at max_batch_size "
            f"{sp.max_batch_size}."
        )
    src, dst = plan.catalog.gpus[engine.device], plan.catalog.gpus[sp.device]
    if engine.cost.bound == "memory":
        basis = (
            f"memory bandwidth {dst.memory_bandwidth_gbps:g} / {src.memory_bandwidth_gbps:g} GB/s"
        )
    else:
        basis = f"relative speed {dst.relative_speed:g} / {src.relative_speed:g}"
    variant = engine.variants.get(sp.device)
    extra = f" x {variant.speed_factor:g} ({variant.note})" if variant else ""
    return (
        f"**On {sp.device}.** {basis}{extra} = x{sp.speed:.2f} -> "
        f"**{sp.streams_per_replica:,.1f} streams per replica** at max_batch_size "
        f"{sp.max_batch_size}."
    )


def _demand_line(plan: Plan, sp: StagePlan, turns_per_s: float) -> str:
    d = sp.demand
    per_turn = d.requests_per_s / turns_per_s if turns_per_s else 0.0
    unit = _UNIT_WORDS[plan.profile.engines[sp.stage].cost.unit]
    return (
        f"**Demand at the peak.** {turns_per_s:,.1f} turns/s x {per_turn:.2f} requests "
        f"per turn = {d.requests_per_s:,.1f} requests/s of {d.work_units:.2f} {unit} = "
        f"**{d.media_s_per_s:,.1f} streams**."
    )


def _replica_lines(plan: Plan, sp: StagePlan) -> list[str]:
    max_util = plan.options.max_utilisation
    need = sp.demand.media_s_per_s / (sp.streams_per_replica * max_util)
    floor = max(1, math.ceil(need - 1e-9))
    extra = (
        ""
        if sp.replicas <= floor
        else f"; {sp.replicas - floor} more for latency or to keep up with "
        "playback (see the estimate and any simulator corrections)"
    )
    est = plan.stages[sp.stage].estimate
    sim = plan.simulation
    simulated = (
        f"; simulated: mean {sim.breakdown_ms.get(sp.stage, 0):,.0f} ms, replica "
        f"busy {sim.stages[sp.stage].busy:.0%}, mean batch "
        f"{sim.stages[sp.stage].mean_batch_size:.2f}"
        if sim
        else ""
    )
    return [
        f"**Replicas.** {sp.demand.media_s_per_s:,.1f} / ({sp.streams_per_replica:,.1f} x "
        f"{max_util:.2f} max utilisation) = {need:,.2f} -> at least {floor}; the plan has "
        f"**{sp.replicas}**{extra}.",
        f"**Latency.** Closed form: mean batch {est.mean_batch:.2f}, replica busy "
        f"{est.busy:.0%}, this stage's share of the time to first frame mean "
        f"{_ms(est.first_mean_s)}, p95 {_ms(est.first_p95_s)}{simulated}.",
    ]


def _gpu_line(plan: Plan, sp: StagePlan) -> str:
    engine = plan.profile.engines[sp.stage]
    gpu = plan.catalog.gpus[sp.device]
    usable_mb = gpu.memory_mb * (1 - plan.options.memory_headroom)
    cards = [c for c in plan.cards if any(r.stage == sp.stage for r in c.replicas)]
    shared = sum(1 for c in cards if len(c.replicas) > 1)
    why = (
        "an LLM server takes a whole GPU for its KV cache"
        if sp.stage == "llm"
        else f"max(memory {sp.memory_mb / usable_mb:.2f}, busy {sp.estimate.busy:.2f} / "
        f"{plan.options.card_utilisation_cap:.2f} card cap), rounded up, or more to limit "
        "how many replicas share a card"
    )
    base = engine.variants[sp.device].vram_mb if sp.device in engine.variants else engine.vram_mb
    return (
        f"**GPUs.** One replica holds {sp.memory_mb / 1000:.2f} GB (model {base / 1000:.2f} GB "
        f"+ {sp.max_batch_size} x {engine.vram_mb_per_request / 1000:.2f} GB per request) of "
        f"{usable_mb / 1000:.1f} GB usable on a {sp.device}; num_gpus = **{sp.num_gpus:g}** "
        f"({why}). Packed: its replicas are on {len(cards)} {sp.device} cards ({shared} shared "
        f"with other replicas) -> **${sp.cost_usd_per_h:,.2f}/h** at "
        f"${gpu.on_demand_usd_per_h:g}/h per card."
    )


def _scaling_line(plan: Plan, sp: StagePlan) -> str:
    quiet = max(1, round(plan.sessions * plan.workload.trough_factor))
    return (
        f"**Autoscaling.** min_replicas {sp.replicas_min} (quietest hour, ~{quiet} "
        f"sessions), {sp.replicas_average} at the average ({plan.sessions}), "
        f"max_replicas {sp.replicas} (peak, {plan.peak_sessions}); "
        f"target_ongoing_requests {sp.target_ongoing_requests} (Little's law at the peak)."
    )


def _llm_profile_line(plan: Plan, sp: StagePlan) -> str:
    engine = plan.profile.engines["llm"]
    assert engine.decode is not None
    prefill, decode = ServiceModel(engine.cost), ServiceModel(engine.decode)
    b = sp.max_batch_size
    where = "published estimate" if engine.estimate else "measured"
    return (
        f"**Profile.** {engine.backend} on **{engine.device}** ({where}): prefill of "
        f"{sp.demand.work_units:,.0f} tokens {_ms(prefill.mean_s(1, sp.demand.work_units))}; "
        f"one decoding step {_ms(decode.mean_s(1, 1.0))} for 1 sequence"
        + (f", {_ms(decode.mean_s(b, 1.0))} for {b}." if b > 1 else ".")
    )


def _llm_lines(plan: Plan, sp: StagePlan, turns_per_s: float) -> list[str]:
    engine = plan.profile.engines["llm"]
    assert engine.decode is not None
    wl = plan.workload
    b = sp.max_batch_size
    deployment = plan.deployment.stages["llm"]
    prefill = ServiceModel(engine.cost, speed=deployment.cost_speed)
    decode = ServiceModel(engine.decode, speed=deployment.decode_speed)
    prefill_s = prefill.mean_s(1, sp.demand.work_units)
    full_step = decode.mean_s(b, 1.0)
    hold_s = prefill_s + (wl.reply_tokens.mean - 1) * full_step
    per_replica = b / hold_s  # replies per second with every slot busy
    need = sp.demand.requests_per_s / (per_replica * plan.options.max_utilisation)
    running = sp.estimate.mean_batch
    step = decode.mean_s(max(1, round(running)), 1.0)
    fp8 = ", FP8 variant" if sp.device in engine.variants else ""
    return [
        _llm_profile_line(plan, sp),
        f"**On {sp.device}.** prefill x{deployment.cost_speed:.2f}, decoding "
        f"x{deployment.decode_speed:.2f} (memory bandwidth{fp8}): prefill {_ms(prefill_s)}; "
        f"with all {b} slots busy a step takes {_ms(full_step)}, a "
        f"{wl.reply_tokens.mean:.0f}-token reply holds its slot {hold_s:.2f} s, so one replica "
        f"finishes at most **{per_replica:,.1f} replies/s**.",
        f"**Demand at the peak.** {turns_per_s:,.1f} turns/s x (1 - {wl.faq_cache_hit_rate:.0%} "
        f"FAQ cache hits) = **{sp.demand.requests_per_s:,.1f} replies/s**.",
        f"**Replicas.** {sp.demand.requests_per_s:,.1f} / ({per_replica:,.1f} x "
        f"{plan.options.max_utilisation:.2f} max utilisation) = {need:,.2f} -> at least "
        f"{max(1, math.ceil(need - 1e-9))}; the plan has **{sp.replicas}**, so each replica "
        f"runs {running:.1f} sequences on average (a birth-death model of continuous "
        f"batching), a step takes ~{_ms(step)} and the first sentence "
        f"({wl.first_sentence_tokens.mean:.0f} tokens) comes quickly.",
    ]


def _per_session_lines(plan: Plan, sp: StagePlan) -> list[str]:
    engine = plan.profile.engines[sp.stage]
    model = ServiceModel(engine.cost)
    t = model.mean_s(1, sp.demand.work_units)
    busy = sp.demand.requests_per_s * t
    return [
        f"**Profile.** {engine.backend} ({'published estimate' if engine.estimate else 'measured'}"
        f"): {_ms(t)} per request of {sp.demand.work_units:.3g} "
        f"{_UNIT_WORDS[engine.cost.unit]} on one core; each session runs its own.",
        f"**Demand at the peak.** {sp.demand.requests_per_s:,.0f} requests/s x {_ms(t)} = "
        f"**{busy:,.2f} cores busy**.",
        f"**CPUs.** {busy:,.2f} / {plan.options.cpu_utilisation:.2f} CPU utilisation = "
        f"{sp.cpu_cores:,.1f} vCPUs x ${plan.catalog.vcpu_on_demand_usd_per_h:g}/h = "
        f"**${sp.cost_usd_per_h:,.2f}/h** (they run in the gateways; see Scale-out settings).",
    ]


def _box_stage_lines(plan: Plan, sp: StagePlan) -> list[str]:
    box = plan.cpu_box
    assert box is not None
    engine = plan.profile.engines[sp.stage]
    d = sp.demand
    turns_per_s = box.sessions_per_box / plan.workload.cycle_s
    per_turn = d.requests_per_s / turns_per_s if turns_per_s else 0.0
    unit = _UNIT_WORDS[engine.cost.unit]
    config = plan.deployment.stages.get(sp.stage)
    if sp.hosting == "per_session":
        where = "one worker thread per session"
    elif config is not None and config.scheduling == "sentence_turns":
        where = (
            f"one engine per box, {engine.threads} thread(s), one reply decoded at a time, "
            f"up to {config.max_concurrent_batches} replies taking turns by sentence"
        )
    else:
        where = (
            f"one engine per box, {engine.threads} thread(s), max_batch_size "
            f"{sp.max_batch_size}, max_wait_ms {sp.max_wait_ms:g}"
        )
    lines = [
        _llm_profile_line(plan, sp) if sp.stage == "llm" else _profile_line(plan, sp),
        f"**Load on one box.** {box.sessions_per_box} sessions take {turns_per_s:.3f} turns/s "
        f"x {per_turn:.2f} requests per turn = {d.requests_per_s:.2f} requests/s of "
        f"{d.work_units:.2f} {unit} ({where}).",
    ]
    sim = plan.simulation
    if sim is not None:
        st = sim.stages[sp.stage]
        lines.append(
            f"**Simulated on the box.** mean batch {st.mean_batch_size:.2f}, queue wait mean "
            f"{st.wait_mean_ms:,.0f} ms, busy {st.busy:.0%} of its thread(s) (counted at full "
            f"speed; the cores are shared), its TTFF segment mean "
            f"{sim.breakdown_ms.get(sp.stage, 0):,.0f} ms, p95 "
            f"{sim.breakdown_p95_ms.get(sp.stage, 0):,.0f} ms."
        )
    return lines


def stage_derivation(plan: Plan, sp: StagePlan) -> list[str]:
    """Numbered Markdown steps that derive one stage's GPUs (or CPUs) and cost."""
    turns_per_s = plan.peak_sessions / plan.workload.cycle_s
    if plan.mode == "cpu_box":
        lines = _box_stage_lines(plan, sp)
        return [f"{i}. {line}" for i, line in enumerate(lines, 1)]
    if sp.hosting == "per_session":
        lines = _per_session_lines(plan, sp)
    elif sp.stage == "llm":
        lines = _llm_lines(plan, sp, turns_per_s)
        lines.append(_replica_lines(plan, sp)[1])
    else:
        lines = [
            _profile_line(plan, sp),
            _device_line(plan, sp),
            _demand_line(plan, sp, turns_per_s),
            *_replica_lines(plan, sp),
        ]
    if plan.mode == "cluster" and sp.device != "cpu":
        lines += [_gpu_line(plan, sp), _scaling_line(plan, sp)]
    return [f"{i}. {line}" for i, line in enumerate(lines, 1)]


def box_derivation(plan: Plan) -> list[str]:
    """How the CPU-box plan's session count per box and box count were found."""
    box = plan.cpu_box
    assert box is not None
    cores_per_session = 0.0
    for stage, sp in plan.stages.items():
        engine = plan.profile.engines[stage]
        per_session = sp.demand.requests_per_s / max(1, box.sessions_per_box)
        model = ServiceModel(engine.cost)
        if stage == "llm" and engine.decode is not None:
            decode_s = ServiceModel(engine.decode).mean_s(1, 1.0)
            hold = (
                model.mean_s(1, sp.demand.work_units) + plan.workload.reply_tokens.mean * decode_s
            )
            cores_per_session += per_session * hold * engine.threads
        else:
            busy = per_session * model.mean_s(1, sp.demand.work_units)
            cores_per_session += busy * engine.threads
    sim = plan.simulation
    guess = box.cores * plan.options.cpu_utilisation / max(cores_per_session, 1e-9)
    tested = ", ".join(
        f"{r.sessions}: p95 {r.ttff_p95_ms:,.0f} ms"
        f"{'' if r.meets(plan.options.slo) else ' (misses)'}"
        for r in plan.curve
    )
    step3 = (
        f"3. **Simulated.** Every engine is one worker thread; all share the box's "
        f"{box.cores:g} cores by processor sharing. Loads tried: {tested or 'none'}. The most "
        f"that meet the SLO: **{plan.max_sessions} per box** "
        f"(TTFF p95 {sim.ttff_p95_ms:,.0f} ms)."
        if sim is not None
        else f"3. **Not simulated** (`--no-simulate`): the plan takes the closed-form guess, "
        f"{box.sessions_per_box} per box, unchecked; its closed-form TTFF p95 is "
        f"{plan.ttff_estimate_ms[1]:,.0f} ms."
    )
    return [
        f"1. **One session's CPU.** Summing every engine's requests x service time x threads "
        f"at batch size 1: **{cores_per_session:.2f} cores busy per session** (batching "
        "lowers it under load).",
        f"2. **Closed-form guess.** {box.cores:g} cores x {plan.options.cpu_utilisation:.2f} / "
        f"{cores_per_session:.2f} = {guess:.1f} sessions per box; the simulator starts its "
        "search there.",
        step3,
        f"4. **Boxes.** {plan.peak_sessions} peak sessions / {box.sessions_per_box} = "
        f"**{box.boxes} boxes** x ${box.box_usd_per_h:.3f}/h ({box.cores:g} vCPUs x "
        f"${plan.catalog.vcpu_on_demand_usd_per_h:g}) = **${plan.cost_peak_usd_per_h:,.2f}/h**.",
    ]
