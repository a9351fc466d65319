"""``talkface plan``: GPUs, cost and latency for N concurrent sessions.

Mounted into the main CLI as ``talkface plan``; also runs on its own::

    python -m talkface.planner.cli plan --preset published --sessions 1000 -o plan/

This module imports neither SimPy nor matplotlib until the command runs, so the main CLI
starts without the ``plan`` extra.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated

import typer

from talkface.errors import BackendUnavailable, ConfigError, TalkfaceError

PRESETS = ("published",)

app = typer.Typer(
    help="Capacity planning: GPUs, cost and latency for N concurrent sessions.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main() -> None:
    """Capacity planning: GPUs, cost and latency for N concurrent sessions."""


def _check_extra() -> None:
    missing = [m for m in ("simpy", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(
            f"talkface plan needs {', '.join(missing)}; run: pip install 'talkface[plan]'"
        )


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"talkface plan: error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@app.command("plan")
def plan_command(
    sessions: Annotated[
        int,
        typer.Option("--sessions", "-n", min=1, help="Concurrent sessions on an average busy day."),
    ],
    profile: Annotated[
        Path | None,
        typer.Option("--profile", help="A measured profile (JSON, from `talkface bench profile`)."),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="A built-in profile instead of --profile: 'published'."),
    ] = None,
    gpus: Annotated[
        Path | None,
        typer.Option(
            "--gpus", help="GPU catalog YAML (default: the shipped one, with price estimates)."
        ),
    ] = None,
    workload: Annotated[
        Path | None, typer.Option("--workload", help="Workload YAML (default: the shipped one).")
    ] = None,
    slo_ttff_p95_ms: Annotated[
        float,
        typer.Option(
            "--slo-ttff-p95-ms", min=1, help="Time-to-first-frame p95 the plan must meet."
        ),
    ] = 1500.0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write into.")] = Path(
        "plan"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of every simulation.")] = 0,
    allow_gpu: Annotated[
        list[str] | None,
        typer.Option("--allow-gpu", help="Only use this GPU (repeat for several)."),
    ] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate/--no-simulate", help="Check the plan with the simulator.")
    ] = True,
    sim_turns: Annotated[
        int,
        typer.Option(
            "--sim-turns", min=50, help="Turns measured per simulation (more: slower, steadier)."
        ),
    ] = 2000,
    image: Annotated[
        str,
        typer.Option("--image", help="Container image of every pod in rayservice.yaml."),
    ] = "talkface:latest",
    cache_stats: Annotated[
        Path | None,
        typer.Option(
            "--cache-stats",
            help="Measured cache hit rates (JSON: faq_cache_hit_rate, tts_cache_hit_rate, "
            "animation_cache_hit_rate). Without it, or an option below, the rates are 0.",
        ),
    ] = None,
    faq_cache_hit_rate: Annotated[
        float | None,
        typer.Option("--faq-cache-hit-rate", min=0, max=1, help="Assume this FAQ hit rate."),
    ] = None,
    tts_cache_hit_rate: Annotated[
        float | None,
        typer.Option("--tts-cache-hit-rate", min=0, max=1, help="Assume this TTS hit rate."),
    ] = None,
    animation_cache_hit_rate: Annotated[
        float | None,
        typer.Option(
            "--animation-cache-hit-rate", min=0, max=1, help="Assume this animation hit rate."
        ),
    ] = None,
) -> None:
    """Plan GPUs, cost and latency; write report.md, charts, serve_config.yaml,
    rayservice.yaml and plan.json."""
    if (profile is None) == (preset is None):
        raise _fail("give exactly one of --profile profile.json or --preset published")
    if preset is not None and preset not in PRESETS:
        raise _fail(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    try:
        _check_extra()
        _run(
            sessions=sessions,
            profile=profile,
            gpus=gpus,
            workload=workload,
            slo_ttff_p95_ms=slo_ttff_p95_ms,
            out=out,
            seed=seed,
            allow_gpu=allow_gpu,
            simulate=simulate,
            sim_turns=sim_turns,
            image=image,
            cache_stats=cache_stats,
            cache_rates={
                "faq_cache_hit_rate": faq_cache_hit_rate,
                "tts_cache_hit_rate": tts_cache_hit_rate,
                "animation_cache_hit_rate": animation_cache_hit_rate,
            },
        )
    except TalkfaceError as exc:
        raise _fail(str(exc)) from None


def _run(
    *,
    sessions: int,
    profile: Path | None,
    gpus: Path | None,
    workload: Path | None,
    slo_ttff_p95_ms: float,
    out: Path,
    seed: int,
    allow_gpu: list[str] | None,
    simulate: bool,
    sim_turns: int,
    image: str,
    cache_stats: Path | None = None,
    cache_rates: dict[str, float | None] | None = None,
) -> None:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from talkface.planner.cache_rates import apply_cache_rates
    from talkface.planner.catalog import GPUCatalog
    from talkface.planner.make import make_plan
    from talkface.planner.plan import PlanOptions
    from talkface.planner.profile import Profile
    from talkface.planner.report import write_plan
    from talkface.planner.workload import SLO, Workload

    loaded = Profile.from_published() if profile is None else Profile.load(profile)
    catalog = GPUCatalog.load(gpus)
    load, cache_sources = apply_cache_rates(
        Workload.load(workload),
        workload_file=workload,
        stats_file=cache_stats,
        command_line=cache_rates,
    )
    try:
        options = PlanOptions(
            slo=SLO(ttff_p95_ms=slo_ttff_p95_ms),
            seed=seed,
            simulate=simulate,
            sim_turns=sim_turns,
            gpus=tuple(allow_gpu) if allow_gpu else None,
            cache_rate_sources=tuple(cache_sources.items()),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("planning", total=None)
        plan = make_plan(
            loaded,
            sessions=sessions,
            workload=load,
            catalog=catalog,
            options=options,
            progress=lambda message: bar.update(task, description=message),
        )
        bar.update(task, description="writing the report")
        files = write_plan(plan, out, image=image)
    summary = plan.summary()
    gpus_text = ", ".join(f"{n} x {k}" for k, n in sorted(plan.gpu_counts.items())) or "no GPUs"
    typer.echo(
        f"plan for {sessions} sessions (peak {plan.peak_sessions}): {gpus_text}; "
        f"${plan.cost_peak_usd_per_h:,.2f}/h at the peak, "
        f"${plan.cost_per_session_hour_usd:.3f} per session-hour"
    )
    if summary["ttff_p95_ms"] is not None:
        typer.echo(
            f"time to first frame at the peak: p50 {summary['ttff_p50_ms']} ms, "
            f"p95 {summary['ttff_p95_ms']} ms (SLO {slo_ttff_p95_ms:g} ms): "
            f"{'meets' if plan.meets_slo else 'MISSES'} the SLO (simulated)"
        )
    else:
        p95 = summary["ttff_estimate_p95_ms"]
        typer.echo(
            f"not simulated: closed-form time to first frame p95 {p95} ms "
            f"({'within' if p95 <= slo_ttff_p95_ms else 'OVER'} the SLO of "
            f"{slo_ttff_p95_ms:g} ms; unchecked)"
        )
    for stage, engine in loaded.engines.items():
        if engine.not_shipped is not None and stage in plan.stages:
            typer.echo(f"{stage}: {engine.not_shipped}")
    written = ("report", "serve_config", "rayservice", "plan")
    typer.echo(
        f"wrote {files['report']}, {files['serve_config'].name}, "
        f"{files['rayservice'].name}, {files['plan'].name} "
        f"and {len(files) - len(written)} charts"
    )


def main() -> None:
    """Run the planner CLI on its own (``python -m talkface.planner.cli``)."""
    app(prog_name="talkface")


if __name__ == "__main__":
    sys.exit(main())
