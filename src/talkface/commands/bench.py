"""``talkface bench``: measure this machine (profile) and a real server under load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from talkface.commands._common import err_console, handle_errors, out_console, quiet_native_logs

app = typer.Typer(help="Measure engines (profile) and a live server (load).",
                  no_args_is_help=True)


@app.command("profile")
@handle_errors
def profile(
    output: Annotated[Path, typer.Option("-o", "--output", help="Profile JSON to write.",
                                         dir_okay=False)] = Path("profile.json"),
    repeats: Annotated[int, typer.Option(help="Samples per work size.", min=1, max=100)] = 5,
    max_batch_size: Annotated[int, typer.Option(help="Largest batch to measure.",
                                                min=1, max=64)] = 4,
    encoder: Annotated[str, typer.Option(
        help="Live video encoder to measure: x264 (fMP4, like WebRTC) or jpeg (WebSocket "
             "jpeg output, what `bench load` uses).")] = "x264",
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="TOML settings file.", dir_okay=False)] = None,
) -> None:
    """Measure every engine alone on this machine: service time per batch size, memory."""
    from talkface.bench.profile import ProfileOptions, measure_profile
    from talkface.config import load_settings
    from talkface.errors import BadInput
    from talkface.output.mp4 import check_output_path

    if encoder not in ("x264", "jpeg"):
        raise BadInput(f"--encoder must be x264 or jpeg, not {encoder!r}")
    quiet_native_logs()
    check_output_path(output)
    settings = load_settings(config)
    with err_console.status("measuring") as status:
        options = ProfileOptions(repeats=repeats, max_batch_size=max_batch_size,
                                 encoder=encoder)  # type: ignore[arg-type]
        result = measure_profile(settings, options,
                                 progress=lambda line: status.update(f"measuring: {line}"))
    result.save(output)
    for stage, engine in result.engines.items():
        first = engine.cost.points[0]
        out_console.print(f"{stage:9s} {engine.backend:32s} p50 {first.p50_ms:8.1f} ms for "
                          f"{first.work_units:g} {engine.cost.unit} (batch {first.batch_size})")
    out_console.print(f"wrote {output}")


@app.command("load")
@handle_errors
def load(
    sessions: Annotated[int, typer.Option(help="Concurrent users.", min=1, max=64)] = 1,
    minutes: Annotated[float, typer.Option(help="How long they talk.", min=0.1, max=120)] = 2.0,
    think_s: Annotated[float, typer.Option(help="Pause between an answer and the next question.",
                                           min=0, max=600)] = 2.0,
    url: Annotated[Optional[str], typer.Option(
        help="A running server (default: start one on 127.0.0.1).")] = None,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="TALKFACE_API_KEY", help="API key of --url.")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="Write every turn's measurements as JSON.", dir_okay=False)] = None,
    calibrate: Annotated[Optional[Path], typer.Option(
        help="A profile (from `bench profile`) to complete with what this run measured of "
             "the serving path: CPU per live session and delivery time.",
        exists=True, dir_okay=False)] = None,
    engines: Annotated[str, typer.Option(
        help="Where the started server runs its models: 'local' or 'ray' (a local Ray "
             "Serve; run inside a loopback-only network namespace).")] = "local",
    render_job_s: Annotated[float, typer.Option(
        help="Also run render jobs of about this many seconds of video, one after another, "
             "while the users talk, and report their first frames during them (0: none).",
        min=0, max=1800)] = 0.0,
) -> None:
    """Real concurrent talkers against a real server: latency, fps, drops, errors, CPU."""
    import asyncio
    import dataclasses
    import json

    from talkface.bench.load import LoadOptions, run_load
    from talkface.errors import ConfigError

    quiet_native_logs()
    if url is not None and not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise ConfigError("bench load only talks to a server on this machine (loopback)")
    if url is not None and api_key is None:
        raise ConfigError("--url needs --api-key (or TALKFACE_API_KEY)")
    if engines not in ("local", "ray"):
        raise ConfigError(f"--engines must be 'local' or 'ray', not {engines!r}")
    options = LoadOptions(sessions=sessions, duration_s=minutes * 60, think_s=think_s, url=url,
                          api_key=api_key, engines=engines, render_job_s=render_job_s)
    with err_console.status("load test") as status:
        result = asyncio.run(run_load(options, progress=lambda line: status.update(line)))
    summary = result.summary()
    for name, value in summary.items():
        out_console.print(f"{name:20s} {value}")
    if calibrate is not None:
        from talkface.bench.serving_path import calibrate as calibrate_profile
        from talkface.planner.profile import Profile

        profile = calibrate_profile(
            Profile.load(calibrate), sessions=sessions,
            idle_server_cpu_cores=result.idle_server_cpu_cores,
            delivery_ms=[t.delivery_ms for t in result.turns if t.delivery_ms is not None])
        profile.save(calibrate)
        machine = profile.machine
        out_console.print(
            f"calibrated {calibrate}: {machine.session_overhead_cores if machine else 0:.3f} "
            f"cores per live session, delivery {profile.pipeline.delivery_ms:.0f} ms")
    if output is not None:
        output.write_text(json.dumps({"summary": summary,
                                      "turns": [dataclasses.asdict(t) for t in result.turns]},
                                     indent=2) + "\n", encoding="utf-8")
        out_console.print(f"wrote {output}")
