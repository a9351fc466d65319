"""The ``talkface`` command line. Each command's work lives in ``talkface.commands``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from talkface.commands._common import (
    EXIT_FAILED,
    handle_errors,
    out_console,
    quiet_native_logs,
)

app = typer.Typer(
    name="talkface",
    help="Real-time talking digital humans: text or speech in, a lip-synced face out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Optional[Path],  # noqa: UP007 - typer needs Optional here
    typer.Option("--config", help="TOML settings file (also: TALKFACE_CONFIG).",
                 dir_okay=False),
]


@app.command()
@handle_errors
def say(
    text: Annotated[str, typer.Argument(help="What to say; '-' reads standard input.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="MP4 file to write.")] = Path(
        "talkface.mp4"
    ),
    lang: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--lang", help="Language of the text: en, zh... (default: detected).")] = None,
    voice: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--voice", help="Voice name (see: talkface voices) or a piper .onnx file.")] = None,
    portrait: Annotated[Optional[Path], typer.Option(  # noqa: UP007
        "--portrait", help="Photo of one face (default: the bundled portrait).",
        dir_okay=False)] = None,
    speed: Annotated[float, typer.Option(help="Speaking rate, 1.0 natural.", min=0.5,
                                         max=2.0)] = 1.0,
    size: Annotated[Optional[int], typer.Option(  # noqa: UP007
        help="Video width and height in px.", min=128, max=2048)] = None,
    seed: Annotated[Optional[int], typer.Option(  # noqa: UP007
        help="Seed for blinks and head motion (default: random).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
) -> None:
    """Speak TEXT with a lip-synced talking head and write it as an MP4."""
    from talkface.commands.say import SayOptions, read_text_argument, run_say

    quiet_native_logs()
    overrides: dict[str, object] = {}
    if size is not None:
        overrides["animator"] = {"size_px": size}
    run_say(
        SayOptions(
            text=read_text_argument(text),
            output=output,
            language=lang,
            voice=voice,
            portrait=portrait,
            speed=speed,
            seed=seed,
            quiet=quiet,
        ),
        config_file=config,
        overrides=overrides,
    )


@app.command()
@handle_errors
def voices() -> None:
    """List the voices installed on this machine."""
    from rich.table import Table

    from talkface.tts.voices import list_voices

    table = Table("voice", "language", "backend", "description")
    for voice in list_voices():
        table.add_row(voice.name, voice.language, voice.backend, voice.description)
    out_console.print(table)
    out_console.print(
        "Any espeak-ng language also works as espeak-<code> (e.g. espeak-de); "
        "a piper voice file works by its path."
    )


@app.command()
@handle_errors
def doctor(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems.")] = False,
) -> None:
    """Check that models, tools and packages are installed; say how to fix what is not."""
    from rich.table import Table

    from talkface.doctor import run_checks

    quiet_native_logs()
    checks = run_checks()
    failed = [c for c in checks if not c.ok]
    if not quiet:
        table = Table("", "check", "detail", "fix")
        for check in checks:
            mark = "[green]ok[/]" if check.ok else "[red]missing[/]"
            table.add_row(mark, check.name, check.detail, check.fix)
        out_console.print(table)
    for check in failed:
        out_console.print(f"[red]missing:[/] {check.name} ({check.detail}); fix: {check.fix}")
    if failed:
        raise typer.Exit(EXIT_FAILED)
    if not quiet:
        out_console.print("[green]everything talkface needs is installed[/]")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
