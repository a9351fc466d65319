"""Per-stage deployment options: every GPU, batch limit and replica count worth trying.

:class:`StageSizer` estimates one stage (closed form, :mod:`talkface.planner.sizing`) on
any device, batch limit and replica count; :meth:`StageSizer.options_for` lists the
options worth choosing from: for each device and batch limit the fewest feasible
replicas, then more, each lowering the stage's latency, each also tried with at least
half and with a whole GPU per replica (sharing a GPU is cheaper but slower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from talkface.planner.catalog import GPUCatalog
from talkface.planner.costmodel import ServiceModel
from talkface.planner.packing import PackingError, Replica, num_gpus_fraction
from talkface.planner.plan import PlanOptions
from talkface.planner.profile import EngineProfile, Profile, Stage
from talkface.planner.sizing import (
    ReplyShape,
    StageDemand,
    StageEstimate,
    estimate_batching,
    estimate_llm,
    estimate_per_session,
)
from talkface.planner.workload import Workload

_BATCH_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_MAX_REPLICAS = 100_000
_REPLICA_GROWTH = 1.12  # options add replicas in steps of 12 %, up to 3x the fewest
_SHARE_FLOORS = (0.0, 0.5, 1.0)
"""Each option is also tried with at least half and with a whole GPU per replica."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageOption:
    """One way to deploy one stage at one load.

    Attributes:
        stage: the stage.
        device: GPU name or ``cpu``.
        max_batch_size: batching limit (LLM: sequence slots).
        replicas: replicas (per-session stages: 1, see ``cpu_cores``).
        estimate: closed-form estimate.
        memory_mb: GPU memory of one replica.
        num_gpus: GPU share of one replica.
        cpu_cores: CPU cores (CPU stages).
        cost_usd_per_h: estimated cost (GPU share x price, or cores x price).
        cost_speed: speed of the main calls relative to the profiled device.
        decode_speed: LLM decoding speed relative to the profiled device.
        unloaded_first_s: the stage's time to first frame with no other load.
        whole_card: the replica takes a whole GPU.
        min_share: the smallest ``num_gpus`` it was given (limits card sharing).
    """

    stage: Stage
    device: str
    max_batch_size: int
    replicas: int
    estimate: StageEstimate
    memory_mb: float
    num_gpus: float
    cpu_cores: float
    cost_usd_per_h: float
    cost_speed: float
    decode_speed: float
    unloaded_first_s: float
    whole_card: bool
    min_share: float


