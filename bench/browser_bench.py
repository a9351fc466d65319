"""End of the user's speech to the avatar's first frame on screen, in real Chromium. Numbers only.

    .venv/bin/python bench/browser_bench.py              # 10 spoken questions
    .venv/bin/python bench/browser_bench.py --questions 5 --gap-s 10

One WAV holds the questions (piper and espeak-ng voices, alternating), each followed by
enough silence for the answer; Chromium plays it as its microphone into the page served
by ``talkface serve`` (default settings), which talks to the server over WebRTC. The
page timestamps every decoded frame (``requestVideoFrameCallback``) on the server's
clock (ping/pong over the data channel), and a turn's first frame is the first one
received after the server sent it. The end of each question is known from the WAV
(the last loud sample), placed on the same clock by the moment the page's microphone
started. Everything runs in a loopback-only network namespace when one can be made.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _questions import QUESTIONS  # bench/ is the script's own folder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "api"))

RATE = 16_000
LEAD_S = 3.0
CHROMIUM = "/usr/bin/chromium"
_IN_NETNS = "TALKFACE_BENCH_NETNS"


def synthesise(count: int, gap_s: float, path: Path) -> list[float]:
    """The questions in one WAV; returns where each one's speech ends (seconds)."""
    from talkface.audio import float32_to_pcm16, pcm16_to_float32, resample
    from talkface.tts.base import SynthesisRequest, TTSSettings
    from talkface.tts.espeak import EspeakTTS, voice_for_language
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    voices = [PiperTTS.load(settings, resolve_voice("joe", "en", settings)),
              EspeakTTS.load(settings, voice_for_language("en"))]
    parts = [np.zeros(int(LEAD_S * RATE), np.float32)]
    ends = []
    at = len(parts[0])
    for i in range(count):
        tts = voices[i % 2]
        speech = tts.synthesize(SynthesisRequest(text=QUESTIONS[i % len(QUESTIONS)],
                                                 voice=tts.voice))
        audio = resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz, RATE)
        loud = np.flatnonzero(np.abs(audio) > 0.02)
        ends.append((at + int(loud[-1])) / RATE)
        parts += [audio.astype(np.float32), np.zeros(int(gap_s * RATE), np.float32)]
        at += len(audio) + int(gap_s * RATE)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes(float32_to_pcm16(np.concatenate(parts)))
    return ends


async def measure(wav: Path, ends_s: list[float], duration_s: float, work: Path
                  ) -> dict[str, Any]:
    from browser_scenario import chromium_args
    from loopback_netns import talkface_serve
    from playwright.async_api import async_playwright

    async with talkface_serve(work / "server.log") as served, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=chromium_args(wav))
        try:
            page = await browser.new_page()
            await page.goto(served.page_url)
            await page.click("#start")
            await page.wait_for_function("() => window.talkface.status === 'listening'",
                                         timeout=60_000)
            await page.wait_for_timeout(int(duration_s * 1000))
            return await page.evaluate("""() => ({
              mic: window.talkface.micStartedAtServerMs(),
              turns: Object.entries(window.talkface.turns).map(([id, t]) => ({
                id: Number(id), shownAt: t.shownAt, latency: t.latency,
                transcript: t.transcript}))})""")
        finally:
            await browser.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def report(page: dict[str, Any], ends_s: list[float]) -> None:
    if os.environ.get("TALKFACE_BENCH_DEBUG"):
        import json
        print(json.dumps(page, indent=1), ends_s)
    mic = page["mic"]
    shown = sorted((t["shownAt"], t) for t in page["turns"] if t["shownAt"] is not None)
    browser_ms, server_ms = [], []
    for i, end_s in enumerate(ends_s):
        speech_end = mic + end_s * 1000
        limit = mic + ends_s[i + 1] * 1000 if i + 1 < len(ends_s) else float("inf")
        first = next((t for at, t in shown if speech_end < at < limit), None)
        if first is None:
            continue
        browser_ms.append(first["shownAt"] - speech_end)
        stages = first["latency"] or {}
        if "first_frame_shown" in stages:
            server_ms.append(stages["first_frame_shown"])
    print(f"turns measured: {len(browser_ms)} of {len(ends_s)}")
    print(f"{'ms from end of speech to first frame on screen':48s} {'p50':>7s} {'p95':>7s}")
    print(f"{'  speech end from the WAV (browser clock)':48s} "
          f"{percentile(browser_ms, 50):7.0f} {percentile(browser_ms, 95):7.0f}")
    print(f"{'  speech end from the server VAD (trace)':48s} "
          f"{percentile(server_ms, 50):7.0f} {percentile(server_ms, 95):7.0f}")
    for stage in ("asr_final", "llm_first_token", "first_audio", "first_video_frame",
                  "first_byte"):
        values = [t["latency"][stage] for t in page["turns"]
                  if t["latency"] and stage in t["latency"]]
        if values:
            print(f"{'  server ' + stage:48s} {statistics.median(values):7.0f} "
                  f"{percentile(values, 95):7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--gap-s", type=float, default=12.0,
                        help="silence after each question (time for the answer)")
    parser.add_argument("--no-netns", action="store_true",
                        help="do not isolate the network (needs no root)")
    args = parser.parse_args()
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        sys.exit("needs Chromium: apt-get install -y chromium")
    if not args.no_netns and not os.environ.get(_IN_NETNS):
        from loopback_netns import loopback_netns_unavailable, netns_command

        if loopback_netns_unavailable() is None:
            # Again, inside a namespace that has only loopback.
            command = netns_command([sys.executable, *sys.argv])
            sys.exit(subprocess.call(command, env={**os.environ, _IN_NETNS: "1"}))
    with tempfile.TemporaryDirectory(prefix="talkface-bench-") as folder:
        work = Path(folder)
        wav = work / "questions.wav"
        ends = synthesise(args.questions, args.gap_s, wav)
        duration = ends[-1] + args.gap_s
        page = asyncio.run(measure(wav, ends, duration, work))
    report(page, ends)


if __name__ == "__main__":
    main()
