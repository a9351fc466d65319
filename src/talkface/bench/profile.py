"""``talkface bench profile``: measure every real engine on this machine, into a profile.

Each engine is measured alone (the others idle), with the threads it runs with in
``talkface serve``, at a few work sizes and batch sizes, and summarised as the planner's
:class:`~talkface.planner.profile.Profile` (service-time samples per batch shape, memory,
real-time factor). The planner and its simulator read nothing else about the engines.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from talkface.config import Settings
from talkface.planner.profile import (
    CostCurve,
    EngineProfile,
    MachineInfo,
    PipelineSettings,
    Profile,
    ServicePoint,
)

Progress = Callable[[str], None]
_SENTENCES = (
    "Sure.",
    "Let me check that for you.",
    "Our store opens at nine in the morning.",
    "You can return any item within thirty days, as long as you keep the receipt.",
)
_QUESTIONS = (
    "Hello there.",
    "What time does the store open?",
    "Can you tell me where the nearest train station is, and how long it takes to walk?",
    "I would like to return a jacket that I bought last week, but I lost the receipt, "
    "what can I do about that?",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileOptions:
    """How much to measure.

    Attributes:
        repeats: samples per work size and batch size.
        max_batch_size: largest batch measured for engines that take batches.
        encoder: the live video encoder to measure: "x264" (fragmented MP4; WebRTC's
            encoders cost about the same) or "jpeg" (the WebSocket ``jpeg`` output).
    """

    repeats: int = 5
    max_batch_size: int = 4
    encoder: Literal["x264", "jpeg"] = "x264"


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def _timed_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            kib = int(handle.readline().split()[1])
        return round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def measure_profile(settings: Settings, options: ProfileOptions | None = None,
                    progress: Progress | None = None) -> Profile:
    """Measure every engine and return the profile."""
    options = options or ProfileOptions()
    say = progress or (lambda _: None)
    engines: dict[str, EngineProfile] = {}
    speech = _measure_tts(settings, options, say, engines)
    _measure_vad(settings, options, say, engines)
    _measure_asr(settings, options, say, engines, speech)
    _measure_llm(settings, options, say, engines)
    _measure_animator(settings, options, say, engines, speech)
    _measure_encoder(settings, options, say, engines)
    from talkface.api.realtime.media import IDLE_CHUNK_FRAMES
    from talkface.asr.streaming import MIN_PARTIAL_AUDIO_S

    machine = MachineInfo(
        cpu_model=_cpu_model(),
        cpu_cores=os.cpu_count() or 1,
        # The event loop, WebRTC/WebSocket and the OS take a share of one core.
        reserved_cores=0.25,
        memory_gb=_memory_gb(),
    )
    return Profile(
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        machine=machine,
        pipeline=PipelineSettings(
            fps=settings.animator.fps,
            animator_chunk_frames=8,
            vad_window_ms=32.0,
            vad_hangover_ms=settings.vad.min_silence_ms,
            # A conversation starts its reply at the first pause (see Conversation).
            reply_start_ms=settings.vad.speech_pad_ms + 32.0,
            asr_partial_interval_ms=settings.asr.partial_interval_ms,
            asr_partial_min_audio_s=MIN_PARTIAL_AUDIO_S,
            idle_chunk_frames=IDLE_CHUNK_FRAMES,
        ),
        engines=engines,  # type: ignore[arg-type]
        notes="measured by talkface bench profile",
    )


def _measure_tts(settings: Settings, options: ProfileOptions, say: Progress,
                 engines: dict[str, EngineProfile]) -> list[np.ndarray]:
    from talkface.audio import pcm16_to_float32, resample
    from talkface.tts.base import SynthesisRequest
    from talkface.tts.voices import backend_class, resolve_voice

    say("tts: loading")
    voice = resolve_voice(None, "en", settings.tts)
    before = _rss_mb()
    tts = backend_class(voice.backend).load(settings.tts, voice)
    rss = _rss_mb() - before
    points, rtfs, speech = [], [], []
    for text in _SENTENCES:
        samples, seconds = [], 0.0
        for _ in range(options.repeats):
            started = time.perf_counter()
            audio = tts.synthesize(SynthesisRequest(text=text, voice=voice))
            samples.append((time.perf_counter() - started) * 1000.0)
            seconds = audio.duration_ns / 1e9
        rtfs.append(float(np.median(samples)) / 1000.0 / seconds)
        points.append(ServicePoint.from_samples(batch_size=1, work_units=round(seconds, 3),
                                                samples_ms=samples))
        speech.append(resample(pcm16_to_float32(audio.pcm), audio.sample_rate_hz, 16_000))
        say(f"tts: {seconds:.2f} s of speech in {np.median(samples):.0f} ms")
    engines["tts"] = EngineProfile(
        backend=f"{voice.backend} {voice.name}", device="cpu", threads=settings.tts.num_threads,
        cost=CostCurve(unit="audio_s", points=points), rss_mb=max(rss, 0.0),
        rtf=float(np.median(rtfs)), max_batch_size=1, max_wait_ms=settings.tts.batching.max_wait_ms,
        source="talkface bench profile",
    )
    return speech


def _measure_vad(settings: Settings, options: ProfileOptions, say: Progress,
                 engines: dict[str, EngineProfile]) -> None:
    from talkface.registry import load_backend_class
    from talkface.vad.registry import VAD_BACKENDS

    say("vad: loading")
    vad = load_backend_class("VAD", VAD_BACKENDS, settings.vad.backend).load(settings.vad)
    stream = vad.new_stream()
    window = np.random.default_rng(0).normal(0, 0.05, (1, 512)).astype(np.float32)
    samples = [_timed_ms(lambda: stream.speech_probabilities(window))
               for _ in range(50 * options.repeats)]
    engines["vad"] = EngineProfile(
        backend=settings.vad.backend, device="cpu", hosting="per_session", threads=1,
        cost=CostCurve(unit="audio_s", points=[
            ServicePoint.from_samples(batch_size=1, work_units=0.032, samples_ms=samples)]),
        source="talkface bench profile",
    )
    say(f"vad: {np.median(samples):.3f} ms per 32 ms window")


def _measure_asr(settings: Settings, options: ProfileOptions, say: Progress,
                 engines: dict[str, EngineProfile], speech: list[np.ndarray]) -> None:
    from talkface.asr.base import ASRRequest
    from talkface.asr.registry import ASR_BACKENDS
    from talkface.registry import load_backend_class

    say("asr: loading")
    before = _rss_mb()
    asr = load_backend_class("ASR", ASR_BACKENDS, settings.asr.backend).load(settings.asr)
    rss = _rss_mb() - before
    pad = np.zeros(3200, np.float32)
    clips = [np.concatenate([pad, clip.astype(np.float32), pad]) for clip in speech[1:]]
    points = []
    for clip in clips:
        seconds = round(len(clip) / 16_000, 3)
        for batch in sorted({1, min(2, options.max_batch_size)}):
            requests = [ASRRequest(audio=clip, language="en") for _ in range(batch)]
            samples = [_timed_ms(lambda requests=requests: asr._transcribe_batch(requests))
                       for _ in range(options.repeats)]
            points.append(ServicePoint.from_samples(batch_size=batch, work_units=seconds,
                                                    samples_ms=samples))
            say(f"asr: batch {batch} x {seconds:.1f} s in {np.median(samples):.0f} ms")
    engines["asr"] = EngineProfile(
        backend=f"{settings.asr.backend} {settings.asr.model} int8", device="cpu",
        threads=settings.asr.num_threads, cost=CostCurve(unit="audio_s", points=points),
        rss_mb=max(rss, 0.0), max_batch_size=settings.asr.batching.max_batch_size,
        max_wait_ms=settings.asr.batching.max_wait_ms, source="talkface bench profile",
    )


def _measure_llm(settings: Settings, options: ProfileOptions, say: Progress,
                 engines: dict[str, EngineProfile]) -> None:
    from talkface.llm.llama_cpp import LlamaCppLLM

    if settings.llm.backend != "llama-cpp":
        raise ValueError("bench profile measures the embedded LLM (llm.backend = llama-cpp)")
    say("llm: loading")
    before = _rss_mb()
    llm = LlamaCppLLM.load(settings.llm)
    rss = _rss_mb() - before
    llama = llm._llama
    prefill_points, decode_samples = [], []
    for words in (16, 96, 320):
        samples = []
        for repeat in range(options.repeats):
            # A different first token each time, so nothing is reused from a cache.
            text = f"{repeat} " + " ".join(f"word{i}" for i in range(words))
            tokens = llama.tokenize(text.encode())
            llama.reset()
            samples.append(_timed_ms(lambda tokens=tokens: llama.eval(tokens)))
            for _ in range(8):
                token = llama.sample(temp=0.0)
                decode_samples.append(_timed_ms(lambda token=token: llama.eval([token])))
        prefill_points.append(ServicePoint.from_samples(batch_size=1, work_units=len(tokens),
                                                        samples_ms=samples))
        say(f"llm: prefill {len(tokens)} tokens in {np.median(samples):.0f} ms")
    say(f"llm: decode {np.median(decode_samples):.1f} ms per token")
    engines["llm"] = EngineProfile(
        backend=f"llama.cpp {settings.llm.model}", device="cpu", threads=settings.llm.num_threads,
        cost=CostCurve(unit="token", points=prefill_points),
        decode=CostCurve(unit="token", bound="memory", points=[
            ServicePoint.from_samples(batch_size=1, work_units=1, samples_ms=decode_samples)]),
        rss_mb=max(rss, 0.0), max_batch_size=1, max_wait_ms=0.0,
        source="talkface bench profile",
    )


def _measure_animator(settings: Settings, options: ProfileOptions, say: Progress,
                      engines: dict[str, EngineProfile], speech: list[np.ndarray]) -> None:
    from talkface.face.base import AnimationRequest
    from talkface.face.portrait import load_portrait
    from talkface.face.registry import ANIMATOR_BACKENDS
    from talkface.registry import load_backend_class

    say("animator: loading")
    before = _rss_mb()
    animator = load_backend_class("animator", ANIMATOR_BACKENDS,
                                  settings.animator.backend).load(settings.animator)
    avatar_id = animator.prepare_avatar_sync(load_portrait())
    rss = _rss_mb() - before
    audio = np.concatenate(speech).astype(np.float32)
    frames = 8
    points = []
    batch = 1
    while batch <= options.max_batch_size:
        samples = []
        for repeat in range(options.repeats * 2):
            requests = [
                AnimationRequest(
                    avatar_id=avatar_id,
                    first_frame_index=frames * (repeat + i),
                    num_frames=frames,
                    fps=settings.animator.fps,
                    audio=audio,
                    audio_start_ns=0,
                    seed=i,
                )
                for i in range(batch)
            ]
            samples.append(_timed_ms(lambda requests=requests: animator._animate_batch(requests)))
        points.append(ServicePoint.from_samples(batch_size=batch, work_units=frames,
                                                samples_ms=samples))
        say(f"animator: batch {batch} x {frames} frames in {np.median(samples):.1f} ms")
        batch *= 2
    engines["animator"] = EngineProfile(
        backend=settings.animator.backend, device="cpu", threads=1,
        cost=CostCurve(unit="frame", points=points), rss_mb=max(rss, 0.0),
        rtf=float(points[0].p50_ms / 1000.0 / (frames / settings.animator.fps)),
        max_batch_size=settings.animator.batching.max_batch_size,
        max_wait_ms=settings.animator.batching.max_wait_ms, source="talkface bench profile",
    )


def _measure_encoder(settings: Settings, options: ProfileOptions, say: Progress,
                     engines: dict[str, EngineProfile]) -> None:
    from talkface.face.portrait import load_portrait
    from talkface.messages import VideoFrame
    from talkface.output.mp4 import MP4Writer

    size = settings.animator.size_px
    image = np.ascontiguousarray(load_portrait()[:size, :size])
    if image.shape[:2] != (size, size):
        image = np.zeros((size, size, 3), np.uint8)
    frames, samples, index = 8, [], 0
    if options.encoder == "jpeg":
        from talkface.api.realtime.outgoing import JPEG_QUALITY, encode_jpeg

        backend, threads = f"jpeg q{JPEG_QUALITY}", 1

        def encode(frame: np.ndarray, index: int) -> None:
            encode_jpeg(frame)

        def finish() -> None:
            pass
    else:
        writer = MP4Writer(io.BytesIO(), fps=settings.animator.fps, size_px=size,
                           fragmented=True, settings=settings.output)
        backend = f"x264 {settings.output.preset}"
        threads = max(1, settings.output.encoder_threads)

        def encode(frame: np.ndarray, index: int) -> None:
            writer.write_frame(VideoFrame(image=frame, pts_ns=index * 40_000_000, index=index))

        finish = writer.close  # type: ignore[assignment]
    for _ in range(options.repeats * 2):
        def chunk() -> None:
            nonlocal index
            for _ in range(frames):
                # Not a still image, so the encoder works for real.
                encode(np.roll(image, index % 7, axis=1), index)
                index += 1
        samples.append(_timed_ms(chunk))
    finish()
    engines["encoder"] = EngineProfile(
        backend=backend, device="cpu", hosting="per_session", threads=threads,
        cost=CostCurve(unit="frame", points=[
            ServicePoint.from_samples(batch_size=1, work_units=frames, samples_ms=samples)]),
        source="talkface bench profile",
    )
    say(f"encoder: {frames} frames in {np.median(samples):.1f} ms")
