"""The report's PNG charts (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from talkface.planner.plan import Plan
from talkface.planner.simulate import SEGMENTS

_DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def cost_chart(plan: Plan, path: Path) -> Path:
    """Cost per hour at the peak, per stage, labelled with its device."""
    stages = list(plan.stages.values())
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.bar([s.stage for s in stages], [s.cost_usd_per_h for s in stages], color="#4c72b0")
    for bar, s in zip(bars, stages, strict=True):
        ax.annotate(
            f"{s.device}\n${s.cost_usd_per_h:,.1f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("USD per hour at the peak")
    ax.set_title(  # "\$": two bare dollar signs would make matplotlib typeset mathtext
        f"Cost: \\${plan.cost_peak_usd_per_h:,.2f}/h at the peak, "
        f"\\${plan.cost_per_session_hour_usd:.3f} per session-hour"
    )
    ax.margins(y=0.25)
    return _save(fig, path)


def gpus_chart(plan: Plan, path: Path) -> Path:
    """GPUs per stage (replicas x num_gpus), coloured by GPU kind."""
    kinds = sorted({s.device for s in plan.stages.values() if s.device != "cpu"})
    stages = [s for s in plan.stages.values() if s.device != "cpu"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colours = plt.get_cmap("tab10")
    for i, kind in enumerate(kinds):
        values = [s.replicas * s.num_gpus if s.device == kind else 0 for s in stages]
        ax.bar([s.stage for s in stages], values, label=kind, color=colours(i))
    for s in stages:
        ax.annotate(
            f"{s.replicas} x {s.num_gpus:g}",
            (s.stage, s.replicas * s.num_gpus),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("GPUs (replicas x num_gpus)")
    counts = ", ".join(f"{n} x {k}" for k, n in sorted(plan.gpu_counts.items()))
    ax.set_title(f"GPUs at the peak: {counts or 'none'}")
    if kinds:
        ax.legend(fontsize=8)
    ax.margins(y=0.2)
    return _save(fig, path)


def ttff_chart(plan: Plan, path: Path) -> Path:
    """Simulated TTFF distribution at the peak vs the SLO, and its mean breakdown."""
    sim = plan.simulation
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    slo = plan.options.slo.ttff_p95_ms
    if sim is not None and sim.ttff_ms:
        values = np.asarray([v for v in sim.ttff_ms if np.isfinite(v)])
        left.hist(values, bins=60, color="#55a868", alpha=0.8)
        for q, style in ((sim.ttff_p50_ms, ":"), (sim.ttff_p95_ms, "--")):
            left.axvline(q, color="black", linestyle=style)
        left.axvline(slo, color="red", label=f"SLO p95 {slo:.0f} ms")
        left.set_title(
            f"TTFF at {sim.sessions} sessions: p50 {sim.ttff_p50_ms:.0f}, "
            f"p95 {sim.ttff_p95_ms:.0f} ms",
            fontsize=9,
        )
        left.legend(fontsize=8)
        parts = [sim.breakdown_ms.get(s, 0.0) for s in SEGMENTS]
    else:
        left.text(0.5, 0.5, "not simulated", ha="center", transform=left.transAxes)
        parts = [
            plan.stages[s].estimate.first_mean_s * 1000 if s in plan.stages else 0.0
            for s in SEGMENTS
        ]
    left.set_xlabel("time to first frame (ms)")
    bottom = 0.0
    for segment, value in zip(SEGMENTS, parts, strict=True):
        right.bar(["mean TTFF"], [value], bottom=bottom, label=f"{segment} {value:.0f} ms")
        bottom += value
    right.axhline(slo, color="red")
    right.set_ylabel("ms")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    right.set_title("where the time goes", fontsize=9)
    return _save(fig, path)


def utilisation_chart(plan: Plan, path: Path) -> Path:
    """Busy share of one replica per stage: closed form vs simulation."""
    stages = [s for s in plan.stages.values() if s.hosting == "engine"]
    x = np.arange(len(stages))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(x - 0.2, [s.estimate.busy for s in stages], 0.4, label="closed form")
    if plan.simulation is not None:
        ax.bar(
            x + 0.2, [plan.simulation.stages[s.stage].busy for s in stages], 0.4, label="simulated"
        )
    ax.set_xticks(x, [f"{s.stage}\n{s.device}" for s in stages])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("busy share of one replica")
    ax.set_title(f"Utilisation at {plan.peak_sessions} sessions")
    ax.legend(fontsize=8)
    return _save(fig, path)


def load_curve_chart(plan: Plan, path: Path) -> Path:
    """Sessions vs simulated TTFF p50/p95, with the SLO and the planned peak."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    slo = plan.options.slo.ttff_p95_ms
    if plan.curve:
        n = [r.sessions for r in plan.curve]
        cap = 4 * slo  # keep overloaded points on the chart
        ax.plot(n, [min(r.ttff_p50_ms, cap) for r in plan.curve], "o-", label="p50")
        ax.plot(n, [min(r.ttff_p95_ms, cap) for r in plan.curve], "s-", label="p95")
    else:
        ax.text(0.5, 0.5, "not simulated", ha="center", transform=ax.transAxes)
    ax.axhline(slo, color="red", label=f"SLO p95 {slo:.0f} ms")
    ax.axvline(plan.peak_sessions, color="grey", linestyle="--", label="planned peak")
    if plan.max_sessions:
        ax.axvline(
            plan.max_sessions,
            color="green",
            linestyle=":",
            label=f"most within SLO: {plan.max_sessions}",
        )
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("time to first frame (ms)")
    ax.set_title("Sessions vs latency (simulated, same configuration)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_charts(plan: Plan, out: Path) -> dict[str, Path]:
    """Write every chart into ``out``; returns them by short name."""
    charts = {
        "cost": cost_chart(plan, out / "cost_breakdown.png"),
        "ttff": ttff_chart(plan, out / "ttff.png"),
        "utilisation": utilisation_chart(plan, out / "utilisation.png"),
        "load_curve": load_curve_chart(plan, out / "load_curve.png"),
    }
    if plan.gpu_counts:
        charts["gpus"] = gpus_chart(plan, out / "gpus_per_stage.png")
    return charts
