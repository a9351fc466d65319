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
    config: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--config", help="TOML settings file.", dir_okay=False)] = None,
) -> None:
    """Measure every engine alone on this machine: service time per batch size, memory."""
    from talkface.bench.profile import ProfileOptions, measure_profile
    from talkface.config import load_settings
    from talkface.output.mp4 import check_output_path

    quiet_native_logs()
    check_output_path(output)
    settings = load_settings(config)
    with err_console.status("measuring") as status:
        result = measure_profile(settings, ProfileOptions(repeats=repeats,
                                                          max_batch_size=max_batch_size),
                                 progress=lambda line: status.update(f"measuring: {line}"))
    result.save(output)
    for stage, engine in result.engines.items():
        first = engine.cost.points[0]
        out_console.print(f"{stage:9s} {engine.backend:32s} p50 {first.p50_ms:8.1f} ms for "
                          f"{first.work_units:g} {engine.cost.unit} (batch {first.batch_size})")
    out_console.print(f"wrote {output}")
