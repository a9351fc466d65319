"""Writing a plan out: ``report.md`` with charts, ``serve_config.yaml``, ``rayservice.yaml``
and ``plan.json``."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from talkface.errors import ConfigError
from talkface.planner._derivation import box_derivation, stage_derivation
from talkface.planner._scale_out import scale_out_lines
from talkface.planner.cache_rates import NO_CACHE, default_sources
from talkface.planner.charts import write_charts
from talkface.planner.closed_form import mg1_mean_wait_s
from talkface.planner.plan import Plan
from talkface.planner.pools import gateway_plan
from talkface.planner.published import PUBLISHED_TABLE, batching_exponent
from talkface.planner.rayservice import DEFAULT_IMAGE, rayservice_yaml
from talkface.planner.serve_config import serve_config_yaml
from talkface.planner.simulate import SEGMENTS, SimulationResult


def _usd(x: float) -> str:
    return f"${x:,.2f}" if abs(x) >= 0.1 or x == 0 else f"${x:.4f}"


def _check(ok: bool) -> str:
    return "meets the SLO" if ok else "**misses the SLO**"


def _verdict(plan: Plan) -> str:
    """The headline sentence: it claims only what was checked."""
    if plan.simulation is not None:
        return f"The plan {_check(plan.meets_slo)} (simulated at the peak)."
    p95, slo = plan.ttff_estimate_ms[1], plan.options.slo.ttff_p95_ms
    within = "within" if p95 <= slo else "**over**"
    return (
        f"Not simulated (`--no-simulate`): the closed-form estimate of TTFF p95 is "
        f"{p95:,.0f} ms, {within} the SLO of {slo:,.0f} ms; only a simulation checks "
        "whether the plan meets it."
    )


def _headline(plan: Plan) -> list[str]:
    slo = plan.options.slo
    sim = plan.simulation
    gpus = ", ".join(f"{n} x {k}" for k, n in sorted(plan.gpu_counts.items()))
    rows = []
    if plan.mode == "cluster":
        rows.append(("GPUs at the peak", f"{gpus} ({plan.total_gpus} in all)"))
        avg = ", ".join(f"{n} x {k}" for k, n in sorted(plan.gpu_counts_average.items()))
        rows.append(("GPUs at the average load (autoscaled)", avg))
    else:
        box = plan.cpu_box
        assert box is not None
        rows.append(
            (
                "Boxes at the peak",
                f"{box.boxes} boxes of {box.cores:g} cores for "
                f"the engines, {box.sessions_per_box} session(s) each",
            )
        )
    rows += [
        (
            "Cost at the peak",
            f"{_usd(plan.cost_peak_usd_per_h)}/h for {plan.peak_sessions} sessions",
        ),
        (
            "Cost on average",
            f"{_usd(plan.cost_average_usd_per_h)}/h for {plan.sessions} sessions "
            f"= **{_usd(plan.cost_per_session_hour_usd)} per session-hour**",
        ),
    ]
    if sim is not None:
        rows += [
            (
                "Time to first frame at the peak (simulated)",
                f"p50 {sim.ttff_p50_ms:,.0f} ms, p95 {sim.ttff_p95_ms:,.0f} ms, "
                f"p99 {sim.ttff_p99_ms:,.0f} ms (SLO: p95 <= {slo.ttff_p95_ms:,.0f} ms)",
            ),
            (
                f"Replies sustained at {plan.profile.pipeline.fps:g} fps",
                f"{sim.sustained_share(slo):.1%} (SLO: >= {slo.sustained_turn_share:.0%} of "
                f"replies at >= {slo.min_fps_share:.0%} of the frame rate)",
            ),
            ("Most sessions this configuration serves within the SLO", f"{plan.max_sessions}"),
        ]
    rows.append(
        (
            "Time to first frame, closed form",
            f"mean {plan.ttff_estimate_ms[0]:,.0f} ms, p95 {plan.ttff_estimate_ms[1]:,.0f} ms",
        )
    )
    if plan.offline is not None:
        o = plan.offline.chosen
        rows.append(
            (
                "Offline render jobs (spot)",
                f"{o.gpus_spot} x {o.gpu} spot, {_usd(o.cost_spot_usd_per_h)}/h "
                f"({_usd(o.usd_per_video_min_spot)} per rendered minute)",
            )
        )
    for sp in plan.stages.values():
        label = plan.profile.engines[sp.stage].not_shipped
        if label is not None:
            where = f"{sp.replicas} x {sp.device}" if plan.mode == "cluster" else sp.device
            rows.append(
                (f"{sp.stage} ({where}, {_usd(sp.cost_usd_per_h)}/h at the peak)", f"**{label}**")
            )
    lines = [_verdict(plan), "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return lines


def _not_shipped(plan: Plan, stage: str) -> str:
    label = plan.profile.engines[stage].not_shipped  # type: ignore[index]
    return "" if label is None else f" ({label})"


def _prompt_text(plan: Plan) -> str:
    wl = plan.workload
    mean = wl.evaluated_prompt_tokens_mean
    if wl.prompt_reuse == "fixed_share":
        return (
            f"{mean:,.0f} tokens: every turn evaluates its whole {wl.prompt_tokens.mean:g}-token "
            f"prompt less {wl.prompt_cached_share:.0%} from a cache (`prompt_reuse: fixed_share`)"
        )
    return (
        f"{mean:,.0f} tokens on average (prefix reuse, as talkface's per-conversation KV "
        f"cache does): {wl.new_prompt_tokens.mean:g} new tokens a turn; the first of "
        f"{wl.conversation_turns:g} turns {wl.first_prompt_tokens.mean:g}; a turn whose "
        f"cache was evicted ({wl.prefix_cache_miss_share:.0%} of later turns) the whole "
        f"{wl.prompt_tokens.mean:g}-token history"
    )


def _cache_sources(plan: Plan) -> dict[str, str]:
    given = plan.options.cache_rate_sources
    return dict(given) if given is not None else default_sources(plan.workload)


def _cache_rows(plan: Plan) -> list[str]:
    wl = plan.workload
    sources = _cache_sources(plan)
    what = {
        "faq_cache_hit_rate": ("FAQ cache", "of turns"),
        "tts_cache_hit_rate": ("TTS cache", "of sentences"),
        "animation_cache_hit_rate": ("animation cache", "of sentences"),
    }
    return [
        f"| {name} hit rate | {getattr(wl, key):.0%} {unit} ({sources.get(key, NO_CACHE)}) |"
        for key, (name, unit) in what.items()
    ]


def _inputs(plan: Plan) -> list[str]:
    wl, pipe = plan.workload, plan.profile.pipeline
    shape = plan.shape
    lines = [
        "| Workload | value |",
        "|---|---|",
        f"| sessions (average busy day) x peak factor | {plan.sessions} x {wl.peak_factor:g} "
        f"= **{plan.peak_sessions}** |",
        f"| turns per session per minute | {wl.turns_per_min:g} "
        f"(a turn every {wl.cycle_s:.0f} s) |",
        f"| user utterance | {wl.utterance_s.mean:g} s mean (cv {wl.utterance_s.cv:g}) |",
        f"| LLM prompt evaluated per turn | {_prompt_text(plan)} |",
        f"| LLM reply | {wl.reply_tokens.mean:g} tokens; "
        f"first sentence {wl.first_sentence_tokens.mean:g} tokens |",
        f"| speech | {wl.speech_s_per_token:g} s per token -> {shape.reply_s:.1f} s per reply, "
        f"{shape.sentences:.2f} sentences |",
        *_cache_rows(plan),
        f"| video | {pipe.fps:g} fps, animator chunks of {pipe.animator_chunk_frames} frames "
        f"({pipe.chunk_s * 1000:.0f} ms), {shape.chunks:.1f} chunks per reply |",
        f"| SLO | TTFF p95 <= {plan.options.slo.ttff_p95_ms:,.0f} ms from the end of speech + "
        f"{pipe.vad_hangover_ms:g} ms VAD hang-over; sustained {pipe.fps:g} fps |",
    ]
    if plan.profile.is_estimate:
        lines += [
            "",
            "Published per-module table and the assumptions added to it "
            "(see `talkface.planner.published`):",
            "",
            "| stage | table says | anchored on | streams used | batch-1 RTF (assumed) "
            "| reaches the streams at batch | batching exponent |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in PUBLISHED_TABLE:
            if row.stage == "llm":
                lines.append(
                    f"| llm | {row.quote} | {row.gpu} | {row.streams:g} sequences at "
                    ">= 30 tokens/s | - | - | step(b) = 13 ms x (1 + 0.5 (b-1)) |"
                )
                continue
            lines.append(
                f"| {row.stage} | {row.quote} | {row.gpu} | {row.streams:g} | "
                f"{row.rtf_batch1:g} | {row.batch_ref} | {batching_exponent(row):.3f} |"
            )
        lines += [
            "",
            "VAD (silero, 0.5 ms per 32 ms window) and the video encoder (libx264, "
            "2.5 ms per frame) are not in the table; they are talkface's CPU estimates.",
        ]
    return lines


def _simulation_section(plan: Plan) -> list[str]:
    sim = plan.simulation
    if sim is None:
        return ["Not simulated (`--no-simulate`): every number above is closed form."]
    lines = [
        f"The simulator (SimPy; `talkface.planner.simulate`) ran {sim.sessions} sessions for "
        f"{sim.simulated_s:,.0f} simulated seconds after a warm-up ({sim.turns:,} turns "
        "measured): every engine with its real batching policy, replicas, routing and GPU "
        "sharing, and every streaming hand-off.",
        "",
        "| TTFF segment | closed form mean | simulated mean |",
        "|---|---|---|",
    ]
    for segment in SEGMENTS:
        if segment in plan.stages:
            est = plan.stages[segment].estimate.first_mean_s * 1000
            lines.append(f"| {segment} | {est:,.0f} ms | {sim.breakdown_ms[segment]:,.0f} ms |")
    lines += [
        f"| **total** | {plan.ttff_estimate_ms[0]:,.0f} ms (p95 {plan.ttff_estimate_ms[1]:,.0f}) "
        f"| p50 {sim.ttff_p50_ms:,.0f} / p95 {sim.ttff_p95_ms:,.0f} ms |",
        "",
        "| stage | requests | mean batch | queue wait mean / p95 | busy per replica |",
        "|---|---|---|---|---|",
    ]
    for stage, st in sim.stages.items():
        per_session = plan.stages[stage].hosting == "per_session"
        busy = f"{st.busy:,.1f} cores (per session)" if per_session else f"{st.busy:.0%}"
        batch = "sequences running" if stage == "llm" else ""
        lines.append(
            f"| {stage} | {st.requests:,} | {st.mean_batch_size:.2f} {batch} | "
            f"{st.wait_mean_ms:,.0f} / {st.wait_p95_ms:,.0f} ms | {busy} |"
        )
    if plan.corrections:
        lines += ["", "The simulator corrected the closed-form choice:", ""]
        lines += [f"- {c}" for c in plan.corrections]
    else:
        lines += ["", "The simulator confirmed the closed-form choice without corrections."]
    lines += [
        "",
        "Load curve (same configuration):",
        "",
        "| sessions | TTFF p50 | TTFF p95 | sustained | SLO |",
        "|---|---|---|---|---|",
    ]
    for r in plan.curve:
        lines.append(
            f"| {r.sessions} | {r.ttff_p50_ms:,.0f} ms | {r.ttff_p95_ms:,.0f} ms | "
            f"{r.sustained_share(plan.options.slo):.1%} | "
            f"{'yes' if r.meets(plan.options.slo) else 'no'} |"
        )
    return lines + _cross_check(plan, sim)


def _cross_check(plan: Plan, sim: SimulationResult) -> list[str]:
    """Pollaczek-Khinchine for a batch-1 stage, as a sanity check of the simulator."""
    for stage, sp in plan.stages.items():
        if sp.hosting != "engine" or stage == "llm" or sp.replicas != 1 or sp.max_batch_size != 1:
            continue
        st = sim.stages[stage]
        rate = sp.demand.requests_per_s
        service_s = st.busy / rate if rate else 0.0
        if not 0 < rate * service_s < 0.95:
            continue
        pk = mg1_mean_wait_s(rate, service_s, 0.12) * 1000
        return [
            "",
            f"Sanity check: {stage} runs one replica at batch size 1, an M/G/1 queue; "
            f"Pollaczek-Khinchine predicts a mean wait of {pk:,.0f} ms, the simulation "
            f"measured {st.wait_mean_ms:,.0f} ms (arrivals here are not Poisson).",
        ]
    return []


def _cards_section(plan: Plan) -> list[str]:
    if not plan.cards:
        return []
    groups: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
    for card in plan.cards:
        key = (
            card.gpu,
            tuple(f"{r.stage} ({s:g})" for r, s in zip(card.replicas, card.num_gpus, strict=True)),
        )
        groups.setdefault(key, []).append(card)
    lines = [
        "| cards | GPU | replicas on each card (num_gpus) | memory used of usable |",
        "|---|---|---|---|",
    ]
    for (gpu, content), cards in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        card = cards[0]
        lines.append(
            f"| {len(cards)} | {gpu} | {', '.join(content)} | "
            f"{card.memory_used_mb / 1000:.1f} of {card.usable_memory_mb / 1000:.1f} GB |"
        )
    return lines


def _offline_section(plan: Plan) -> list[str]:
    off = plan.offline
    if off is None:
        return ["No offline render jobs planned (set `render.jobs_per_h` in the workload)."]
    wl = plan.workload.render
    c = off.chosen
    lines = [
        f"{off.jobs_per_h:g} jobs/h of {off.video_s_mean:g} s videos. A render worker holds TTS "
        "and animator on one GPU at their largest measured batch. A job checkpoints every "
        f"{wl.checkpoint_s:g} s of video; a preemption loses the segment in progress and costs "
        f"{wl.restart_s:g} s (new spot GPU, reload). Expected time of a segment of w GPU "
        "seconds at r preemptions/s: (1/r + restart) (exp(r w) - 1).",
        "",
        "| GPU | GPU s per video s | job on spot (expected) | preemptions per job | spot GPUs "
        "| spot $/h | on-demand GPUs | on-demand $/h | $ per video minute (spot) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in off.options:
        lines.append(
            f"| {o.gpu} | {o.gpu_s_per_video_s:.3f} | {o.job_spot_s:,.1f} s | "
            f"{o.retries_per_job:.4f} | {o.gpus_spot} | {_usd(o.cost_spot_usd_per_h)} | "
            f"{o.gpus_on_demand} | {_usd(o.cost_on_demand_usd_per_h)} | "
            f"{_usd(o.usd_per_video_min_spot)} |"
        )
    lines += [
        "",
        f"Chosen: **{c.gpus_spot} x {c.gpu} on spot**, {_usd(c.cost_spot_usd_per_h)}/h "
        f"+ {off.encoder_cores:g} spot vCPUs for encoding ({_usd(off.cpu_usd_per_h)}/h); "
        f"spot saves {off.spot_savings:.0%} against on demand. A Monte Carlo run of 4,000 "
        f"jobs (random lengths, random preemptions) took {off.monte_carlo_job_s:,.1f} s per "
        f"job on average against the closed form's {c.job_spot_s:,.1f} s.",
    ]
    return lines


def render_report(plan: Plan, charts: dict[str, Path]) -> str:
    """The Markdown text of ``report.md``."""
    title = (
        f"# talkface capacity plan: {plan.sessions} concurrent sessions "
        f"({'GPU cluster' if plan.mode == 'cluster' else 'CPU boxes'})"
    )
    lines = [title, ""]
    if plan.notes:
        lines += [f"> {note}" for note in plan.notes] + [""]
    lines += ["## Headline", "", *_headline(plan), ""]
    for name in ("cost", "gpus", "ttff", "utilisation", "load_curve"):
        if name in charts:
            lines.append(f"![{name}]({charts[name].name})")
    lines += [
        "",
        "## Inputs",
        "",
        *_inputs(plan),
        "",
        "## How every number was derived",
        "",
        f"Per turn, the workload gives {plan.shape.vad_windows:.1f} VAD windows, 1 ASR pass, "
        f"1 LLM reply, {plan.shape.tts_requests:.2f} TTS calls (cache hits removed) and "
        f"{plan.shape.animator_requests:.1f} animator chunks; {plan.peak_sessions} sessions "
        f"take {plan.peak_sessions / plan.workload.cycle_s:,.1f} turns/s at the peak. "
        f"Replicas are sized so that none is loaded above "
        f"{plan.options.max_utilisation:.0%} at full batches, streaming stages stay ahead "
        "of playback, and the closed-form TTFF p95 is under "
        f"{plan.options.latency_margin:.0%} of the SLO; then the simulator checks.",
        "",
    ]
    if plan.mode == "cpu_box":
        lines += ["### Sessions per box", "", *box_derivation(plan), ""]
    for sp in plan.stages.values():
        lines += [
            f"### {sp.stage}: "
            + (
                f"{sp.replicas} x {sp.device}, max_batch_size {sp.max_batch_size}"
                if sp.hosting == "engine" and plan.mode == "cluster"
                else f"{sp.device}, {sp.hosting.replace('_', ' ')}"
            )
            + _not_shipped(plan, sp.stage),
            "",
            *stage_derivation(plan, sp),
            "",
        ]
    if plan.cards:
        lines += [
            "### Cards after packing",
            "",
            f"Usable memory is each card's memory less {plan.options.memory_headroom:.0%} "
            "headroom; the num_gpus on one card never sum above 1, so Ray Serve's own "
            "placement never exceeds a card's memory either.",
            "",
            *_cards_section(plan),
            "",
        ]
    lines += [
        "## Simulation check",
        "",
        *_simulation_section(plan),
        "",
        "## Costs",
        "",
        "| stage | device | $/h at the peak |",
        "|---|---|---|",
    ]
    lines += [
        f"| {s.stage} | {s.device} | {_usd(s.cost_usd_per_h)} |" for s in plan.stages.values()
    ]
    lines += [
        f"| **total** | | **{_usd(plan.cost_peak_usd_per_h)}** |",
        "",
        f"On average (autoscaled to {plan.sessions} sessions): "
        f"{_usd(plan.cost_average_usd_per_h)}/h, {_usd(plan.cost_per_session_hour_usd)} "
        "per session-hour. Interactive capacity is priced on demand.",
        "",
        "## Scale-out settings",
        "",
        *scale_out_lines(plan),
    ]
    lines += [
        "",
        "## Offline render jobs on spot capacity",
        "",
        *_offline_section(plan),
        "",
        "## Assumptions and limits",
        "",
        "- Service times scale to other GPUs by the catalog's relative speed "
        "(compute-bound calls) or memory bandwidth (LLM decoding); measured profiles on the "
        "target GPU are better.",
        "- Replicas that share a GPU share it by time slicing (processor sharing); each "
        "request goes to the less busy of two random replicas (Ray Serve's router).",
        "- Time to first frame starts at the end of speech plus the VAD hang-over and ends "
        "when the first encoded chunk is ready; network time to the browser is not included.",
        "- Barge-ins, partial ASR passes and LLM context growth within a conversation are "
        "not modelled; CPU stages in the cluster are sized to stay uncontended.",
        f"- Prices are the catalog's estimates ({plan.catalog.reference_gpu} = speed 1.0); "
        "edit them with `--gpus`.",
    ]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _simulation_json(sim: SimulationResult | None, plan: Plan) -> dict[str, Any] | None:
    if sim is None:
        return None
    return {
        "sessions": sim.sessions,
        "turns": sim.turns,
        "simulated_s": sim.simulated_s,
        "ttff_p50_ms": sim.ttff_p50_ms,
        "ttff_p95_ms": sim.ttff_p95_ms,
        "ttff_p99_ms": sim.ttff_p99_ms,
        "fps_p05": sim.fps_p05,
        "sustained_share": sim.sustained_share(plan.options.slo),
        "meets_slo": sim.meets(plan.options.slo),
        "breakdown_ms": sim.breakdown_ms,
        "stages": _jsonable(sim.stages),
        "pools": sim.pools,
    }


def plan_json(plan: Plan) -> dict[str, Any]:
    """The machine-readable plan (``plan.json``)."""
    return _jsonable(
        {
            "format": "talkface.plan/1",
            "summary": plan.summary(),
            "stages": {
                s: {k: v for k, v in _jsonable(sp).items()} for s, sp in plan.stages.items()
            },
            "cards": [
                {
                    "gpu": c.gpu,
                    "replicas": [r.stage for r in c.replicas],
                    "num_gpus": list(c.num_gpus),
                    "memory_used_mb": c.memory_used_mb,
                    "usable_memory_mb": c.usable_memory_mb,
                }
                for c in plan.cards
            ],
            "simulation": _simulation_json(plan.simulation, plan),
            "curve": [
                {
                    "sessions": r.sessions,
                    "ttff_p50_ms": r.ttff_p50_ms,
                    "ttff_p95_ms": r.ttff_p95_ms,
                    "sustained_share": r.sustained_share(plan.options.slo),
                    "meets_slo": r.meets(plan.options.slo),
                }
                for r in plan.curve
            ],
            "offline": plan.offline,
            "cpu_box": plan.cpu_box,
            "gateway": gateway_plan(plan),
            "workload": plan.workload.model_dump(),
            "cache_rate_sources": _cache_sources(plan),
            "not_shipped": {
                stage: engine.not_shipped
                for stage, engine in plan.profile.engines.items()
                if engine.not_shipped is not None and stage in plan.stages
            },
            "slo": plan.options.slo.model_dump(),
            "corrections": list(plan.corrections),
            "notes": list(plan.notes),
        }
    )


def write_plan(plan: Plan, out: str | Path, *, image: str = DEFAULT_IMAGE) -> dict[str, Path]:
    """Write ``report.md``, the charts, ``serve_config.yaml``, ``rayservice.yaml`` and
    ``plan.json`` into ``out``.

    Args:
        plan: the plan.
        out: the folder (created if missing).
        image: the container image ``rayservice.yaml`` runs in every pod.

    Raises:
        ConfigError: ``out`` cannot be created or written.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        charts = write_charts(plan, out)
        files = {
            "report": out / "report.md",
            "serve_config": out / "serve_config.yaml",
            "rayservice": out / "rayservice.yaml",
            "plan": out / "plan.json",
        }
        files["report"].write_text(render_report(plan, charts), encoding="utf-8")
        files["serve_config"].write_text(serve_config_yaml(plan), encoding="utf-8")
        files["rayservice"].write_text(rayservice_yaml(plan, image=image), encoding="utf-8")
        files["plan"].write_text(json.dumps(plan_json(plan), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the plan to {out}: {exc}") from None
    return {**files, **charts}
