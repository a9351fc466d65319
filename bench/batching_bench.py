"""Batched vs one-by-one: what a request costs the TTS and animator backends, on this box.

    .venv/bin/python bench/batching_bench.py            # batches of 1, 2, 4, 8

For each backend, N requests (different sentences / different sessions' frame chunks)
are run as N calls of one request and as one call of N requests, pinned to one core.
Prints per-request CPU ms (process time, which other work on a shared box disturbs
less than wall time) and wall ms, and the batched/one-by-one ratio: below 1.0, a batch
is cheaper per request. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SENTENCES = [
    "Hello! I am your virtual assistant.",
    "How can I help you today?",
    "Our store opens at nine in the morning and closes at six in the evening.",
    "Sure, let me check that for you.",
    "Thank you for waiting, your order is ready.",
    "Is there anything else I can do for you?",
    "Have a wonderful day.",
    "I am sorry, I did not catch that.",
]
CHINESE = ["你好，很高兴为您服务。", "请问您需要什么帮助？", "我们的商店早上九点开门。",
           "谢谢您的耐心等待。", "您的订单已经准备好了。", "还有什么可以帮您的吗？",
           "祝您今天愉快。", "对不起，我没有听清楚。"]
SIZES = (1, 2, 4, 8)
REPEATS = 3


def measure(run: Callable[[Sequence[Any]], Any], requests: Sequence[Any]) -> tuple[float, float]:
    """(CPU ms, wall ms) per request of ``run(requests)``, best of REPEATS."""
    cpu, wall = [], []
    for _ in range(REPEATS):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        run(requests)
        cpu.append((time.process_time() - cpu_start) * 1000 / len(requests))
        wall.append((time.perf_counter() - wall_start) * 1000 / len(requests))
    return min(cpu), min(wall)


def compare(name: str, batch_call: Callable[[list[Any]], Any], requests: list[Any]) -> None:
    print(f"== {name}: per request, one-by-one vs one batch (best of {REPEATS})")
    print("   N | one-by-one CPU ms | batched CPU ms | ratio "
          "| one-by-one wall ms | batched wall ms")
    for size in SIZES:
        chosen = requests[:size]
        single_cpu, single_wall = measure(lambda rs: [batch_call([r]) for r in rs], chosen)
        batch_cpu, batch_wall = measure(lambda rs: batch_call(list(rs)), chosen)
        ratio = batch_cpu / single_cpu
        print(f"  {size:2d} | {single_cpu:17.1f} | {batch_cpu:14.1f} | {ratio:5.2f}"
              f" | {single_wall:18.1f} | {batch_wall:15.1f}")


def main() -> None:
    from talkface.audio import pcm16_to_float32, resample
    from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest, AnimatorSettings
    from talkface.face.landmark_warp import LandmarkWarpAnimator
    from talkface.face.portrait import load_portrait
    from talkface.tts.base import SynthesisRequest, TTSSettings
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import backend_class, resolve_voice

    try:
        core = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {core})
        print(f"pinned to CPU {core}")
    except (AttributeError, OSError):
        print("not pinned")
    settings = TTSSettings()
    joe = PiperTTS.load(settings, resolve_voice("joe", "en", settings))
    compare("TTS piper joe", joe._synthesize_batch,
            [SynthesisRequest(text=t, voice=joe.voice) for t in SENTENCES])
    zh_voice = resolve_voice(None, "zh", settings)
    zh = backend_class(zh_voice.backend).load(settings, zh_voice)
    compare(f"TTS {zh_voice.name}", zh._synthesize_batch,
            [SynthesisRequest(text=t, voice=zh_voice) for t in CHINESE])

    speech = joe.synthesize(SynthesisRequest(text=" ".join(SENTENCES[:3]), voice=joe.voice))
    audio = resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz,
                     ANIMATOR_AUDIO_RATE_HZ).astype(np.float32)
    with tempfile.TemporaryDirectory() as cache:
        animator = LandmarkWarpAnimator.load(AnimatorSettings(size_px=512, cache_dir=Path(cache)))
        avatar = animator.prepare_avatar_sync(load_portrait())
        # Eight sessions' next chunk of 8 frames (40 ms each), as an engine batch holds them.
        chunks = [AnimationRequest(avatar_id=avatar, first_frame_index=8 * k, num_frames=8,
                                   fps=25, audio=audio, audio_start_ns=0, seed=k)
                  for k in range(8)]
        compare("animator landmark-warp 512x512, 8-frame chunks", animator._animate_batch,
                chunks)


if __name__ == "__main__":
    main()
