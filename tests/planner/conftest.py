"""Shared fixtures: a small CPU-box profile shaped like talkface's defaults on 2 cores."""

from __future__ import annotations

import pytest

from talkface.planner.profile import (
    CostCurve,
    EngineProfile,
    MachineInfo,
    PipelineSettings,
    Profile,
    ServicePoint,
)


def _point(batch_size: int, work_units: float, mean_ms: float) -> ServicePoint:
    # p95 20 % above the median, like a quiet machine.
    return ServicePoint(
        batch_size=batch_size,
        work_units=work_units,
        p50_ms=mean_ms * 0.98,
        p95_ms=mean_ms * 1.18,
        mean_ms=mean_ms,
    )


def cpu_box_profile(cores: int = 2) -> Profile:
    """Made-up but plausible numbers for the default CPU engines on a small box."""

    def engine(
        backend: str, unit: str, points: list[ServicePoint], **kwargs: object
    ) -> EngineProfile:
        return EngineProfile(
            backend=backend,
            device="cpu",
            cost=CostCurve(
                unit=unit,
                points=points,  # type: ignore[arg-type]
                fixed_share=kwargs.pop("fixed_share", 0.0),
            ),
            **kwargs,
        )  # type: ignore[arg-type]

    return Profile(
        machine=MachineInfo(cpu_model="test", cpu_cores=cores, reserved_cores=0.2),
        pipeline=PipelineSettings(animator_chunk_frames=8, vad_window_ms=96.0),
        engines={
            "vad": engine("silero-vad", "audio_s", [_point(1, 0.096, 1.2)], hosting="per_session"),
            "asr": engine(
                "faster-whisper base int8",
                "audio_s",
                [_point(1, 3.0, 250.0), _point(2, 3.0, 450.0)],
                threads=2,
                fixed_share=0.5,
            ),
            "llm": EngineProfile(
                backend="llama.cpp 0.5B q4",
                device="cpu",
                threads=2,
                cost=CostCurve(unit="token", fixed_share=0.1, points=[_point(1, 700.0, 150.0)]),
                decode=CostCurve(unit="token", points=[_point(1, 1.0, 20.0)]),
            ),
            "tts": engine("piper joe", "audio_s", [_point(1, 3.0, 180.0), _point(2, 3.0, 340.0)]),
            "animator": engine(
                "landmark warp",
                "frame",
                [_point(1, 8.0, 60.0), _point(2, 8.0, 115.0), _point(4, 8.0, 225.0)],
            ),
            "encoder": engine("libx264", "frame", [_point(1, 8.0, 16.0)], hosting="per_session"),
        },
    )


@pytest.fixture
def cpu_profile() -> Profile:
    return cpu_box_profile()
