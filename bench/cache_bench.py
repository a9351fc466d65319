"""Benchmark of the caches: CPU of a warmed `say` against a fresh one. Asserts nothing.

    .venv/bin/python bench/cache_bench.py            # --size-px 512 --runs 5 --cli-runs 3

Part 1, in one process with the models loaded: the process CPU time (``time.process_time``,
every thread: TTS, animator, encoder) of ``talkface say``'s work
(:func:`talkface.commands.say.say_to_file`) for each phrase, three ways, the median of
``--runs`` runs each:

1. fresh: every cache off (TTS, animator and encoder all run);
2. clip: the phrase played from the clip cache and encoded (the video cache emptied
   before each run: what a warmed `say` cost before the video cache);
3. video: the warmed phrase's MP4 copied from the video cache.

Part 2, as a user runs it: the CPU time (user + system) of whole ``talkface say``
processes, fresh (cache off) and warmed, the median of ``--cli-runs`` each. This
includes starting Python and importing talkface, which no cache removes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
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


async def in_process(phrases: list[str], size_px: int, runs: int, folder: Path) -> None:
    from talkface.cache.warm import WarmOptions, warm_phrases
    from talkface.commands.say import SayOptions, SayResult, say_to_file
    from talkface.config import Settings, load_settings
    from talkface.runtime import Runtime

    def settings(enabled: bool) -> Settings:
        return load_settings(animator={"size_px": size_px},
                             cache={"enabled": enabled, "dir": folder / "cache"})

    fresh_runtime, cached_runtime = Runtime(settings(False)), Runtime(settings(True))
    for runtime in (fresh_runtime, cached_runtime):
        await runtime.warm_up(voices=(runtime.resolve_voice(None, "en"),))
    await warm_phrases(cached_runtime, phrases, WarmOptions())
    videos = folder / "cache" / "videos"

    async def cpu_s(runtime: Runtime, text: str, *, drop_videos: bool = False
                    ) -> tuple[float, SayResult]:
        if drop_videos:
            for entry in videos.glob("*.entry"):
                entry.unlink()
        started = time.process_time()
        result = await say_to_file(runtime, SayOptions(text=text, output=folder / "out.mp4",
                                                       quiet=True))
        return time.process_time() - started, result

    print(f"## in one process, models loaded ({size_px} px, median of {runs} runs)\n")
    print("| phrase | frames | MP4 KB | fresh CPU ms | clip + encode CPU ms | % of fresh "
          "| video copy CPU ms | % of fresh |")
    print("|---|---|---|---|---|---|---|---|")
    clip_ratios, video_ratios = [], []
    for text in phrases:
        fresh = [await cpu_s(fresh_runtime, text) for _ in range(runs)]
        clip = [await cpu_s(cached_runtime, text, drop_videos=True) for _ in range(runs)]
        video = [await cpu_s(cached_runtime, text) for _ in range(runs)]
        assert all(r.cache is None for _, r in fresh), "a fresh run was served from a cache"
        assert all(r.cache == "clip" for _, r in clip), [r.cache for _, r in clip]
        assert all(r.cache == "video" for _, r in video), [r.cache for _, r in video]
        f, c, v = (statistics.median(s for s, _ in rows) for rows in (fresh, clip, video))
        clip_ratios.append(100 * c / f)
        video_ratios.append(100 * v / f)
        size_kb = (folder / "out.mp4").stat().st_size / 1024
        print(f"| {text} | {video[0][1].video.frames} | {size_kb:.0f} | {1000 * f:.0f} | "
              f"{1000 * c:.0f} | {clip_ratios[-1]:.1f} | {1000 * v:.1f} | "
              f"{video_ratios[-1]:.2f} |")
    print(f"\nmedian over phrases, CPU of a warmed `say` / a fresh one: video cache "
          f"{statistics.median(video_ratios):.2f} %, clip cache + encode "
          f"{statistics.median(clip_ratios):.1f} %\n")
    for runtime in (fresh_runtime, cached_runtime):
        await runtime.aclose()


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def whole_processes(text: str, size_px: int, runs: int, folder: Path) -> None:
    command = [sys.executable, "-m", "talkface.cli", "say", text, "-o",
               str(folder / "cli.mp4"), "-q"]
    env = {**os.environ, "TALKFACE_ANIMATOR__SIZE_PX": str(size_px),
           "TALKFACE_CACHE__DIR": str(folder / "cli-cache")}

    def run(enabled: bool) -> tuple[float, str]:
        started = child_cpu_s()
        done = subprocess.run(command, env={**env, "TALKFACE_CACHE__ENABLED": str(enabled)},
                              capture_output=True, text=True, check=True)
        return child_cpu_s() - started, done.stdout

    run(True)  # the first warmed run renders and keeps the MP4
    fresh = [run(False) for _ in range(runs)]
    warmed = [run(True) for _ in range(runs)]
    assert all("from the video cache" in out for _, out in warmed), warmed[0][1]
    started = child_cpu_s()
    subprocess.run([sys.executable, "-c", "import talkface.commands.say"], check=True)
    import_s = child_cpu_s() - started
    f, w = (statistics.median(s for s, _ in rows) for rows in (fresh, warmed))
    print(f"## whole `talkface say` processes ({text!r}, median of {runs} runs)\n")
    print("| fresh CPU s | warmed CPU s | % of fresh | of which starting Python and importing "
          "`talkface.commands.say` |")
    print("|---|---|---|---|")
    print(f"| {f:.2f} | {w:.2f} | {100 * w / f:.1f} | {import_s:.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-px", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5, help="in-process runs of each kind")
    parser.add_argument("--cli-runs", type=int, default=3, help="whole processes of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="talkface-cache-bench-") as name:
        folder = Path(name)
        asyncio.run(in_process(PHRASES, args.size_px, args.runs, folder))
        if args.cli_runs:
            whole_processes(PHRASES[1], args.size_px, args.cli_runs, folder)


if __name__ == "__main__":
    main()
