"""``talkface say``: text in, a lip-synced talking-head MP4 out."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from talkface.cache import (
    CLIP_HIT_MARK,
    VIDEO_CACHE_NAME,
    VideoCache,
    VideoRequest,
    open_caches,
    portrait_identity,
)
from talkface.commands._common import err_console, out_console, stderr_is_terminal
from talkface.config import load_settings
from talkface.engines import ModelThread
from talkface.errors import BadInput
from talkface.face.base import Framing
from talkface.face.portrait import load_portrait
from talkface.messages import SpeechAudio, VideoFrame
from talkface.output.mp4 import MP4Writer, WrittenVideo, check_output_path
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions
from talkface.text.policy import choose_voice, speech_text
from talkface.text.sentences import split_sentences
from talkface.trace import TurnTrace

MAX_STDIN_BYTES = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SayOptions:
    """Everything ``talkface say`` was asked to do."""

    text: str
    output: Path
    language: str | None = None
    voice: str | None = None
    portrait: Path | None = None
    speed: float = 1.0
    seed: int | None = None
    quiet: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SayResult:
    """What was rendered, and how fast.

    Attributes:
        cache: what a cache served: "video" (the MP4 was copied from the video cache:
            no model loaded, nothing drawn or encoded; the first audio and first frame
            are then the moment the file was in place), "clip" (played from the clip
            cache, then encoded), or None (rendered).
    """

    video: WrittenVideo
    first_audio_ms: float
    first_video_frame_ms: float
    render_s: float
    load_s: float
    cache: str | None = None

    @property
    def real_time_factor(self) -> float:
        """Seconds spent rendering per second of video."""
        return self.render_s / self.video.duration_s if self.video.duration_s else 0.0

    def summary(self) -> str:
        """The one line ``talkface say`` prints."""
        v = self.video
        return (
            f"wrote {v.path} ({v.duration_s:.2f} s, {v.frames} frames @ {v.fps} fps) | "
            f"first audio {self.first_audio_ms:.0f} ms | first video frame "
            f"{self.first_video_frame_ms:.0f} ms | RTF {self.real_time_factor:.2f} "
            f"(render {self.render_s:.2f} s, models {self.load_s:.1f} s)"
            + (f" | from the {self.cache} cache" if self.cache else "")
        )


def animator_overrides(*, size_px: int | None = None,
                       framing: Framing | None = None) -> dict[str, object]:
    """Settings overrides for the animator options that ``say`` and ``chat`` take."""
    animator: dict[str, object] = {}
    if size_px is not None:
        animator["size_px"] = size_px
    if framing is not None:
        animator["framing"] = Framing(framing)
    return {"animator": animator} if animator else {}


def read_text_argument(text: str) -> str:
    """The text to say; ``-`` reads it from standard input."""
    if text != "-":
        return text
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise BadInput(f"standard input has more than {MAX_STDIN_BYTES} bytes of text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("standard input is not UTF-8 text") from None


async def render_say(options: SayOptions, *, config_file: Path | None = None,
                     overrides: dict[str, object] | None = None) -> SayResult:
    """Render ``options.text`` to ``options.output`` and report the timings."""
    settings = load_settings(config_file, **(overrides or {}))
    async with Runtime(settings) as runtime:
        return await say_to_file(runtime, options)


async def say_to_file(runtime: Runtime, options: SayOptions) -> SayResult:
    """:func:`render_say` with ``runtime``'s settings and engines.

    A text whose MP4 is in the video cache is copied from it before any model is
    loaded; one rendered with a known seed is kept there once written.
    """
    settings = runtime.settings
    output = check_output_path(options.output)
    if options.output.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise BadInput(f"output {options.output.name} should end in .mp4")
    started_load = time.perf_counter()
    session = Session(runtime, SessionOptions(
        voice=options.voice, language=options.language, speed=options.speed,
        seed=options.seed,
    ))
    text = session.check_text(options.text)
    # The same policy as every other entry point: language, tag, voice (text/policy.py).
    checked = speech_text(text, language=options.language,
                          limit_chars=settings.limits.max_text_chars)
    language = checked.language
    voice = choose_voice(runtime.resolve_voice, options.voice, language)
    videos = open_caches(settings.cache).videos
    video_key = None
    if videos is not None:
        request = VideoRequest(
            pieces=tuple(checked.sentences()), language=language, voice=voice,
            speed=options.speed, portrait=await asyncio.to_thread(portrait_identity,
                                                                  options.portrait),
            seed=options.seed,
        )
        video_key = videos.key_for(request, animator=settings.animator, output=settings.output)
        if video_key is not None:
            hit = await _copy_cached(videos, video_key, output, started_load)
            if hit is not None:
                return hit
    image = load_portrait(options.portrait) if options.portrait else None
    with _status(options.quiet, "loading models"):
        await runtime.warm_up(voices=(voice,))
        if image is not None:
            session = Session(runtime, SessionOptions(
                voice=options.voice, language=options.language, speed=options.speed,
                seed=options.seed, avatar_id=await runtime.prepare_avatar(image),
            ))
    load_s = time.perf_counter() - started_load
    result = await _render(session, text, language, output, options, load_s)
    if videos is not None and video_key is not None:
        await asyncio.to_thread(videos.keep, video_key, result.video)
    return result


async def _copy_cached(videos: VideoCache, key: str, output: Path,
                       started: float) -> SayResult | None:
    """The result of copying ``key``'s MP4 to ``output``, or None on a miss."""
    stored = await asyncio.to_thread(videos.lookup, key)
    if stored is None:
        return None
    copying = time.perf_counter()
    video = await asyncio.to_thread(videos.copy_to, stored, output)
    done = time.perf_counter()
    ready_ms = (done - copying) * 1000
    return SayResult(video=video, first_audio_ms=ready_ms, first_video_frame_ms=ready_ms,
                     render_s=done - copying, load_s=copying - started, cache=VIDEO_CACHE_NAME)


