"""What a profile of the engines cannot see: the serving path's own cost and delay.

``bench profile`` times each engine alone. A live session also costs CPU outside them
(WebSocket or WebRTC transport, pacing, frame conversions) and adds time between the
server's first frame and the viewer seeing it. One ``bench load`` run measures both:
its silent phase gives the CPU a live session costs while nobody talks, and every turn's
server trace against the client's clock gives the delivery time. :func:`calibrate`
writes them into the profile (``machine.session_overhead_cores``,
``pipeline.delivery_ms``), so the simulator and ``talkface plan`` count them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from talkface.planner.costmodel import ServiceModel
from talkface.planner.profile import Profile


def idle_video_cores(profile: Profile) -> float:
    """CPU cores one silent live session spends on its idle video, per the profile."""
    pipeline = profile.pipeline
    frames = pipeline.idle_chunk_frames
    if not frames:
        return 0.0
    chunk_s = sum(ServiceModel(profile.engines[stage].cost).mean_s(1, frames)
                  for stage in ("animator", "encoder") if stage in profile.engines)
    return chunk_s * pipeline.fps / frames


def calibrate(profile: Profile, *, sessions: int, idle_server_cpu_cores: float | None,
              delivery_ms: Sequence[float]) -> Profile:
    """``profile`` with the serving path measured by a load run of ``sessions`` users.

    Args:
        idle_server_cpu_cores: the server's CPU while the users were connected and silent.
        delivery_ms: per turn, the client's time to first frame minus the server's.
    """
    overhead = 0.0
    if idle_server_cpu_cores is not None and profile.machine is not None:
        overhead = max(0.0, idle_server_cpu_cores / sessions - idle_video_cores(profile))
    update: dict[str, object] = {
        "pipeline": profile.pipeline.model_copy(update={
            "delivery_ms": round(statistics.median(delivery_ms), 1) if delivery_ms else 0.0}),
    }
    if profile.machine is not None:
        update["machine"] = profile.machine.model_copy(
            update={"session_overhead_cores": round(overhead, 4)})
    return profile.model_copy(update=update)
