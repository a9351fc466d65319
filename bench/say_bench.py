"""Benchmark of the `talkface say` pipeline on this machine. Prints numbers; asserts nothing.

    .venv/bin/python bench/say_bench.py            # all three parts
    .venv/bin/python bench/say_bench.py --part animator

1. animator: ms per 512x512 frame on one core (the process is pinned to one CPU), and
   how many 25 fps streams one core could therefore drive; x264 encoding cost beside it.
2. tts: time to first audio of a reply's first clause, and real-time factor, per voice.
3. say: end to end, time from the text arriving to the first video frame (models loaded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Fresh renders only: a second run would otherwise be served from the video and clip
# caches (bench/cache_bench.py measures those).
os.environ.setdefault("TALKFACE_CACHE__ENABLED", "false")

SENTENCES = [
    "Hello! I am your virtual assistant.",
    "How can I help you today?",
    "Our store opens at nine in the morning and closes at six in the evening.",
    "Sure, let me check that for you.",
    "The weather tomorrow will be sunny, with a light breeze from the west.",
    "You can return any item within thirty days, as long as you keep the receipt.",
    "Thank you for waiting.",
    "I am sorry, I did not catch that. Could you say it again?",
    "Your order has been shipped and should arrive on Thursday.",
    "Is there anything else I can do for you?",
]
CHINESE = [
    "你好，很高兴为您服务。",
    "请问您需要什么帮助？",
    "我们的商店早上九点开门。",
    "谢谢您的耐心等待。",
]


def pin_to_one_core() -> tuple[str, set[int] | None]:
    """Pin this process to one CPU; returns a description and the previous CPU set."""
    try:
        previous = os.sched_getaffinity(0)
        core = sorted(previous)[0]
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}", previous
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)", None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_animator(frames: int) -> None:
    from talkface.audio import pcm16_to_float32, resample
    from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest, AnimatorSettings
    from talkface.face.landmark_warp import LandmarkWarpAnimator
    from talkface.face.portrait import load_portrait
    from talkface.messages import VideoFrame
    from talkface.output.mp4 import MP4Writer
    from talkface.tts.base import SynthesisRequest, TTSSettings
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    tts = PiperTTS.load(settings, resolve_voice("joe", "en", settings))
    speech = [tts.synthesize(SynthesisRequest(text=s, voice=tts.voice)) for s in SENTENCES]
    audio = np.concatenate([resample(pcm16_to_float32(s.pcm), s.sample_rate_hz,
                                     ANIMATOR_AUDIO_RATE_HZ)
                            for s in speech])
    with tempfile.TemporaryDirectory() as cache:
        animator = LandmarkWarpAnimator.load(AnimatorSettings(size_px=512, cache_dir=Path(cache)))
        started = time.perf_counter()
        avatar_id = animator.prepare_avatar_sync(load_portrait())
        prepare_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        animator.prepare_avatar_sync(load_portrait())
        cached_ms = (time.perf_counter() - started) * 1000
        per_frame_ms: list[float] = []
        rendered: list[np.ndarray] = []
        chunk = 8
        for first in range(0, frames, chunk):
            request = AnimationRequest(
                avatar_id=avatar_id,
                first_frame_index=first,
                num_frames=chunk,
                fps=25,
                audio=audio,
                audio_start_ns=0,
                seed=1,
            )
            started = time.perf_counter()
            images = animator.animate_sync(request)
            per_frame_ms.append((time.perf_counter() - started) * 1000 / chunk)
            rendered.extend(images)
        encode_ms: list[float] = []
        with tempfile.TemporaryDirectory() as out:
            writer = MP4Writer(Path(out) / "bench.mp4", fps=25, size_px=512)
            for index, image in enumerate(rendered):
                started = time.perf_counter()
                writer.write_frame(VideoFrame(image=image, pts_ns=index * 40_000_000, index=index))
                encode_ms.append((time.perf_counter() - started) * 1000)
            writer.close()
    median = statistics.median(per_frame_ms)
    print("== animator: landmark-warp, 512x512, one thread, one core")
    print(f"avatar preparation: {prepare_ms:.0f} ms first time, {cached_ms:.1f} ms cached")
    print(f"frames rendered: {len(rendered)} in chunks of {chunk}")
    print(f"ms/frame: median {median:.2f}  p95 {percentile(per_frame_ms, 95):.2f}  "
          f"max {max(per_frame_ms):.2f}")
    print(f"=> 25 fps streams per core (animation only): {1000 / median / 25:.1f}")
    print(f"x264 encode ms/frame (veryfast, 1 thread): median {statistics.median(encode_ms):.2f}  "
          f"p95 {percentile(encode_ms, 95):.2f}")


def bench_tts() -> None:
    from talkface.text.sentences import split_sentences
    from talkface.tts.base import SynthesisRequest, TTSSettings
    from talkface.tts.espeak import EspeakTTS
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    print("== tts: first clause of each reply (time to first audio) and real-time factor")
    for backend, voice_name, language, texts in (
        (PiperTTS, "joe", "en", SENTENCES),
        (EspeakTTS, "espeak-zh", "zh", CHINESE),
    ):
        voice = resolve_voice(voice_name, language, settings)
        tts = backend.load(settings, voice)
        first_audio_ms, rtf = [], []
        for text in texts * 2:
            first_clause = split_sentences(text, language)[0]
            started = time.perf_counter()
            speech = tts.synthesize(SynthesisRequest(text=first_clause, voice=voice))
            elapsed = time.perf_counter() - started
            first_audio_ms.append(elapsed * 1000)
            rtf.append(elapsed / (speech.duration_ns / 1e9))
        print(
            f"{voice_name:10s} first audio ms: median {statistics.median(first_audio_ms):.0f}  "
            f"p95 {percentile(first_audio_ms, 95):.0f} | RTF median {statistics.median(rtf):.3f}  "
            f"p95 {percentile(rtf, 95):.3f}"
        )


def bench_say(runs: int) -> None:
    from talkface.commands.say import SayOptions, render_say

    print("== say: end to end, text arriving -> first video frame (models loaded)")
    for language, texts in (("en", SENTENCES[:runs]), ("zh", CHINESE * (runs // len(CHINESE) + 1))):
        first_frame, first_audio, rtf = [], [], []
        with tempfile.TemporaryDirectory() as out:
            for i, text in enumerate(texts[:runs]):
                result = asyncio.run(render_say(SayOptions(
                    text=text, output=Path(out) / f"{i}.mp4", language=language, quiet=True, seed=i,
                )))
                first_frame.append(result.first_video_frame_ms)
                first_audio.append(result.first_audio_ms)
                rtf.append(result.real_time_factor)
        print(f"{language}: first video frame ms median {statistics.median(first_frame):.0f}  "
              f"p95 {percentile(first_frame, 95):.0f} | first audio ms median "
              f"{statistics.median(first_audio):.0f} | RTF median {statistics.median(rtf):.2f} "
              f"({len(first_frame)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("animator", "tts", "say", "all"), default="all")
    parser.add_argument("--frames", type=int, default=400, help="frames for the animator part")
    parser.add_argument("--runs", type=int, default=10, help="renders per language for say")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs")
    if args.part in ("animator", "all"):
        # The animator target is per core: measure it on one.
        pinned, previous = pin_to_one_core()
        print(f"animator: {pinned}")
        bench_animator(args.frames)
        if previous is not None:
            os.sched_setaffinity(0, previous)
    if args.part in ("tts", "all"):
        bench_tts()
    if args.part in ("say", "all"):
        bench_say(args.runs)


if __name__ == "__main__":
    main()