async def _render(session: Session, text: str, language: str, output: Path,
                  options: SayOptions, load_s: float) -> SayResult:
    settings = session.runtime.settings
    encoder = ModelThread("encoder")
    writer = MP4Writer(output, fps=settings.animator.fps, size_px=settings.animator.size_px,
                       settings=settings.output)
    total_sentences = len(split_sentences(text, language))
    progress = Progress(
        TextColumn("[bold]speaking"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} sentences"),
        TextColumn("{task.fields[seconds]:.1f} s of video"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=options.quiet or not stderr_is_terminal(),
    )
    started = time.perf_counter()
    try:
        with progress:
            task = progress.add_task("say", total=total_sentences, seconds=0.0)
            async for message in session.say(text):
                if isinstance(message, SpeechAudio):
                    await encoder.run(writer.write_speech, message)
                    progress.update(task, advance=1)
                elif isinstance(message, VideoFrame):
                    await encoder.run(writer.write_frame, message)
                    progress.update(task, seconds=(message.index + 1) / writer.fps)
            video = await encoder.run(writer.close)
    except BaseException:
        writer.abort()
        raise
    finally:
        encoder.shutdown()
    trace = session.last_trace
    assert trace is not None
    return SayResult(
        video=video,
        first_audio_ms=trace.latency_ms("first_audio") or 0.0,
        first_video_frame_ms=trace.latency_ms("first_video_frame") or 0.0,
        render_s=time.perf_counter() - started,
        load_s=load_s,
        cache=_served_by(trace),
    )


def _served_by(trace: TurnTrace) -> str | None:
    return "clip" if CLIP_HIT_MARK in trace.marks_ns else None


class _status:
    """A spinner on stderr while something slow happens (not with --quiet or in pipes)."""

    def __init__(self, quiet: bool, message: str) -> None:
        self._status = None if quiet or not stderr_is_terminal() else err_console.status(message)

    def __enter__(self) -> None:
        if self._status is not None:
            self._status.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc_info)


def run_say(options: SayOptions, *, config_file: Path | None,
            overrides: dict[str, object]) -> SayResult:
    """Entry point for the CLI: render, then print the one-line summary."""
    result = asyncio.run(render_say(options, config_file=config_file, overrides=overrides))
    out_console.print(result.summary(), soft_wrap=True)
    return result