class StageSizer:
    """Estimates one stage on any device, batch limit and replica count."""

    def __init__(
        self,
        stage: Stage,
        engine: EngineProfile,
        profile: Profile,
        workload: Workload,
        shape: ReplyShape,
        catalog: GPUCatalog,
        options: PlanOptions,
    ) -> None:
        self.stage, self.engine, self.profile = stage, engine, profile
        self.workload, self.shape, self.catalog, self.options = workload, shape, catalog, options
        self._models: dict[
            tuple[str, float], tuple[ServiceModel, ServiceModel | None, float, float]
        ] = {}
        self._estimates: dict[tuple[str, float, int, int, float], StageEstimate] = {}

    def devices(self) -> list[str]:
        """The devices this stage may run on: the CPU, or the catalog's GPUs the options allow."""
        if not self.engine.on_gpu:
            return ["cpu"]
        self.catalog.get(self.engine.device)  # a clear error if the profile's GPU is unknown
        allowed = self.options.gpus
        return [g for g in self.catalog.gpus if allowed is None or g in allowed]

    def models(
        self, device: str, slowdown: float = 1.0
    ) -> tuple[ServiceModel, ServiceModel | None, float, float]:
        """Service models on ``device`` (slowed by sharing it), and the true speeds."""
        key = (device, round(slowdown, 4))
        cached = self._models.get(key)
        if cached is None:
            engine = self.engine
            if device == "cpu":
                cost_speed = decode_speed = 1.0
            else:
                factor = engine.speed_factor_on(device)
                cost_speed = factor * self.catalog.speed_ratio(
                    engine.device, device, engine.cost.bound
                )
                decode_speed = factor * (
                    self.catalog.speed_ratio(engine.device, device, engine.decode.bound)
                    if engine.decode is not None
                    else 1.0
                )
            decode = (
                ServiceModel(engine.decode, speed=decode_speed / slowdown)
                if engine.decode
                else None
            )
            cached = (
                ServiceModel(engine.cost, speed=cost_speed / slowdown),
                decode,
                cost_speed,
                decode_speed,
            )
            self._models[key] = cached
        return cached

    def batch_candidates(self) -> list[int]:
        """Batch limits worth trying: the usual ones up to the largest measured, and every
        measured size."""
        curve = self.engine.decode if self.engine.decode is not None else self.engine.cost
        top = max(curve.batch_sizes)
        return sorted({b for b in _BATCH_CANDIDATES if b <= top} | set(curve.batch_sizes))

    def estimate(
        self, device: str, demand: StageDemand, batch: int, replicas: int, slowdown: float = 1.0
    ) -> StageEstimate:
        """The stage on ``device``: ``replicas`` replicas batching up to ``batch`` (memoised)."""
        key = (device, demand.requests_per_s, batch, replicas, round(slowdown, 4))
        cached = self._estimates.get(key)
        if cached is None:
            cached = self._estimate(device, demand, batch, replicas, slowdown)
            self._estimates[key] = cached
        return cached

    def _estimate(
        self, device: str, demand: StageDemand, batch: int, replicas: int, slowdown: float
    ) -> StageEstimate:
        model, decode, _, _ = self.models(device, slowdown)
        if self.engine.hosting == "per_session":
            est = estimate_per_session(
                model,
                requests_per_s=demand.requests_per_s,
                work_units=demand.work_units,
                first_work_units=demand.first_work_units,
            )
            if self.stage == "vad":  # speech ends anywhere inside the last window
                window_s = demand.work_units
                est = replace(
                    est,
                    first_mean_s=est.first_mean_s + window_s / 2,
                    first_p95_s=est.first_p95_s + 0.95 * window_s,
                )
            return est
        if decode is not None:
            wl = self.workload
            return estimate_llm(
                model,
                decode,
                requests_per_s=demand.requests_per_s,
                prompt_tokens=demand.work_units,
                reply_tokens=wl.reply_tokens.mean,
                first_tokens=wl.first_sentence_tokens.mean,
                first_tokens_p95=self.shape.first_tokens_p95,
                replicas=replicas,
                max_batch_size=batch,
            )
        return estimate_batching(
            model,
            requests_per_s=demand.requests_per_s,
            work_units=demand.work_units,
            first_work_units=demand.first_work_units,
            replicas=replicas,
            max_batch_size=batch,
            max_wait_s=self.options.max_wait_ms / 1000.0,
        )

    def unloaded_first_s(self, device: str, demand: StageDemand) -> float:
        """Seconds to a request's first output on an idle replica (LLM: prefill, then the first
        sentence's tokens)."""
        model, decode, _, _ = self.models(device)
        if decode is not None:
            first = self.workload.first_sentence_tokens.mean
            return model.mean_s(1, demand.first_work_units) + (first - 1) * decode.mean_s(1, 1.0)
        return model.mean_s(1, demand.first_work_units)

    def sustained(self, est: StageEstimate) -> bool:
        """Streaming stages must stay ahead of playback."""
        pipeline = self.profile.pipeline
        if self.stage == "animator":
            return est.request_p95_s <= pipeline.animator_inflight_chunks * pipeline.chunk_s
        if self.stage == "tts":
            limit = pipeline.tts_inflight_sentences * self.shape.sentence_audio_s
            return est.request_p95_s <= limit
        if self.stage == "encoder":
            return est.request_p95_s <= pipeline.chunk_s
        return True

    def option(
        self, device: str, demand: StageDemand, batch: int, replicas: int, min_share: float = 0.0
    ) -> StageOption:
        """One option; a replica given less than a whole GPU shares it with others.

        Sharing is costed by the replica's ``num_gpus`` share and slows it: the others on
        its card may keep up to ``card_utilisation_cap * (1 - share)`` of the card busy,
        which stretches its service times by ``1 / (1 - that)`` (processor sharing).
        """
        est = self.estimate(device, demand, batch, replicas)
        _, _, cost_speed, decode_speed = self.models(device)
        engine, opts = self.engine, self.options
        unloaded = self.unloaded_first_s(device, demand)
        if device == "cpu":
            cores = (
                est.busy / opts.cpu_utilisation
                if engine.hosting == "per_session"
                else replicas * engine.threads
            )
            return StageOption(
                stage=self.stage,
                device=device,
                max_batch_size=batch,
                replicas=replicas,
                estimate=est,
                memory_mb=0.0,
                num_gpus=0.0,
                cpu_cores=cores,
                cost_usd_per_h=cores * self.catalog.vcpu_on_demand_usd_per_h,
                cost_speed=cost_speed,
                decode_speed=decode_speed,
                unloaded_first_s=unloaded,
                whole_card=False,
                min_share=0.0,
            )
        gpu = self.catalog.get(device)
        whole = self.stage == "llm"
        memory_mb = engine.vram_mb_on(device, batch)
        share = num_gpus_fraction(
            Replica(
                stage=self.stage,
                index=0,
                memory_mb=memory_mb,
                compute_share=min(est.busy, 1.0),
                whole_card=whole,
                min_share=min_share,
            ),
            gpu,
            gpu_name=device,
            memory_headroom=opts.memory_headroom,
            utilisation_cap=opts.card_utilisation_cap,
        )
        if share < 1.0:
            others = opts.card_utilisation_cap * (1 - share)
            est = self.estimate(device, demand, batch, replicas, slowdown=1 / (1 - others))
        # Identical replicas fit floor(1 / share) to a card: cost what that really takes.
        card_share = 1.0 / math.floor(1.0 / share + 1e-9)
        return StageOption(
            stage=self.stage,
            device=device,
            max_batch_size=batch,
            replicas=replicas,
            estimate=est,
            memory_mb=memory_mb,
            num_gpus=share,
            cpu_cores=0.0,
            cost_usd_per_h=replicas * card_share * gpu.on_demand_usd_per_h,
            cost_speed=cost_speed,
            decode_speed=decode_speed,
            unloaded_first_s=unloaded,
            whole_card=whole,
            min_share=min_share,
        )

    def feasible(self, est: StageEstimate) -> bool:
        """Whether ``est`` is stable, within the utilisation and busy limits, and keeps the fps."""
        opts = self.options
        # A continuous-batching server steps whenever one sequence runs, so its busy share
        # says little about its headroom; its slots (``load``) do.
        busy_ok = (
            self.engine.hosting == "per_session" or self.stage == "llm" or est.busy <= opts.max_busy
        )
        return est.stable and est.load <= opts.max_utilisation and busy_ok and self.sustained(est)

    def min_replicas(
        self, device: str, demand: StageDemand, batch: int, *, first_p95_s: float = math.inf
    ) -> int | None:
        """Fewest replicas that are feasible (and no slower than ``first_p95_s``)."""
        if self.engine.hosting == "per_session":
            return 1
        model, _, _, _ = self.models(device)
        replicas = max(
            1,
            math.floor(
                demand.requests_per_s
                * model.mean_s(batch, demand.work_units)
                / batch
                / self.options.max_utilisation
            ),
        )

        def ok(count: int) -> bool:
            est = self.estimate(device, demand, batch, count)
            return self.feasible(est) and est.first_p95_s <= first_p95_s * (1 + 1e-9)

        # More replicas only lower each one's load: grow until feasible, then bisect.
        low = replicas - 1  # known infeasible (or 0)
        while not ok(replicas):
            low = replicas
            replicas = math.ceil(replicas * 1.25) + 1
            if replicas > _MAX_REPLICAS:
                return None
        while replicas - low > 1:
            middle = (low + replicas) // 2
            if ok(middle):
                replicas = middle
            else:
                low = middle
        return replicas

    def options_for(self, demand: StageDemand) -> list[StageOption]:
        """Pareto-optimal options (cheaper, or faster to the first frame), cheapest first."""
        found: list[StageOption] = []
        for device in self.devices():
            for batch in self.batch_candidates():
                if device != "cpu":
                    try:
                        self.option(device, demand, batch, 1)
                    except PackingError:
                        continue  # this batch does not fit this GPU's memory
                lowest = self.min_replicas(device, demand, batch)
                if lowest is None:
                    continue
                previous = math.inf
                shares = (0.0,) if device == "cpu" else _SHARE_FLOORS
                counts = sorted({math.ceil(lowest * _REPLICA_GROWTH**j) for j in range(11)})
                for replicas in counts:
                    variants = {}
                    for floor in shares:
                        option = self.option(device, demand, batch, replicas, floor)
                        variants.setdefault(option.num_gpus, option)
                    best = min(o.estimate.first_p95_s for o in variants.values())
                    if best > previous * 0.995:
                        break
                    previous = best
                    found.extend(variants.values())
                    if self.engine.hosting == "per_session":
                        break
        found.sort(key=lambda o: (o.cost_usd_per_h, o.estimate.first_p95_s))
        pareto: list[StageOption] = []
        for option in found:
            if not pareto or option.estimate.first_p95_s < pareto[-1].estimate.first_p95_s * 0.999:
                pareto.append(option)
        return pareto
