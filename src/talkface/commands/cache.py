"""``talkface cache``: pre-render common phrases, and see how the caches do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Optional

import typer

from talkface.commands._common import err_console, handle_errors, out_console, quiet_native_logs

app = typer.Typer(help="The TTS, clip and video caches: warm them, see their hits and size.",
                  no_args_is_help=True)

ConfigOption = Annotated[Optional[Path], typer.Option(
    "--config", help="TOML settings file (also: TALKFACE_CONFIG).", dir_okay=False)]


@app.command("warm")
@handle_errors
def warm(
    phrases: Annotated[Path, typer.Argument(
        help="Text file, one phrase a line ('#' lines are skipped).", dir_okay=False)],
    avatar: Annotated[str, typer.Option(
        help="'default' (the bundled portrait) or a prepared avatar id.")] = "default",
    voice: Annotated[Optional[str], typer.Option(
        help="Voice name (default: each phrase's language's voice).")] = None,
    lang: Annotated[Optional[str], typer.Option(
        "--lang", help="Language of the phrases: en or zh (default: detected).")] = None,
    speed: Annotated[float, typer.Option(help="Speaking rate, 1.0 natural.", min=0.5,
                                         max=2.0)] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    config: ConfigOption = None,
) -> None:
    """Render each phrase once, so `talkface say` copies its MP4 from disk.

    A `say` (or a text render job) hits a warmed phrase when it uses the same voice,
    avatar, speed, size, fps and output settings, and no --seed (or --seed equal to
    cache.clip_seed). Live sessions play warmed phrases from the clip cache.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from talkface.cache.warm import WarmOptions, read_phrases, warm_phrases
    from talkface.commands._common import stderr_is_terminal
    from talkface.config import load_settings
    from talkface.errors import BadInput
    from talkface.runtime import Runtime

    quiet_native_logs()
    try:
        lines = read_phrases(phrases.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read phrases from {phrases}: {exc}") from None
    if not lines:
        raise BadInput(f"{phrases} has no phrases (one a line)")
    settings = load_settings(config, cache={"enabled": True})
    options = WarmOptions(voice=voice, language=lang, speed=speed,
                          avatar_id=None if avatar == "default" else avatar)
    progress = Progress(TextColumn("[bold]warming"), BarColumn(), MofNCompleteColumn(),
                        console=err_console, transient=True,
                        disable=quiet or not stderr_is_terminal())

    async def run() -> None:
        async with Runtime(settings) as runtime:
            with progress:
                task = progress.add_task("warm", total=len(lines))
                await warm_phrases(runtime, lines, options,
                                   on_phrase=lambda done: progress.update(task, completed=done))

    asyncio.run(run())
    out_console.print(f"warmed {len(lines)} phrases in {settings.cache.root()}")


@app.command("stats")
@handle_errors
def stats(config: ConfigOption = None) -> None:
    """Hits, misses, entries and bytes of each cache (all processes together)."""
    from rich.table import Table

    from talkface.cache import open_caches
    from talkface.config import load_settings

    settings = load_settings(config)
    caches = open_caches(settings.cache, force=True)
    table = Table("cache", "hits", "misses", "corrupt", "evictions", "entries", "MB",
                  title=str(settings.cache.root()))
    for store in (caches.tts.store if caches.tts else None,
                  caches.clips.store if caches.clips else None,
                  caches.videos.store if caches.videos else None):
        if store is None:
            continue
        s = store.stats()
        table.add_row(s.name, str(s.hits), str(s.misses), str(s.corrupt), str(s.evictions),
                      str(s.entries), f"{s.bytes / 2**20:.1f}")
    out_console.print(table)
