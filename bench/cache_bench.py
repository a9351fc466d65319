"""Benchmark of the clip cache: CPU of a warmed `say` against a fresh one. Asserts nothing.

    .venv/bin/python bench/cache_bench.py

For each phrase, in one process with the models loaded: the process CPU time (all
threads: TTS, animator, encoder) of

1. a fresh render (cache off, the clips' seed), and of
2. the same phrase once warmed (played from the clip cache),

each measured twice over: the turn alone (``Session.say`` until ``EndOfTurn``) and the
whole ``say`` (the turn plus writing the MP4). It also prints the clip's size on disk,
its decode time, and the time to the first audio message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PHRASES = [
    "Hello! How can I help you today?",
    "Thank you for waiting.",
    "Sure, let me check that for you.",
    "Is there anything else I can do for you?",
]


async def run(phrases: list[str], size_px: int) -> None:
    from talkface.cache import open_caches
    from talkface.cache.warm import WarmOptions, warm_phrases
    from talkface.config import load_settings
    from talkface.engines import ModelThread
    from talkface.messages import SpeechAudio, VideoFrame
    from talkface.output.mp4 import MP4Writer
    from talkface.runtime import Runtime
    from talkface.session import Session, SessionOptions

    folder = Path(tempfile.mkdtemp(prefix="talkface-cache-bench-"))
    settings = load_settings(animator={"size_px": size_px},
                             cache={"enabled": True, "dir": folder / "cache"})
    runtime = Runtime(settings)
    voice = runtime.resolve_voice(None, "en")
    await runtime.warm_up(voices=(voice,))

    async def timed(session: Session, text: str, *, write: bool) -> tuple[float, float]:
        """(process CPU s, ms to first audio) of one turn, with or without the MP4."""
        encoder = ModelThread("encoder")
        writer = MP4Writer(folder / "out.mp4", fps=settings.animator.fps, size_px=size_px,
                           settings=settings.output)
        started_cpu, started = time.process_time(), time.perf_counter()
        first_audio_ms = 0.0
        async for message in session.say(text):
            if isinstance(message, SpeechAudio) and not first_audio_ms:
                first_audio_ms = (time.perf_counter() - started) * 1000
            if write and isinstance(message, SpeechAudio):
                await encoder.run(writer.write_speech, message)
            elif write and isinstance(message, VideoFrame):
                await encoder.run(writer.write_frame, message)
        if write:
            await encoder.run(writer.close)
        else:
            encoder.call(writer.abort)
        cpu_s = time.process_time() - started_cpu
        encoder.shutdown()
        return cpu_s, first_audio_ms

    clips = open_caches(settings.cache).clips
    assert clips is not None
    rows = []
    for text in phrases:
        # Fresh: the cache's TTS and clip lookups skipped (seed 5 is not the clips' seed,
        # and the TTS cache is emptied first), so every stage runs.
        fresh = []
        for write in (False, True):
            for entry in (folder / "cache" / "tts").glob("*.entry"):
                entry.unlink()
            fresh.append(await timed(Session(runtime, SessionOptions(seed=5)), text,
                                     write=write))
        await warm_phrases(runtime, [text], WarmOptions())
        warmed = [await timed(Session(runtime), text, write=write) for write in (False, True)]
        entry_path = next(iter(sorted((folder / "cache" / "clips").glob("*.entry"),
                                      key=lambda p: p.stat().st_mtime)[-1:]))
        started = time.perf_counter()
        clip = clips.lookup(entry_path.stem)
        frames = 0 if clip is None else sum(isinstance(m, VideoFrame) for m in clip.messages())
        decode_ms = (time.perf_counter() - started) * 1000
        rows.append((text, fresh, warmed, entry_path.stat().st_size, decode_ms, frames))
    await runtime.aclose()

    print("| phrase | frames | fresh turn CPU s | warmed turn CPU s | % | fresh say+MP4 CPU s "
          "| warmed say+MP4 CPU s | % | clip MB | decode ms | first audio ms fresh / warmed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for text, fresh, warmed, size, decode_ms, frames in rows:
        print(f"| {text} | {frames} | {fresh[0][0]:.2f} | {warmed[0][0]:.3f} | "
              f"{100 * warmed[0][0] / fresh[0][0]:.1f} | {fresh[1][0]:.2f} | "
              f"{warmed[1][0]:.3f} | {100 * warmed[1][0] / fresh[1][0]:.1f} | "
              f"{size / 2**20:.1f} | {decode_ms:.0f} | {fresh[0][1]:.0f} / {warmed[0][1]:.0f} |")
    turn = [100 * w[0][0] / f[0][0] for _, f, w, *_ in rows]
    whole = [100 * w[1][0] / f[1][0] for _, f, w, *_ in rows]
    print(f"median warmed/fresh CPU: turn {statistics.median(turn):.1f} %, "
          f"say with MP4 {statistics.median(whole):.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-px", type=int, default=512)
    args = parser.parse_args()
    asyncio.run(run(PHRASES, args.size_px))


if __name__ == "__main__":
    main()
