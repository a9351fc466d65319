"""The ``published`` preset: the seed's per-module table turned into a profile.

The table gives, per module, a model, its GPU memory and how many *streams* one GPU
serves. A stream is one session using the stage without pause: one second of audio (ASR,
TTS) or of video (animator, at 25 fps) per second, or one sequence decoding (LLM). It
gives no latencies, so this module adds two assumptions per module, both labelled:

* ``rtf_batch1``: seconds of work per second of media for one request alone;
* ``batch_ref``: the batch size at which the card reaches the table's stream count.

From those, one batch of ``b`` requests takes ``t(b) = t(1) * b ** alpha`` with
``alpha = 1 - ln(streams * rtf_batch1) / ln(batch_ref)``, so throughput grows with the
batch and equals the table at ``batch_ref``. The LLM decodes one token per sequence per
step, with ``step(b) = step(1) * (1 + slowdown * (b - 1))``. Ranges in the table use
their midpoint. VAD and the video encoder are not in the table; their CPU numbers are
talkface's own estimates. Every engine is marked ``estimate: true``; the animator (a
Wav2Lip-class GPU model, which talkface does not ship) also carries ``not_shipped``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from talkface.planner.profile import (
    CostCurve,
    EngineProfile,
    EngineVariant,
    PipelineSettings,
    Profile,
    ServicePoint,
    Stage,
)

SEED_TABLE_SOURCE = "seed per-module table (published estimate)"
NOT_SHIPPED_GPU_ANIMATOR = (
    "not shipped: priced from published figures for a GPU lip-sync model; "
    "talkface ships only the CPU landmark-warp animator"
)
_SIGMA = 0.12  # log-normal spread of one batch's time: p95 is 22 % above the median
_BATCHES = (1, 2, 4, 8, 16)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedRow:
    """One row of the published table and the assumptions added to it.

    Attributes:
        stage: pipeline stage.
        model: what the table names.
        quote: the table's words.
        vram_gb: GPU memory of the model (0 for CPU stages).
        gpu: the GPU the stream count is anchored on (``cpu`` for CPU stages).
        streams: streams per GPU used (midpoint of the table's range).
        batch_ref: batch size at which the GPU reaches ``streams``.
        rtf_batch1: assumed seconds of work per second of media at batch size 1.
        work_units: work per request in the curve (s of audio, tokens, frames).
        note: why the anchor and assumptions were chosen.
    """

    stage: Stage
    model: str
    quote: str
    vram_gb: float
    gpu: str
    streams: float
    batch_ref: int
    rtf_batch1: float
    work_units: float
    note: str


PUBLISHED_TABLE: tuple[PublishedRow, ...] = (
    PublishedRow(
        stage="asr",
        model="Whisper small",
        quote="whisper-small 3 GB, ~15 streams per T4/A10",
        vram_gb=3.0,
        gpu="A10",
        streams=15.0,
        batch_ref=4,
        rtf_batch1=0.10,
        work_units=3.0,
        note="anchored on the A10 (the faster card), so the T4 gets fewer streams than "
        "the table's 15: conservative for both",
    ),
    PublishedRow(
        stage="llm",
        model="7B instruct, fp16 (FP8 on H100/H200)",
        quote="LLM 7B fp16 14 GB (~9 GB FP8 on H100), 4-8 streams per A100/H100",
        vram_gb=14.0,
        gpu="A100-80GB",
        streams=4.0,
        batch_ref=4,
        rtf_batch1=0.0,
        work_units=700.0,
        note="a stream is a sequence decoding at >= 30 tokens/s; 4 on an A100 80 GB at "
        "fp16 grows to ~7 on an H100 (memory bandwidth) and ~8 with FP8 weights, which "
        "spans the table's 4-8",
    ),
    PublishedRow(
        stage="tts",
        model="VITS",
        quote="TTS VITS 4 GB, 10-15 streams per A10",
        vram_gb=4.0,
        gpu="A10",
        streams=12.5,
        batch_ref=4,
        rtf_batch1=0.12,
        work_units=3.0,
        note="midpoint of 10-15",
    ),
    PublishedRow(
        stage="animator",
        model="Wav2Lip",
        quote="Wav2Lip 8 GB, 6-10 streams per A40",
        vram_gb=8.0,
        gpu="A40",
        streams=8.0,
        batch_ref=8,
        rtf_batch1=0.20,
        work_units=16.0,
        note="midpoint of 6-10; one request is a chunk of 16 frames (0.64 s)",
    ),
)

# LLM decoding on the anchor GPU: 13 ms per step alone, each extra sequence adds half.
LLM_STEP1_MS = 13.0
LLM_STEP_SLOWDOWN = 0.5
LLM_PREFILL_MS = 90.0  # 700 prompt tokens, one sequence, A100 80 GB
LLM_MIN_TOKENS_PER_S = 30.0
FP8_SPEED_FACTOR = 1.2


def _point(batch_size: int, work_units: float, mean_ms: float) -> ServicePoint:
    p50 = mean_ms * math.exp(-(_SIGMA**2) / 2)
    return ServicePoint(
        batch_size=batch_size,
        work_units=work_units,
        p50_ms=round(p50, 3),
        p95_ms=round(p50 * math.exp(1.6448536269514722 * _SIGMA), 3),
        mean_ms=round(mean_ms, 3),
    )


def batching_exponent(row: PublishedRow) -> float:
    """``alpha`` such that the GPU reaches ``row.streams`` at ``row.batch_ref``."""
    gain = row.streams * row.rtf_batch1
    if gain < 1:
        raise ValueError(f"{row.stage}: batch 1 is already faster than the table's streams")
    return 1.0 - math.log(gain) / math.log(row.batch_ref)


def _media_s(row: PublishedRow, fps: float) -> float:
    return row.work_units / fps if row.stage == "animator" else row.work_units


def _streaming_curve(row: PublishedRow, fps: float, fixed_share: float) -> CostCurve:
    alpha = batching_exponent(row)
    t1_ms = _media_s(row, fps) * row.rtf_batch1 * 1000.0
    unit = "frame" if row.stage == "animator" else "audio_s"
    return CostCurve(
        unit=unit,
        fixed_share=fixed_share,
        points=[_point(b, row.work_units, t1_ms * b**alpha) for b in _BATCHES],
    )


def llm_step_ms(batch_size: int) -> float:
    """Decode step time on the anchor GPU (A100 80 GB, fp16)."""
    return LLM_STEP1_MS * (1 + LLM_STEP_SLOWDOWN * (batch_size - 1))


def _row(stage: Stage) -> PublishedRow:
    return next(r for r in PUBLISHED_TABLE if r.stage == stage)


def published_profile() -> Profile:
    """Build the ``published`` preset profile (every engine marked as an estimate)."""
    pipeline = PipelineSettings(fps=25.0, animator_chunk_frames=16, vad_window_ms=32.0)
    asr, llm, tts, anim = (_row(s) for s in ("asr", "llm", "tts", "animator"))
    engines: dict[Stage, EngineProfile] = {
        "vad": EngineProfile(
            backend="silero-vad (CPU)",
            device="cpu",
            hosting="per_session",
            cost=CostCurve(unit="audio_s", points=[_point(1, 0.032, 0.5)]),
            rss_mb=60,
            rtf=0.016,
            estimate=True,
            source="talkface estimate: silero-vad takes ~0.5 ms per 32 ms window on one core",
        ),
        "asr": EngineProfile(
            backend=asr.model,
            device=asr.gpu,
            cost=_streaming_curve(asr, 25.0, 0.5),
            vram_mb=asr.vram_gb * 1000,
            vram_mb_per_request=150,
            rss_mb=1500,
            rtf=asr.rtf_batch1,
            estimate=True,
            source=SEED_TABLE_SOURCE,
        ),
        "llm": EngineProfile(
            backend=llm.model,
            device=llm.gpu,
            cost=CostCurve(
                unit="token",
                fixed_share=0.1,
                points=[_point(b, llm.work_units, LLM_PREFILL_MS * b**0.9) for b in _BATCHES],
            ),
            decode=CostCurve(
                unit="token",
                bound="memory",
                points=[_point(b, 1.0, llm_step_ms(b)) for b in (*_BATCHES, 32)],
            ),
            vram_mb=llm.vram_gb * 1000,
            vram_mb_per_request=500,
            rss_mb=2000,
            variants={
                gpu: EngineVariant(
                    vram_mb=9000,
                    speed_factor=FP8_SPEED_FACTOR,
                    note="FP8 weights (~9 GB); estimate",
                )
                for gpu in ("H100", "H200")
            },
            estimate=True,
            source=SEED_TABLE_SOURCE,
        ),
        "tts": EngineProfile(
            backend=tts.model,
            device=tts.gpu,
            cost=_streaming_curve(tts, 25.0, 0.2),
            vram_mb=tts.vram_gb * 1000,
            vram_mb_per_request=100,
            rss_mb=1200,
            rtf=tts.rtf_batch1,
            estimate=True,
            source=SEED_TABLE_SOURCE,
        ),
        "animator": EngineProfile(
            backend=anim.model,
            device=anim.gpu,
            cost=_streaming_curve(anim, 25.0, 0.1),
            vram_mb=anim.vram_gb * 1000,
            vram_mb_per_request=150,
            rss_mb=2000,
            rtf=anim.rtf_batch1,
            estimate=True,
            source=SEED_TABLE_SOURCE,
            not_shipped=NOT_SHIPPED_GPU_ANIMATOR,
        ),
        "encoder": EngineProfile(
            backend="libx264 ultrafast 512x512 (CPU)",
            device="cpu",
            hosting="per_session",
            cost=CostCurve(unit="frame", points=[_point(1, 16.0, 40.0)]),
            rss_mb=40,
            rtf=0.0625,
            estimate=True,
            source="talkface estimate: ~2.5 ms per 512x512 frame on one core",
        ),
    }
    return Profile(
        machine=None,
        pipeline=pipeline,
        engines=engines,
        notes="published preset: the seed's per-module table as labelled estimates; "
        "measure your own with `talkface bench profile`",
    )
