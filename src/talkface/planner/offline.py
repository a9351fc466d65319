"""Offline render jobs (a script to a video file) on spot GPUs, with preemptions and retries.

A render worker holds the TTS and the animator on one GPU and runs both at their largest
measured batch (latency does not matter offline). A job renders its video in segments of
``checkpoint_s`` seconds; a preemption (Poisson, the catalog's rate) loses the segment in
progress and costs ``restart_s`` (a new spot GPU, models reloaded) before it is retried.
The expected time of one segment of ``w`` GPU seconds is ``(1/r + R) * (exp(r*w) - 1)``;
a small Monte Carlo run checks the closed form on the chosen GPU.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from talkface.planner.catalog import GPUCatalog
from talkface.planner.closed_form import interrupted_segment_s
from talkface.planner.costmodel import ServiceModel
from talkface.planner.profile import Profile
from talkface.planner.workload import Workload


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineOption:
    """Render jobs on one GPU kind.

    Attributes:
        gpu: the GPU.
        gpu_s_per_video_s: GPU seconds to render one second of video, uninterrupted.
        job_gpu_s: uninterrupted GPU time of a mean job.
        job_spot_s: expected wall time of a mean job on spot (preemptions, restarts).
        retries_per_job: expected preemptions per job.
        gpus_spot: spot GPUs for the job rate.
        gpus_on_demand: on-demand GPUs for the same rate (no preemptions).
        cost_spot_usd_per_h: spot cost per hour.
        cost_on_demand_usd_per_h: on-demand cost per hour.
        usd_per_video_min_spot: spot cost per rendered minute of video.
    """

    gpu: str
    gpu_s_per_video_s: float
    job_gpu_s: float
    job_spot_s: float
    retries_per_job: float
    gpus_spot: int
    gpus_on_demand: int
    cost_spot_usd_per_h: float
    cost_on_demand_usd_per_h: float
    usd_per_video_min_spot: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflinePlan:
    """The cheapest spot option and its checks.

    Attributes:
        jobs_per_h: job rate planned for.
        video_s_mean: mean video length.
        chosen: the cheapest option on spot.
        options: every GPU that fits both models, cheapest first.
        monte_carlo_job_s: mean job wall time simulated on the chosen GPU.
        encoder_cores: CPU cores encoding the videos.
        cpu_usd_per_h: their spot cost.
    """

    jobs_per_h: float
    video_s_mean: float
    chosen: OfflineOption
    options: tuple[OfflineOption, ...]
    monte_carlo_job_s: float
    encoder_cores: float
    cpu_usd_per_h: float

    @property
    def spot_savings(self) -> float:
        """Share of the on-demand cost that spot saves (negative: spot costs more)."""
        on_demand = self.chosen.cost_on_demand_usd_per_h
        return 1 - self.chosen.cost_spot_usd_per_h / on_demand if on_demand else 0.0


def _gpu_s_per_video_s(profile: Profile, catalog: GPUCatalog, gpu: str, sentence_s: float) -> float:
    fps = profile.pipeline.fps
    total = 0.0
    for stage, work in (
        ("tts", sentence_s),
        ("animator", float(profile.pipeline.animator_chunk_frames)),
    ):
        engine = profile.engines[stage]
        speed = catalog.speed_ratio(engine.device, gpu, engine.cost.bound)
        model = ServiceModel(engine.cost, speed=speed * engine.speed_factor_on(gpu))
        batch = model.max_measured_batch
        units_per_s = model.units_per_s(batch, work)
        total += (1.0 if stage == "tts" else fps) / units_per_s
    return total


def _monte_carlo_job_s(
    workload: Workload, gpu_s_per_video_s: float, failures_per_s: float, *, jobs: int = 4000
) -> float:
    rng = random.Random("offline-monte-carlo")
    render = workload.render
    total = 0.0
    for _ in range(jobs):
        video_s = render.video_s.sample(rng)
        remaining = video_s
        while remaining > 1e-9:
            segment_s = min(render.checkpoint_s, remaining) * gpu_s_per_video_s
            while True:
                failure_in = rng.expovariate(failures_per_s) if failures_per_s else math.inf
                if failure_in >= segment_s:
                    total += segment_s
                    break
                total += failure_in + render.restart_s
            remaining -= render.checkpoint_s
    return total / jobs


def plan_offline(
    profile: Profile,
    workload: Workload,
    catalog: GPUCatalog,
    *,
    gpus: tuple[str, ...] | None = None,
    memory_headroom: float = 0.1,
) -> OfflinePlan | None:
    """Size the render pool, or None when no jobs are planned or no GPU profile exists."""
    render = workload.render
    if render.jobs_per_h == 0:
        return None
    tts, anim = profile.engines["tts"], profile.engines["animator"]
    if not (tts.on_gpu and anim.on_gpu):
        return None
    sentence_s = workload.sentence_tokens.mean * workload.speech_s_per_token
    video_s = render.video_s.mean
    options = []
    for name, gpu in catalog.gpus.items():
        if gpus is not None and name not in gpus:
            continue
        memory_mb = sum(
            e.vram_mb_on(name, ServiceModel(e.cost).max_measured_batch) for e in (tts, anim)
        )
        if memory_mb > gpu.memory_mb * (1 - memory_headroom):
            continue
        per_video_s = _gpu_s_per_video_s(profile, catalog, name, sentence_s)
        job_gpu_s = video_s * per_video_s
        segments = video_s / render.checkpoint_s
        rate = gpu.spot_interruptions_per_h / 3600.0
        segment_gpu_s = render.checkpoint_s * per_video_s
        job_spot_s = segments * interrupted_segment_s(segment_gpu_s, rate, render.restart_s)
        gpus_spot = math.ceil(render.jobs_per_h * job_spot_s / 3600 / render.utilisation_target)
        gpus_od = math.ceil(render.jobs_per_h * job_gpu_s / 3600 / render.utilisation_target)
        cost_spot = gpus_spot * gpu.spot_usd_per_h
        options.append(
            OfflineOption(
                gpu=name,
                gpu_s_per_video_s=per_video_s,
                job_gpu_s=job_gpu_s,
                job_spot_s=job_spot_s,
                retries_per_job=segments * math.expm1(rate * segment_gpu_s),
                gpus_spot=gpus_spot,
                gpus_on_demand=gpus_od,
                cost_spot_usd_per_h=cost_spot,
                cost_on_demand_usd_per_h=gpus_od * gpu.on_demand_usd_per_h,
                usd_per_video_min_spot=cost_spot / (render.jobs_per_h * video_s / 60),
            )
        )
    if not options:
        return None
    options.sort(key=lambda o: (o.cost_spot_usd_per_h, o.job_spot_s))
    chosen = options[0]
    rate = catalog.gpus[chosen.gpu].spot_interruptions_per_h / 3600.0
    encoder = profile.engines.get("encoder")
    cores = 0.0
    if encoder is not None:
        frames = float(profile.pipeline.animator_chunk_frames)
        per_frame_s = ServiceModel(encoder.cost).mean_s(1, frames) / frames
        frames_per_s = render.jobs_per_h * video_s * profile.pipeline.fps / 3600
        cores = float(np.ceil(frames_per_s * per_frame_s / render.utilisation_target))
    return OfflinePlan(
        jobs_per_h=render.jobs_per_h,
        video_s_mean=video_s,
        chosen=chosen,
        options=tuple(options),
        monte_carlo_job_s=_monte_carlo_job_s(workload, chosen.gpu_s_per_video_s, rate),
        encoder_cores=cores,
        cpu_usd_per_h=cores * catalog.vcpu_spot_usd_per_h,
    )
