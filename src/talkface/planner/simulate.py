"""Discrete-event simulation of the whole pipeline with many sessions.

Each session loops: the user speaks for ``utterance_s`` (the VAD gets one request per
``vad_window_ms`` window of it, and of the hang-over silence after it; the ASR may make
partial passes meanwhile); the ASR makes its final pass; the LLM generates the reply,
handing each sentence on as soon as its last token exists; each sentence is spoken by the
TTS; each chunk of its audio is animated and then encoded; the reply plays at ``fps``
(stalling when a chunk is late); the user thinks and speaks again. The reply's work
starts ``reply_start_ms`` after the speech (speculatively, inside the hang-over) or when
the hang-over ends. Between replies a live avatar may keep moving: idle chunks go through
the animator and the encoder too. Stages batch and queue as deployed
(:mod:`talkface.planner.des`).

Time to first frame (TTFF) runs from the end of speech plus the VAD hang-over to the
first encoded chunk (or 0 when a speculative reply had it ready by then). A reply is
*sustained* when stalls leave it at no less than ``SLO.min_fps_share`` of the nominal fps.

The run is deterministic for a seed, and bounded: its simulated length is set so that
about ``SimOptions.target_turns`` turns are measured.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import simpy

from talkface.errors import ConfigError
from talkface.planner._reply import Turn, plan_reply
from talkface.planner.continuous import ContinuousBatchingStage
from talkface.planner.costmodel import ServiceModel
from talkface.planner.deployment import Deployment
from talkface.planner.des import (
    BatchingStage,
    Executor,
    PerSessionStage,
    ProcessorPool,
    StageCounters,
)
from talkface.planner.profile import Profile, Stage
from talkface.planner.workload import SLO, Workload

SEGMENTS = ("vad", "asr", "llm", "tts", "animator", "encoder")
"""TTFF is the sum of these segments (each one: its queue wait plus its service)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOptions:
    """How long and how finely to simulate.

    Attributes:
        seed: random seed; the same seed gives the same result.
        target_turns: turns to measure; sets the simulated length.
        min_duration_s: shortest measured window.
        max_duration_s: longest measured window.
        warmup_s: simulated time before measuring (default: 60 % of a turn cycle; the
            sessions start at random points of their first cycle).
        vad_window_ms: coarser VAD windows than the profile's (fewer events for large
            runs; the VAD's total work is the same). None keeps the profile's.
    """

    seed: int = 0
    target_turns: int = 3000
    min_duration_s: float = 10.0
    max_duration_s: float = 4 * 3600.0
    warmup_s: float | None = None
    vad_window_ms: float | None = None

    def __post_init__(self) -> None:
        if self.target_turns < 1:
            raise ValueError("target_turns must be at least 1")
        if not 0 < self.min_duration_s <= self.max_duration_s:
            raise ValueError("need 0 < min_duration_s <= max_duration_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class StageStats:
    """One stage in the measured window.

    Attributes:
        requests: requests served.
        mean_batch_size: requests per batch (LLM: sequences running per decoding step).
        wait_mean_ms: mean wait in the queue (batch formation included).
        wait_p95_ms: 95th percentile of that wait.
        busy: mean busy share of one replica; for per-session stages, processors kept
            busy on average.
    """

    requests: int
    mean_batch_size: float
    wait_mean_ms: float
    wait_p95_ms: float
    busy: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationResult:
    """What one simulation measured.

    Attributes:
        sessions: concurrent sessions simulated.
        turns: turns measured (those whose speech ended inside the window).
        simulated_s: length of the measured window.
        ttff_ms: every measured turn's TTFF, sorted (inf for turns that never got a frame).
        fps_achieved: every completed reply's achieved frame rate, sorted.
        fps_nominal: the pipeline's frame rate.
        breakdown_ms: mean of each TTFF segment (see :data:`SEGMENTS`).
        breakdown_p95_ms: 95th percentile of each TTFF segment.
        stages: per simulated stage.
        pools: busy share of each shared processor pool (the CPU box, shared GPUs).
    """

    sessions: int
    turns: int
    simulated_s: float
    ttff_ms: tuple[float, ...]
    fps_achieved: tuple[float, ...]
    fps_nominal: float
    breakdown_ms: dict[str, float]
    breakdown_p95_ms: dict[str, float]
    stages: dict[Stage, StageStats]
    pools: dict[str, float] = field(default_factory=dict)

    def ttff_percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile of time to first frame, in ms (inf when no turn finished)."""
        if not self.ttff_ms:
            return math.inf
        return float(np.percentile(self.ttff_ms, q, method="higher"))

    @property
    def ttff_p50_ms(self) -> float:
        """Median time to first frame, in ms."""
        return self.ttff_percentile_ms(50)

    @property
    def ttff_p95_ms(self) -> float:
        """95th percentile of time to first frame, in ms."""
        return self.ttff_percentile_ms(95)

    @property
    def ttff_p99_ms(self) -> float:
        """99th percentile of time to first frame, in ms."""
        return self.ttff_percentile_ms(99)

    def sustained_share(self, slo: SLO) -> float:
        """Share of replies that played at ``slo.min_fps_share`` of the nominal fps or better."""
        if not self.fps_achieved:
            return 0.0
        floor = slo.min_fps_share * self.fps_nominal * (1 - 1e-9)
        return sum(f >= floor for f in self.fps_achieved) / len(self.fps_achieved)

    @property
    def fps_p05(self) -> float:
        """5th percentile of the frame rate replies played at, in fps (0 without replies)."""
        if not self.fps_achieved:
            return 0.0
        return float(np.percentile(self.fps_achieved, 5, method="lower"))

    def meets(self, slo: SLO) -> bool:
        """True when this run meets ``slo``: TTFF p95 and sustained frame rate."""
        return (
            self.turns > 0
            and self.ttff_p95_ms <= slo.ttff_p95_ms
            and self.sustained_share(slo) >= slo.sustained_turn_share
        )


class _PipelineSim:
    def __init__(
        self,
        deployment: Deployment,
        profile: Profile,
        workload: Workload,
        sessions: int,
        options: SimOptions,
    ) -> None:
        self.env = env = simpy.Environment()
        self.profile, self.workload, self.options = profile, workload, options
        self.sessions = sessions
        pipeline = profile.pipeline
        self.fps = pipeline.fps
        self.chunk_frames = pipeline.animator_chunk_frames
        self.tts_inflight = pipeline.tts_inflight_sentences
        self.anim_inflight = pipeline.animator_inflight_chunks
        window_ms = options.vad_window_ms or pipeline.vad_window_ms
        self.vad_window_s = window_ms / 1000.0
        self.hangover_s = pipeline.vad_hangover_ms / 1000.0
        self.reply_start_s = pipeline.reply_start_s
        self.partial_interval_s = pipeline.asr_partial_interval_ms / 1000.0
        self.partial_min_audio_s = pipeline.asr_partial_min_audio_s
        self.idle_chunk_frames = pipeline.idle_chunk_frames
        self.delivery_s = pipeline.delivery_ms / 1000.0
        self.cpu_pool = None
        if deployment.is_cpu_box:
            # Live sessions cost CPU outside the engines too; what is left runs them.
            overhead = sessions * (profile.machine.session_overhead_cores if profile.machine else 0)
            cores = max(deployment.cpu_cores - overhead, 0.05 * deployment.cpu_cores)
            self.cpu_pool = ProcessorPool(env, cores, "cpu")
        names = deployment.card_names or tuple(f"gpu{i}" for i in range(deployment.card_count))
        self.cards = [ProcessorPool(env, 1.0, name) for name in names]
        self.stages: dict[Stage, object] = {}
        for stage in deployment.stages:
            if stage not in profile.engines:
                raise ConfigError(f"the deployment has stage {stage!r}, the profile does not")
            self.stages[stage] = self._build_stage(stage, deployment)
        missing = [s for s in ("asr", "llm", "tts", "animator") if s not in self.stages]
        if missing:
            raise ConfigError(f"the deployment lacks {', '.join(missing)}")
        self.vad = self.stages.get("vad")
        self.asr = self.stages["asr"]
        self.llm = self.stages["llm"]
        self.tts = self.stages["tts"]
        self.animator = self.stages["animator"]
        self.encoder = self.stages.get("encoder")
        self.turns: list[Turn] = []

    def _build_stage(self, stage: Stage, deployment: Deployment) -> object:
        env, config, engine = self.env, deployment.stages[stage], self.profile.engines[stage]
        seed = f"{self.options.seed}/service/{stage}"
        model = ServiceModel(engine.cost, speed=config.cost_speed)

        def service_of(m: ServiceModel, part: str = "") -> Callable[[int, float], float]:
            return m.sampler(seed + part)

        on_cpu = config.device == "cpu"
        pool = self.cpu_pool if on_cpu else None
        demand = float(engine.threads) if on_cpu else 1.0
        if engine.hosting == "per_session":
            return PerSessionStage(
                env, Executor(env, pool, demand), service_of(model), model.mean_s
            )
        executors = [
            Executor(
                env,
                self.cards[config.cards[i]] if config.cards and config.cards[i] >= 0 else pool,
                demand,
            )
            for i in range(config.replicas)
        ]
        if stage == "llm":
            assert engine.decode is not None
            decode = ServiceModel(engine.decode, speed=config.decode_speed)
            return ContinuousBatchingStage(
                env,
                executors,
                service_of(model),
                service_of(decode, "/decode"),
                max_batch_size=config.max_batch_size,
                seed=seed + "/router",
            )
        return BatchingStage(
            env,
            executors,
            service_of(model),
            max_batch_size=config.max_batch_size,
            max_wait_s=config.max_wait_ms / 1000.0,
            seed=seed + "/router",
        )

    # sessions
    def session(self, sid: int) -> simpy.events.ProcessGenerator:
        env, wl = self.env, self.workload
        rng = random.Random(f"{self.options.seed}/session/{sid}")
        yield env.timeout(rng.uniform(0.0, wl.cycle_s))
        current: list[Turn | None] = [None]
        if self.idle_chunk_frames:
            env.process(self.idle_video(current))
        while True:
            turn = yield from self.turn(rng, current)
            if turn.end_s > env.now:
                yield env.timeout(turn.end_s - env.now)
            yield env.timeout(rng.expovariate(1.0 / wl.think_s_mean))

    def idle_video(self, current: list[Turn | None]) -> simpy.events.ProcessGenerator:
        """The avatar moves while it does not speak: chunks rendered and encoded in real
        time, through the same animator and encoder as the replies."""
        env, frames = self.env, self.idle_chunk_frames
        period_s = frames / self.fps
        next_s = env.now
        while True:
            turn = current[0]
            speaking = turn is not None and 0 <= turn.start_s <= env.now < turn.end_s
            if not speaking:
                yield self.animator.submit(frames).done
                if self.encoder is not None:
                    yield self.encoder.submit(frames).done
            next_s = max(next_s + period_s, env.now)
            yield env.timeout(next_s - env.now)

    def turn(
        self, rng: random.Random, current: list[Turn | None]
    ) -> simpy.events.ProcessGenerator:
        env, wl = self.env, self.workload
        utterance_s = wl.utterance_s.sample(rng)
        boundaries, audio, hits = plan_reply(wl, rng)
        faq_hit = rng.random() < wl.faq_cache_hit_rate
        prompt = wl.sample_evaluated_prompt_tokens(rng)
        turn = Turn(self, audio, hits)
        turn.t_ref = env.now + utterance_s + self.hangover_s
        turn.measured = self.measure_from_s <= turn.t_ref < self.measure_until_s
        if turn.measured:
            self.turns.append(turn)
        if self.partial_interval_s and self.asr is not None:
            env.process(self._partials(utterance_s))
        yield from self._listen(utterance_s, self.reply_start_s)
        if self.reply_start_s < self.hangover_s:  # the VAD goes on through the hang-over
            env.process(self._vad_windows(self.hangover_s - self.reply_start_s))
        current[0] = turn
        turn.t_vad = env.now
        request = self.asr.submit(utterance_s)
        yield request.done
        turn.t_asr = env.now
        if faq_hit:
            for j in range(len(boundaries)):
                turn.on_text(j)
        else:
            self.llm.submit(prompt, boundaries, turn.on_text)
        yield turn.finished
        return turn

    def _partials(self, utterance_s: float) -> simpy.events.ProcessGenerator:
        """Partial ASR passes over the audio so far while the user speaks, one at a time."""
        env, start_s = self.env, self.env.now
        heard_s = self.partial_min_audio_s
        while heard_s < utterance_s:
            yield env.timeout(max(0.0, start_s + heard_s - env.now))
            yield self.asr.submit(heard_s).done
            heard_s = max(heard_s + self.partial_interval_s, env.now - start_s)

    def _vad_windows(self, seconds: float) -> simpy.events.ProcessGenerator:
        """VAD work that delays nothing (the rest of the hang-over after a speculative start)."""
        yield from self._listen(0.0, seconds)

    def _listen(self, utterance_s: float, silence_s: float) -> simpy.events.ProcessGenerator:
        """The user speaks, then is silent for ``silence_s``; the VAD sees every window."""
        env, vad, window_s = self.env, self.vad, self.vad_window_s
        windows = max(1, math.ceil((utterance_s + silence_s) / window_s))
        if vad is None:
            yield env.timeout(windows * window_s)
        elif isinstance(vad, PerSessionStage) and not vad.contended:
            # Uncontended: only the last window's processing delays anything.
            vad.account(window_s, windows - 1)
            yield env.timeout(windows * window_s + vad.duration_s(window_s))
        else:
            last = None
            for _ in range(windows):
                yield env.timeout(window_s)
                last = vad.submit(window_s)
            assert last is not None
            yield last.done

    # measurement
    def run(self) -> SimulationResult:
        env, wl, opts = self.env, self.workload, self.options
        warmup_s = 0.6 * wl.cycle_s if opts.warmup_s is None else opts.warmup_s
        turn_rate = self.sessions / wl.cycle_s
        duration_s = min(
            opts.max_duration_s, max(opts.min_duration_s, opts.target_turns / turn_rate)
        )
        self.measure_from_s, self.measure_until_s = warmup_s, warmup_s + duration_s
        for sid in range(self.sessions):
            env.process(self.session(sid))
        stage_items = list(self.stages.items())
        pools = ([self.cpu_pool] if self.cpu_pool else []) + self.cards
        snap: dict[str, dict[str, float]] = {}

        def busy_now() -> dict[str, float]:
            out = {f"stage:{s}": sum(e.busy_s for e in _executors(st)) for s, st in stage_items}
            out.update({f"pool:{p.name}": p.busy_s() for p in pools})
            return out

        def at_start(_event: simpy.Event) -> None:
            for _, st in stage_items:
                st.counters.reset()
            snap["start"] = busy_now()

        def at_end(_event: simpy.Event) -> None:
            snap["end"] = busy_now()
            snap["counts"] = {s: _copy_counters(st.counters) for s, st in stage_items}

        env.timeout(warmup_s).callbacks.append(at_start)
        env.timeout(warmup_s + duration_s).callbacks.append(at_end)
        drain_s = 2 * wl.cycle_s
        env.run(until=warmup_s + duration_s + drain_s)
        return self._result(snap, duration_s)

    def _result(self, snap: dict, duration_s: float) -> SimulationResult:
        turns = self.turns
        ttff = sorted(t.ttff_s * 1000.0 for t in turns)
        fps = sorted(t.frames / (t.end_s - t.start_s) for t in turns if t.finished.triggered)
        complete = [t for t in turns if t.t_anim0 >= 0 and t.ttff_s < math.inf]
        breakdown = dict.fromkeys(SEGMENTS, 0.0)
        breakdown_p95 = dict.fromkeys(SEGMENTS, 0.0)
        if complete:
            parts = 1000.0 * np.array(
                [
                    (
                        t.t_vad - t.t_ref,
                        t.t_asr - t.t_vad,
                        t.t_text0 - t.t_asr,
                        t.t_audio0 - t.t_text0,
                        t.t_anim0 - t.t_audio0,
                        t.t_ref + t.ttff_s - t.t_anim0,
                    )
                    for t in complete
                ]
            )
            breakdown = dict(zip(SEGMENTS, parts.mean(axis=0).tolist(), strict=True))
            breakdown_p95 = dict(
                zip(SEGMENTS, np.percentile(parts, 95, axis=0).tolist(), strict=True)
            )
        stages: dict[Stage, StageStats] = {}
        for stage, st in self.stages.items():
            counters: StageCounters = snap["counts"][stage]
            waits = counters.waits_s
            busy_s = snap["end"][f"stage:{stage}"] - snap["start"][f"stage:{stage}"]
            replicas = 1 if isinstance(st, PerSessionStage) else len(_executors(st))
            stages[stage] = StageStats(
                requests=counters.requests,
                mean_batch_size=counters.mean_batch_size,
                wait_mean_ms=1000.0 * float(np.mean(waits)) if waits else 0.0,
                wait_p95_ms=1000.0 * float(np.percentile(waits, 95)) if waits else 0.0,
                busy=busy_s / duration_s / replicas,
            )
        pools = ([self.cpu_pool] if self.cpu_pool else []) + self.cards
        return SimulationResult(
            sessions=self.sessions,
            turns=len(turns),
            simulated_s=duration_s,
            ttff_ms=tuple(ttff),
            fps_achieved=tuple(fps),
            fps_nominal=self.fps,
            breakdown_ms=breakdown,
            breakdown_p95_ms=breakdown_p95,
            stages=stages,
            pools={
                p.name: (snap["end"][f"pool:{p.name}"] - snap["start"][f"pool:{p.name}"])
                / duration_s
                for p in pools
            },
        )


def _executors(stage: object) -> list[Executor]:
    if isinstance(stage, PerSessionStage):
        return [stage.executor]
    return list(stage.executors)  # type: ignore[attr-defined]


def _copy_counters(c: StageCounters) -> StageCounters:
    return StageCounters(
        requests=c.requests,
        batches=c.batches,
        batched_requests=c.batched_requests,
        waits_s=list(c.waits_s),
        service_s=c.service_s,
    )


def simulate(
    deployment: Deployment,
    profile: Profile,
    workload: Workload,
    sessions: int,
    options: SimOptions | None = None,
) -> SimulationResult:
    """Simulate ``sessions`` concurrent sessions on ``deployment``.

    Raises:
        ConfigError: the deployment and the profile do not describe the same stages.
    """
    if sessions < 1:
        raise ConfigError("sessions must be at least 1")
    return _PipelineSim(deployment, profile, workload, sessions, options or SimOptions()).run()


def max_sessions(
    deployment: Deployment,
    profile: Profile,
    workload: Workload,
    slo: SLO,
    options: SimOptions | None = None,
    *,
    start: int = 1,
    upper: int = 100_000,
    rel_tol: float = 0.0,
    known: dict[int, SimulationResult] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[int, dict[int, SimulationResult]]:
    """Most concurrent sessions ``deployment`` serves within ``slo``, by simulation.

    Grows the load from ``start`` (doubling below 16 sessions, +25 % above) until the
    SLO fails, then bisects. Every run uses the same seed, so neighbouring loads see
    the same random users. ``rel_tol`` 0 finds the exact integer; 0.03 stops when the
    bracket is within 3 %.

    Returns:
        The largest passing session count (0 when even one session fails) and every
        simulation run, by session count.
    """
    results = dict(known or {})

    def passes(n: int) -> bool:
        if n not in results:
            if progress is not None:
                progress(f"simulating {n} sessions")
            results[n] = simulate(deployment, profile, workload, n, options)
        return results[n].meets(slo)

    hi: int | None = None
    n = max(1, start)
    while not passes(n):  # come down to a load that passes
        hi = n
        if n == 1:
            return 0, results
        n = max(1, n // 2)
    lo = n
    while hi is None:  # go up to a load that fails
        if lo >= upper:
            return lo, results
        n = min(upper, lo * 2 if lo < 16 else math.ceil(lo * 1.25))
        if passes(n):
            lo = n
        else:
            hi = n
    while hi - lo > max(1, math.floor(rel_tol * lo)):
        mid = (lo + hi) // 2
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo, results
