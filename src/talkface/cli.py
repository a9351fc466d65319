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
from talkface.face.base import Framing

app = typer.Typer(
    name="talkface",
    help="Real-time talking digital humans: text or speech in, a lip-synced face out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Optional[Path],
    typer.Option("--config", help="TOML settings file (also: TALKFACE_CONFIG).",
                 dir_okay=False),
]
FAQOption = Annotated[
    Optional[Path],
    typer.Option("--faq", help="FAQ YAML file: questions it answers skip the LLM "
                 "(also: faq.file).", dir_okay=False),
]
LargeURLOption = Annotated[
    Optional[str],
    typer.Option("--llm-large-url", help="Base URL of a large model's OpenAI-compatible "
                 "server; hard questions go there (see docs/api.md, routing).")]
LargeModelOption = Annotated[
    Optional[str],
    typer.Option("--llm-large-model", help="The large model's name on that server.")]
FramingOption = Annotated[
    Optional[Framing],
    typer.Option("--framing", case_sensitive=False,
                 help="How close the picture is: face (a close-up), bust (head and shoulders; "
                      "the default) or full (as much of the photo as fits)."),
]


@app.command()
@handle_errors
def say(
    text: Annotated[str, typer.Argument(help="What to say; '-' reads standard input.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="MP4 file to write.")] = Path(
        "talkface.mp4"
    ),
    lang: Annotated[Optional[str], typer.Option(
        "--lang", help="Language of the text: en or zh (default: detected).")] = None,
    voice: Annotated[Optional[str], typer.Option(
        "--voice", help="Voice name (see: talkface voices) or a piper .onnx file.")] = None,
    portrait: Annotated[Optional[Path], typer.Option(
        "--portrait", help="Photo of one face (default: the bundled portrait).",
        dir_okay=False)] = None,
    speed: Annotated[float, typer.Option(help="Speaking rate, 1.0 natural.", min=0.5,
                                         max=2.0)] = 1.0,
    size: Annotated[Optional[int], typer.Option(
        help="Video width and height in px.", min=128, max=2048)] = None,
    framing: FramingOption = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed for blinks and head motion (default: random).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    config: ConfigOption = None,
) -> None:
    """Speak TEXT with a lip-synced talking head and write it as an MP4."""
    from talkface.commands.say import SayOptions, animator_overrides, read_text_argument, run_say

    quiet_native_logs()
    overrides = animator_overrides(size_px=size, framing=framing)
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


def routing_overrides(url: str | None, model: str | None) -> dict[str, dict[str, str]]:
    """The ``routing`` settings given by --llm-large-url / --llm-large-model."""
    given = {key: value for key, value in (("large_url", url), ("large_model", model))
             if value is not None}
    return {"routing": given} if given else {}


@app.command()
@handle_errors
def chat(
    audio: Annotated[Optional[Path], typer.Option(
        "--audio", help="A spoken question (any audio file), played in as a microphone would.",
        dir_okay=False)] = None,
    text: Annotated[Optional[str], typer.Option(
        "--text", help="A typed question.")] = None,
    script: Annotated[Optional[Path], typer.Option(
        "--script", help="Several turns, one per line ('@file.wav' for a spoken one).",
        dir_okay=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="Record the avatar's answers as an MP4.")] = None,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", help="Write each turn's latency waterfall as JSON.", dir_okay=False)] = None,
    llm: Annotated[Optional[str], typer.Option(
        "--llm", help="LLM backend: llama-cpp (embedded) or openai (a server).")] = None,
    llm_url: Annotated[Optional[str], typer.Option(
        "--llm-url", help="Base URL of an OpenAI-compatible server.")] = None,
    llm_model: Annotated[Optional[str], typer.Option(
        "--llm-model", help="Model name (openai) or GGUF path (llama-cpp).")] = None,
    llm_api_key: Annotated[Optional[str], typer.Option(
        "--llm-api-key", envvar="TALKFACE_LLM_API_KEY", help="API key for the LLM server.")] = None,
    persona: Annotated[Optional[str], typer.Option(
        "--persona", help="The avatar's system prompt.")] = None,
    lang: Annotated[Optional[str], typer.Option(
        "--lang", help="Conversation language: en, zh (default: detected).")] = None,
    voice: Annotated[Optional[str], typer.Option(
        "--voice", help="Voice name (see: talkface voices).")] = None,
    portrait: Annotated[Optional[Path], typer.Option(
        "--portrait", help="Photo of one face.", dir_okay=False)] = None,
    framing: FramingOption = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for blinks and head motion.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    faq: FAQOption = None,
    llm_large_url: LargeURLOption = None,
    llm_large_model: LargeModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Talk with the avatar: a spoken or typed question, or a whole script."""
    import asyncio

    from talkface.commands.chat import ChatOptions, ScriptTurn, read_script, run_chat
    from talkface.config import load_settings
    from talkface.errors import BadInput

    quiet_native_logs()
    given = [name for name, value in (("--audio", audio), ("--text", text), ("--script", script))
             if value is not None]
    if len(given) != 1:
        raise BadInput("give exactly one of --audio, --text or --script")
    if audio is not None:
        turns: tuple[ScriptTurn, ...] = (ScriptTurn(audio=audio),)
    elif text is not None:
        turns = (ScriptTurn(text=text),)
    else:
        assert script is not None
        turns = read_script(script)
    llm_overrides = {key: value for key, value in (
        ("backend", llm), ("url", llm_url), ("model", llm_model), ("api_key", llm_api_key),
    ) if value is not None}
    if llm == "openai" and llm_model is None:
        llm_overrides["model"] = "default"
    from talkface.commands.say import animator_overrides

    overrides = animator_overrides(framing=framing)
    if llm_overrides:
        overrides["llm"] = llm_overrides
    if faq is not None:
        overrides["faq"] = {"file": faq}
    overrides.update(routing_overrides(llm_large_url, llm_large_model))
    settings = load_settings(config, **overrides)
    asyncio.run(run_chat(ChatOptions(
        turns=turns, output=output, trace=trace, voice=voice, language=lang,
        portrait=portrait, persona=persona, seed=seed, quiet=quiet,
    ), settings))


@app.command()
@handle_errors
def report(
    trace: Annotated[Path, typer.Argument(help="A trace written by talkface chat --trace.",
                                          dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to draw.")] = Path(
        "waterfall.png"),
) -> None:
    """Draw a chat trace's per-turn latency waterfall as a PNG."""
    from talkface.commands.report import draw_waterfall

    draw_waterfall(trace, output)
    out_console.print(f"wrote {output}")


@app.command()
@handle_errors
def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on.")] = None,
    port: Annotated[Optional[int], typer.Option(help="TCP port.", min=1, max=65535)] = None,
    workers: Annotated[int, typer.Option(help="Server processes (each loads the models).",
                                         min=1, max=64)] = 1,
    engines: Annotated[Optional[str], typer.Option(
        help="Where the models run: 'local' (in this process) or 'ray' (one Ray Serve "
             "deployment per stage; this process keeps the sessions).")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        help="With --engines ray: the Ray cluster to join ('auto', 'host:6379'); "
             "default: start a local Ray.")] = None,
    faq: FAQOption = None,
    llm_large_url: LargeURLOption = None,
    llm_large_model: LargeModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the avatar: browser client, WebRTC/WebSocket sessions, render jobs, OpenAI API."""
    from talkface.commands.serve import run_serve

    quiet_native_logs()
    run_serve(host=host, port=port, workers=workers, config_file=config, engines=engines,
              ray_address=ray_address, faq=faq,
              routing=routing_overrides(llm_large_url, llm_large_model).get("routing"))


@app.command()
@handle_errors
def deploy(
    plan: Annotated[Path, typer.Argument(
        help="A plan folder (talkface plan -o DIR) or its serve_config.yaml.")],
    ray_address: Annotated[str, typer.Option(
        help="The Ray cluster to deploy on ('auto': the one this machine belongs to).")
    ] = "auto",
    timeout_s: Annotated[float, typer.Option(
        help="How long to wait for every deployment to be running.", min=1)] = 900.0,
    check: Annotated[bool, typer.Option(
        "--check", help="Only validate the config; deploy nothing.")] = False,
) -> None:
    """Validate a plan's Ray Serve config and deploy the engines on a Ray cluster."""
    from talkface.commands.deploy import run_deploy

    quiet_native_logs()
    run_deploy(plan, ray_address=ray_address, timeout_s=timeout_s, check_only=check)


@app.command()
@handle_errors
def voices() -> None:
    """List the voices installed on this machine."""
    from rich.table import Table

    from talkface.tts.voices import list_voices

    table = Table("voice", "language", "backend", "description", "license")
    for voice in list_voices():
        table.add_row(voice.name, voice.language, voice.backend, voice.description,
                      voice.license)
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
        table = Table("", "check", "needed by", "detail", "fix")
        for check in checks:
            mark = "[green]ok[/]" if check.ok else "[red]missing[/]"
            table.add_row(mark, check.name, check.required_for, check.detail, check.fix)
        out_console.print(table)
    for check in failed:
        out_console.print(f"[red]missing:[/] {check.name} ({check.detail}); fix: {check.fix}")
    if failed:
        raise typer.Exit(EXIT_FAILED)
    if not quiet:
        out_console.print("[green]everything talkface needs is installed[/]")


def _mount_subcommands() -> None:
    # These commands live with their packages; heavy imports happen only when they run.
    from talkface.commands.bench import app as bench_app
    from talkface.commands.cache import app as cache_app
    from talkface.planner.cli import plan_command

    app.command("plan")(plan_command)
    app.add_typer(bench_app, name="bench")
    app.add_typer(cache_app, name="cache")


_mount_subcommands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
