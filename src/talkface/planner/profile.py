"""Measured (or published) profiles: what each engine costs, per batch size.

A profile (format ``talkface.profile/1``, JSON) says, for every pipeline stage, how long
one batch takes as a function of the batch size and of the work in each request, how
much memory the engine holds, and how the stages hand work to each other. The
simulator and the planner read nothing else about the engines.

The unit of work of each stage:

=========  ==========  ===========================================================
stage      unit        one request is ...
=========  ==========  ===========================================================
vad        audio_s     one window of ``pipeline.vad_window_ms`` of microphone audio
asr        audio_s     one final pass over a whole utterance
llm        token       ``cost``: the prefill of a prompt of N tokens;
                       ``decode``: one decoding step of a batch of B sequences (N=1)
tts        audio_s     one sentence; work = seconds of speech it produces
animator   frame       one chunk of ``pipeline.animator_chunk_frames`` video frames
encoder    frame       one chunk of frames encoded for one session's stream
=========  ==========  ===========================================================

``talkface bench profile`` fills a profile from the real engines; measure each engine
alone (the others idle), with the same threads and batching it runs with in
``talkface serve``, at two or more work sizes and at each batch size you want the
planner to consider. :meth:`Profile.from_published` builds the published estimates.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from talkface.errors import ConfigError
from talkface.planner._loading import load_model

PROFILE_FORMAT = "talkface.profile/1"
MAX_SAMPLES = 512
"""Raw samples kept per service point; more are thinned evenly when a profile is built."""

Stage = Literal["vad", "asr", "llm", "tts", "animator", "encoder"]
STAGES: tuple[Stage, ...] = ("vad", "asr", "llm", "tts", "animator", "encoder")
REQUIRED_STAGES: tuple[Stage, ...] = ("asr", "llm", "tts", "animator")
"""Stages on the path to the first frame; VAD and encoder may be left out (cost 0)."""

Unit = Literal["audio_s", "token", "frame"]
STAGE_UNITS: dict[Stage, Unit] = {
    "vad": "audio_s",
    "asr": "audio_s",
    "llm": "token",
    "tts": "audio_s",
    "animator": "frame",
    "encoder": "frame",
}


class ServicePoint(BaseModel):
    """Service times of one batch shape: ``batch_size`` requests of ``work_units`` each.

    Attributes:
        batch_size: requests run together in one model call.
        work_units: units of work in each request of the batch (``3.0`` s of audio, a
            prompt of ``600`` tokens, a chunk of ``8`` frames).
        p50_ms: median wall time of one batch.
        p95_ms: 95th percentile wall time of one batch.
        mean_ms: mean wall time of one batch.
        samples_ms: raw wall times (at most 512; empty for published estimates). When
            present the simulator draws its noise from them, otherwise from a log-normal
            with the same p50 and p95.
    """

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(ge=1, le=4096)
    work_units: float = Field(gt=0)
    p50_ms: float = Field(gt=0)
    p95_ms: float = Field(gt=0)
    mean_ms: float = Field(gt=0)
    samples_ms: list[float] = Field(default_factory=list, max_length=MAX_SAMPLES)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.p95_ms < self.p50_ms:
            raise ValueError(f"p95_ms={self.p95_ms:g} is below p50_ms={self.p50_ms:g}")
        if any(not math.isfinite(s) or s <= 0 for s in self.samples_ms):
            raise ValueError("samples_ms must all be positive numbers")
        if self.samples_ms:
            mean = float(np.mean(self.samples_ms))
            if not math.isclose(mean, self.mean_ms, rel_tol=0.02, abs_tol=0.05):
                raise ValueError(
                    f"mean_ms={self.mean_ms:g} does not match the mean of samples_ms "
                    f"({mean:.3f}); rebuild the point with ServicePoint.from_samples"
                )
        return self

    @classmethod
    def from_samples(cls, *, batch_size: int, work_units: float, samples_ms: list[float]) -> Self:
        """Summarise raw measurements (thinned evenly to 512 when there are more)."""
        if not samples_ms:
            raise ValueError("from_samples needs at least one sample")
        values = np.asarray(samples_ms, dtype=float)
        kept = values
        if len(values) > MAX_SAMPLES:
            kept = values[np.linspace(0, len(values) - 1, MAX_SAMPLES).round().astype(int)]
        return cls(
            batch_size=batch_size,
            work_units=work_units,
            p50_ms=float(np.percentile(values, 50)),
            p95_ms=float(np.percentile(values, 95)),
            mean_ms=float(kept.mean()),
            samples_ms=[round(float(v), 4) for v in kept],
        )


class CostCurve(BaseModel):
    """How one kind of model call scales with batch size and work.

    Per batch size the planner fits ``time = fixed + per_unit * work_units`` through the
    points of that batch size; between measured batch sizes it interpolates linearly,
    beyond the largest it assumes no further batching gain.

    Attributes:
        unit: what ``work_units`` counts (must match the stage, see the module table).
        bound: which GPU spec scales this call to other GPUs: ``compute`` (relative
            speed) or ``memory`` (memory bandwidth; LLM decoding).
        fixed_share: when a batch size was measured at one work size only, the share of
            its time that does not grow with work (Whisper pads audio to 30 s windows,
            so its ASR share is high; a per-frame animator's is near 0).
        points: the measurements.
    """

    model_config = ConfigDict(extra="forbid")

    unit: Unit
    bound: Literal["compute", "memory"] = "compute"
    fixed_share: float = Field(0.0, ge=0.0, lt=1.0)
    points: list[ServicePoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        seen: set[tuple[int, float]] = set()
        for p in self.points:
            key = (p.batch_size, p.work_units)
            if key in seen:
                raise ValueError(
                    f"two points for batch_size={p.batch_size}, work_units={p.work_units:g}; "
                    "merge their samples into one point"
                )
            seen.add(key)
        return self

    @property
    def batch_sizes(self) -> list[int]:
        """The measured batch sizes, ascending."""
        return sorted({p.batch_size for p in self.points})


class EngineVariant(BaseModel):
    """A different build of the same engine on some GPUs (e.g. FP8 weights on an H100).

    Attributes:
        vram_mb: model memory of this build.
        speed_factor: how much faster than the profiled build on that GPU (1.0 = same).
        note: what the variant is, for the report.
    """

    model_config = ConfigDict(extra="forbid")

    vram_mb: float = Field(gt=0)
    speed_factor: float = Field(1.0, gt=0, le=10)
    note: str = ""


class EngineProfile(BaseModel):
    """One engine of a profile.

    Attributes:
        backend: what ran (``"faster-whisper base int8"``, ``"VITS"``).
        device: ``"cpu"`` or the catalog name of the GPU the curves were measured on.
        hosting: ``engine`` when one loaded model serves every session through a
            micro-batcher (``talkface.engines.Engine``); ``per_session`` when each session
            runs its own instance (a video encoder holds per-stream state).
        threads: CPU cores the engine keeps busy while a batch runs (its model thread
            plus the library's own threads; llama.cpp's ``n_threads``).
        cost: service times of one model call (for the LLM: the prefill).
        decode: LLM only: time of one decoding step for B concurrent sequences.
        rss_mb: resident memory of the loaded engine.
        vram_mb: GPU memory of the loaded model, excluding per-request memory.
        vram_mb_per_request: GPU memory each request in a batch adds (KV cache, activations).
        rtf: real-time factor at batch size 1 (service time / seconds of media), for
            streaming stages; informational, the curves are what the simulator uses.
        variants: other builds by GPU name (FP8 weights on H100/H200).
        max_batch_size: the batching limit the engine ran with in ``talkface serve``
            when profiled; a CPU-box plan simulates it (null: the largest measured batch).
        max_wait_ms: the batching wait it ran with (null: 5 ms).
        estimate: True when the numbers are published estimates, not measurements.
        source: where the numbers come from, for the report.
        not_shipped: set when talkface does not ship this backend: the label every plan
            line that sizes it carries (None: a backend talkface ships).
    """

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(min_length=1)
    device: str = Field(min_length=1)
    hosting: Literal["engine", "per_session"] = "engine"
    threads: int = Field(1, ge=1, le=256)
    cost: CostCurve
    decode: CostCurve | None = None
    rss_mb: float = Field(0.0, ge=0)
    vram_mb: float = Field(0.0, ge=0)
    vram_mb_per_request: float = Field(0.0, ge=0)
    rtf: float | None = Field(None, gt=0)
    variants: dict[str, EngineVariant] = Field(default_factory=dict)
    max_batch_size: int | None = Field(None, ge=1, le=4096)
    max_wait_ms: float | None = Field(None, ge=0, le=10_000)
    estimate: bool = False
    source: str = ""
    not_shipped: str | None = Field(None, min_length=1)

    @property
    def on_gpu(self) -> bool:
        """True when the engine was profiled on a GPU."""
        return self.device != "cpu"

    def vram_mb_on(self, gpu: str, batch_size: int) -> float:
        """GPU memory one replica holds on ``gpu`` with ``batch_size`` requests in flight."""
        variant = self.variants.get(gpu)
        base = variant.vram_mb if variant is not None else self.vram_mb
        return base + self.vram_mb_per_request * batch_size

    def speed_factor_on(self, gpu: str) -> float:
        """How much faster the engine runs on ``gpu`` than as profiled (1.0 without a variant)."""
        variant = self.variants.get(gpu)
        return variant.speed_factor if variant is not None else 1.0


class MachineInfo(BaseModel):
    """The machine a profile was measured on.

    Attributes:
        cpu_model: CPU model name as the OS reports it.
        cpu_cores: logical cores the engines may use.
        reserved_cores: cores busy with everything that is not an engine (event loop,
            WebRTC, the OS); the simulator gives the engines ``cpu_cores - reserved_cores``.
        memory_gb: installed memory.
        gpu_name: catalog name of the GPU, or null on a CPU-only box.
        session_overhead_cores: CPU one live session costs on a CPU box beyond the engines'
            work the simulator counts (WebSocket/WebRTC transport, pacing, frame
            conversions): ``bench load``'s silent phase, less the idle video.
    """

    model_config = ConfigDict(extra="forbid")

    cpu_model: str = ""
    cpu_cores: int = Field(ge=1, le=4096)
    reserved_cores: float = Field(0.0, ge=0)
    session_overhead_cores: float = Field(0.0, ge=0, le=64)
    memory_gb: float | None = Field(None, gt=0)
    gpu_name: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.reserved_cores >= self.cpu_cores:
            raise ValueError(
                f"reserved_cores={self.reserved_cores:g} leaves no core of {self.cpu_cores} "
                "for the engines"
            )
        return self

    @property
    def engine_cores(self) -> float:
        """Cores the engines may use: all but the reserved ones."""
        return self.cpu_cores - self.reserved_cores


class PipelineSettings(BaseModel):
    """How the stages hand work to each other (the streaming hand-offs).

    Time to first frame (TTFF) starts when the user's speech ended plus
    ``vad_hangover_ms`` (the moment an instant VAD would declare the end) and stops when
    the first encoded video chunk is ready to send. In between: the VAD's last window,
    the ASR final pass, the LLM's prefill and tokens up to the first sentence, that
    sentence's TTS, the first animator chunk and its encoding. Everything after streams.

    Attributes:
        fps: video frame rate; the reply must be animated at least this fast.
        animator_chunk_frames: frames per animator request.
        animator_inflight_chunks: animator requests one session keeps in flight.
        tts_inflight_sentences: TTS requests one session keeps in flight.
        vad_window_ms: audio per VAD request.
        vad_hangover_ms: silence after speech before the VAD declares the end.
        reply_start_ms: when after the end of speech the reply's work starts. None: when
            the hangover is over. talkface starts it *speculatively* at the first pause
            (``speech_pad_ms`` after the speech), holding its frames back until the
            hangover confirms the end, so most of the pipeline hides in the hangover.
        asr_partial_interval_ms: while the user speaks, a partial ASR pass over the audio
            so far at most this often (0: none; they cost compute, not latency).
        asr_partial_min_audio_s: no partial pass before this much speech.
        idle_chunk_frames: a live session's avatar keeps moving while silent: frames per
            idle-video animator request, each then encoded (0: idle video costs nothing,
            e.g. a looped clip).
        delivery_ms: from the first encoded frame to the viewer seeing it (pacing,
            transport); added to the time to first frame.
    """

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(25.0, gt=0, le=120)
    animator_chunk_frames: int = Field(8, ge=1, le=1000)
    animator_inflight_chunks: int = Field(1, ge=1, le=64)
    tts_inflight_sentences: int = Field(1, ge=1, le=64)
    vad_window_ms: float = Field(32.0, gt=0, le=2000)
    vad_hangover_ms: float = Field(300.0, ge=0, le=5000)
    reply_start_ms: float | None = Field(None, ge=0, le=5000)
    asr_partial_interval_ms: float = Field(0.0, ge=0, le=60_000)
    asr_partial_min_audio_s: float = Field(0.8, ge=0, le=60)
    idle_chunk_frames: int = Field(0, ge=0, le=1000)
    delivery_ms: float = Field(0.0, ge=0, le=10_000)

    @property
    def reply_start_s(self) -> float:
        """Seconds after the end of speech at which the reply's work starts."""
        start_ms = self.vad_hangover_ms if self.reply_start_ms is None else self.reply_start_ms
        return min(start_ms, self.vad_hangover_ms) / 1000.0

    @property
    def chunk_s(self) -> float:
        """Seconds of video in one animator chunk."""
        return self.animator_chunk_frames / self.fps


class Profile(BaseModel):
    """A whole profile: machine, hand-offs and one :class:`EngineProfile` per stage.

    Attributes:
        format: always ``"talkface.profile/1"``.
        created_at: ISO time of the measurement.
        machine: where it was measured; null for published estimates.
        pipeline: the hand-off settings the measurements were taken with.
        engines: per stage; ``asr``, ``llm``, ``tts`` and ``animator`` are required.
        notes: free text for the report.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["talkface.profile/1"] = PROFILE_FORMAT
    created_at: str = ""
    machine: MachineInfo | None = None
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    engines: dict[Stage, EngineProfile]
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> Self:
        missing = [s for s in REQUIRED_STAGES if s not in self.engines]
        if missing:
            raise ValueError(
                f"engines is missing {', '.join(missing)} (all of "
                f"{', '.join(REQUIRED_STAGES)} are needed)"
            )
        for stage, engine in self.engines.items():
            want = STAGE_UNITS[stage]
            for name, curve in (("cost", engine.cost), ("decode", engine.decode)):
                if curve is not None and curve.unit != want:
                    raise ValueError(
                        f"engines.{stage}.{name}.unit must be {want!r}, got {curve.unit!r}"
                    )
            if (stage == "llm") != (engine.decode is not None):
                raise ValueError(
                    "engines.llm needs a decode curve"
                    if stage == "llm"
                    else f"engines.{stage}.decode is only for the llm"
                )
            if stage == "llm" and engine.hosting != "engine":
                raise ValueError("engines.llm.hosting must be 'engine'")
            if engine.on_gpu and self.machine is not None and self.machine.gpu_name is None:
                raise ValueError(
                    f"engines.{stage}.device is {engine.device!r} but machine.gpu_name is "
                    "null; set the machine's GPU or the engine's device to 'cpu'"
                )
        return self

    @property
    def is_estimate(self) -> bool:
        """True when any engine carries published estimates rather than measurements."""
        return any(e.estimate for e in self.engines.values())

    @property
    def cpu_only(self) -> bool:
        """True when every engine was measured on the CPU (a CPU-box profile)."""
        return all(not e.on_gpu for e in self.engines.values())

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a profile JSON file.

        Raises:
            ConfigError: the file is missing, malformed or invalid (one line, names the field).
        """
        return load_model(cls, path)

    def save(self, path: str | Path) -> None:
        """Write this profile as indented JSON."""
        try:
            Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the profile to {path}: {exc}") from None

    @classmethod
    def from_published(cls) -> Profile:
        """The ``published`` preset: the seed's per-module table, as labelled estimates."""
        from talkface.planner.published import published_profile

        return published_profile()
