"""What a request costs to cross into a Ray Serve deployment, on this machine.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python bench/serving_bench.py'

(Ray advertises the host's address, so run it in a loopback-only network namespace.)
Starts a local Ray, deploys the engines as ``talkface serve --engines ray`` does, then
times, median of ``--calls`` each, in one run:

1. an empty handle call (the ``Engines`` ingress's ``stages()``): the bare round trip;
2. one TTS sentence and one animation request of one frame, through the remote engine
   and through the in-process engine of the same process: the difference is what the
   handle adds to a real request (serialisation of audio and frames included).

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


async def median_ms(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    await call()  # warm
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


async def main(calls: int) -> None:
    from talkface.config import load_settings
    from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest
    from talkface.runtime import Runtime
    from talkface.serving.runtime import RayRuntime
    from talkface.tts.base import SynthesisRequest

    settings = load_settings(animator={"size_px": 512})
    remote = RayRuntime(load_settings(animator={"size_px": 512}, serving={"engines": "ray"}))
    local = Runtime(settings)
    started = time.perf_counter()
    handles = await remote.handles()
    print(f"deployed the engines in {time.perf_counter() - started:.1f} s")
    from ray import serve

    ingress = serve.get_deployment_handle("Engines", app_name="talkface")
    empty_ms = await median_ms(lambda: ingress.stages.remote(), calls)
    print(f"empty handle call               {empty_ms:7.2f} ms")
    voice = local.resolve_voice(None, "en")
    sentence = SynthesisRequest(text="Sure, let me check that for you.", voice=voice)
    for name, runtime in (("in-process", local), ("ray", remote)):
        tts = await runtime.tts_engine(voice)
        avatar = await runtime.default_avatar()
        animator = await runtime.animator_engine()
        frame = AnimationRequest(avatar_id=avatar, first_frame_index=0, num_frames=1, fps=25,
                                 audio=np.zeros(ANIMATOR_AUDIO_RATE_HZ // 5, np.float32),
                                 audio_start_ns=0, seed=1)
        tts_ms = await median_ms(lambda tts=tts: tts.submit(sentence), calls)
        frame_ms = await median_ms(lambda a=animator, f=frame: a.submit(f), calls)
        print(f"{name:10s} TTS sentence           {tts_ms:7.2f} ms")
        print(f"{name:10s} animation, one frame    {frame_ms:7.2f} ms")
    assert handles
    await local.aclose()
    await remote.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    asyncio.run(main(parser.parse_args().calls))
