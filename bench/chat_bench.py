"""Per-stage latency waterfall of spoken turns, p50/p95. Prints numbers; asserts nothing.

    .venv/bin/python bench/chat_bench.py                  # 20 turns, embedded models
    .venv/bin/python bench/chat_bench.py --turns 10 --asr-model tiny.en

Questions are spoken by two different voices (piper and espeak-ng), played into one
live conversation in real time as a microphone would, each after the previous answer
has finished playing. Every latency is measured from the end of the user's speech.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _questions import QUESTIONS  # bench/ is the script's own folder

RATE = 16_000
CHUNK = 512


def synthesise_questions(count: int) -> list[tuple[str, str, np.ndarray]]:
    from talkface.audio import pcm16_to_float32, resample
    from talkface.tts.base import SynthesisRequest, TTSSettings
    from talkface.tts.espeak import EspeakTTS, voice_for_language
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    voices = {
        "piper": PiperTTS.load(settings, resolve_voice("joe", "en", settings)),
        "espeak": EspeakTTS.load(settings, voice_for_language("en")),
    }
    clips = []
    for i in range(count):
        name = "piper" if i % 2 == 0 else "espeak"
        text = QUESTIONS[(i // 2) % len(QUESTIONS)]
        tts = voices[name]
        speech = tts.synthesize(SynthesisRequest(text=text, voice=tts.voice))
        audio = resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz, RATE)
        clips.append((name, text, audio.astype(np.float32)))
    return clips


async def run(turns: int, settings_overrides: dict[str, object]) -> list[dict[str, object]]:
    from talkface.audio import float32_to_pcm16
    from talkface.config import load_settings
    from talkface.conversation import Conversation, ConversationOptions
    from talkface.messages import AudioChunk, EndOfTurn
    from talkface.runtime import Runtime

    clips = synthesise_questions(turns)
    async with Runtime(load_settings(**settings_overrides)) as runtime:
        await runtime.vad()
        await runtime.asr_engine()
        await runtime.llm_engine()
        await runtime.warm_up(voices=(runtime.resolve_voice(None, "en"),))
        conversation = Conversation(runtime, ConversationOptions(seed=1))
        ended = asyncio.Queue()

        async def player() -> None:
            async for message in conversation.messages():
                await conversation.timeline.wait_due(message)
                if isinstance(message, EndOfTurn):
                    await ended.put(message)

        async with conversation:
            playing = asyncio.create_task(player())
            start = time.monotonic()
            pts = 0

            async def feed(samples: np.ndarray) -> None:
                nonlocal pts
                for offset in range(0, len(samples), CHUNK):
                    due = start + pts / RATE
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    chunk = samples[offset : offset + CHUNK]
                    await conversation.send_audio(AudioChunk(
                        pcm=float32_to_pcm16(chunk), sample_rate_hz=RATE,
                        pts_ns=pts * 1_000_000_000 // RATE))
                    pts += len(chunk)

            for index, (voice, text, audio) in enumerate(clips):
                await feed(np.zeros(int(0.6 * RATE), np.float32))
                await feed(audio)
                # Keep the microphone open (silence) until the answer has been played.
                silence = np.zeros(CHUNK, np.float32)
                while ended.empty():
                    await feed(silence)
                await ended.get()
                print(f"turn {index + 1}/{len(clips)} ({voice}): {text}", flush=True)
            await conversation.end_input()
            await playing
        return [
            {"voice": clips[i][0] if i < len(clips) else "", "transcript": t.transcript,
             "reply": t.reply, "latency_ms": t.trace.as_dict()}
            for i, t in enumerate(conversation.turns)
        ]


def summarise(turns: list[dict[str, object]]) -> None:
    from talkface.trace import STAGES

    print(f"\n{len(turns)} turns; ms from the end of the user's speech")
    print(f"{'stage':20s} {'p50':>7s} {'p95':>7s} {'max':>7s}")
    for stage in STAGES:
        values = [t["latency_ms"][stage] for t in turns if stage in t["latency_ms"]]
        if values:
            print(f"{stage:20s} {statistics.median(values):7.0f} "
                  f"{float(np.percentile(values, 95)):7.0f} {max(values):7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--asr-model", default=None, help="base (default) or tiny.en")
    parser.add_argument("--json", type=Path, default=None, help="also write the turns here")
    args = parser.parse_args()
    overrides: dict[str, object] = {}
    if args.asr_model:
        overrides["asr"] = {"model": args.asr_model}
    turns = asyncio.run(run(args.turns, overrides))
    if args.json:
        args.json.write_text(json.dumps({"turns": turns}, indent=2))
    summarise(turns)


if __name__ == "__main__":
    main()
