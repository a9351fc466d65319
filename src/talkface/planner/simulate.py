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

The embedded llama.cpp LLM of a CPU box takes turns by sentence
(:mod:`talkface.planner.turns`); an LLM server batches continuously
(:mod:`talkface.planner.continuous`). With ``SimOptions.degradation`` the server's
degradation ladder steps down under simulated pressure (:mod:`talkface.planner.ladder`).

The run is deterministic for a seed, and bounded: its simulated length is set so that
about ``SimOptions.target_turns`` turns are measured.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

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
from talkface.planner.ladder import FrameMeter, SimulatedLadder, capped_reply
from talkface.planner.profile import Profile, Stage
from talkface.planner.sim_results import SEGMENTS, SimOptions, SimulationResult, StageStats
from talkface.planner.turns import SentenceTurnsStage
from talkface.planner.workload import SLO, Workload

__all__ = [
    "SEGMENTS",
    "SimOptions",
    "SimulationResult",
    "StageStats",
    "max_sessions",
    "plan_reply",
    "simulate",
]


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
        self.box_cores = deployment.cpu_cores or 0.0
        self.overhead_cores = profile.machine.session_overhead_cores if profile.machine else 0.0
        self.live_sessions = sessions
        if deployment.is_cpu_box:
            # Live sessions cost CPU outside the engines too; what is left runs them.
            self.cpu_pool = ProcessorPool(env, self._engine_cores(), "cpu")
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
        self.frame_meter = FrameMeter(env)
        self.ladder: SimulatedLadder | None = None
        if options.degradation is not None:
            pool = self.cpu_pool
            self.ladder = SimulatedLadder(
                env,
                options.degradation,
                queue_depth=lambda: sum(getattr(st, "waiting", 0) for st in self.stages.values()),
                busy_core_s=pool.used_core_s if pool is not None else None,
                overhead_cores=lambda: self.live_sessions * self.overhead_cores,
                cores=self.box_cores or 1.0,
                frames=self.frame_meter,
            )

    def _engine_cores(self) -> float:
        """The CPU box's cores left to the engines by the live sessions."""
        overhead = self.live_sessions * self.overhead_cores
        return max(self.box_cores - overhead, 0.05 * self.box_cores)

    def _set_live(self, change: int) -> None:
        """Sessions went live (or, negative, stopped): the cores they take change."""
        self.live_sessions += change
        if self.cpu_pool is not None:
            self.cpu_pool.resize(self._engine_cores())

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
            if config.scheduling == "sentence_turns":
                return SentenceTurnsStage(
                    env,
                    executors,
                    service_of(model),
                    service_of(decode, "/decode"),
                    max_concurrent=config.max_concurrent_batches,
                    context_tokens=self.workload.prompt_tokens.mean,
                    seed=seed + "/router",
                )
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
        """One user: a session for the whole run, or (with the ladder) one after another."""
        env, ladder = self.env, self.ladder
        rng = random.Random(f"{self.options.seed}/session/{sid}")
        yield env.timeout(rng.uniform(0.0, self.workload.cycle_s))
        if ladder is None:
            yield from self.conversation(rng, _Live(self.fps), None)
            return
        ends = random.Random(f"{self.options.seed}/session-ends/{sid}")
        while True:
            if ladder.refusing:
                self._set_live(-1)
                while ladder.refusing:  # the user is told to retry after retry_after_s
                    ladder.count("refused")
                    yield env.timeout(ladder.settings.retry_after_s)
                self._set_live(+1)
            fps = ladder.session_fps(self.fps)
            ladder.count("started")
            if fps < self.fps:
                ladder.count("reduced")
            yield from self.conversation(rng, _Live(fps), ends)

    def conversation(
        self, rng: random.Random, live: _Live, ends: random.Random | None
    ) -> simpy.events.ProcessGenerator:
        """One session: idle video and turns, each turn its last with probability
        ``1 / conversation_turns`` drawn from ``ends`` (None: never ends)."""
        env, wl = self.env, self.workload
        self.frame_meter.live(live.fps)
        if self.idle_chunk_frames:
            env.process(self.idle_video(live))
        while True:
            turn = yield from self.turn(rng, live)
            if turn.end_s > env.now:
                yield env.timeout(turn.end_s - env.now)
            yield env.timeout(rng.expovariate(1.0 / wl.think_s_mean))
            if ends is not None and ends.random() * wl.conversation_turns < 1:
                break
        live.ended = True
        self.frame_meter.live(-live.fps)

    def idle_video(self, live: _Live) -> simpy.events.ProcessGenerator:
        """The avatar moves while it does not speak: chunks rendered and encoded in real
        time, through the same animator and encoder as the replies."""
        env, frames = self.env, self.idle_chunk_frames
        period_s = frames / live.fps
        next_s = env.now
        while not live.ended:
            turn = live.current
            speaking = turn is not None and 0 <= turn.start_s <= env.now < turn.end_s
            if not speaking:
                yield self.animator.submit(frames).done
                if self.encoder is not None:
                    yield self.encoder.submit(frames).done
            next_s = max(next_s + period_s, env.now)
            yield env.timeout(next_s - env.now)

    def turn(self, rng: random.Random, live: _Live) -> simpy.events.ProcessGenerator:
        env, wl = self.env, self.workload
        utterance_s = wl.utterance_s.sample(rng)
        boundaries, audio, hits = plan_reply(wl, rng)
        faq_hit = rng.random() < wl.faq_cache_hit_rate
        prompt = wl.sample_evaluated_prompt_tokens(rng)
        turn = _Turn(self, audio, hits, live.fps)
        turn.t_ref = env.now + utterance_s + self.hangover_s
        turn.measured = self.measure_from_s <= turn.t_ref < self.measure_until_s
        if turn.measured:
            self.turns.append(turn)
        if self.partial_interval_s and self.asr is not None:
            env.process(self._partials(utterance_s))
        yield from self._listen(utterance_s, self.reply_start_s)
        if self.reply_start_s < self.hangover_s:  # the VAD goes on through the hang-over
            env.process(self._vad_windows(self.hangover_s - self.reply_start_s))
        live.current = turn
        turn.t_vad = env.now
        request = self.asr.submit(utterance_s)
        yield request.done
        turn.t_asr = env.now
        if faq_hit:
            for j in range(len(boundaries)):
                turn.on_text(j)
        elif self.ladder is None:
            self.llm.submit(prompt, boundaries, turn.on_text)
        else:
            self.llm.submit(prompt, *self._capped(turn, boundaries))
        yield turn.finished
        return turn

    def _capped(self, turn: Turn, boundaries: list[int]) -> tuple[list[int], Callable[[int], None]]:
        """The reply as the ladder lets it start now: what the LLM generates and who
        hears of its sentences (``shorter_replies``: only those spoken)."""
        assert self.ladder is not None
        cap = self.ladder.reply_cap(boundaries[-1])
        if cap >= boundaries[-1]:
            return boundaries, turn.on_text
        self.ladder.count("capped")
        generated, spoken = capped_reply(boundaries, cap)
        cut_first_s = cap * self.workload.speech_s_per_token if boundaries[0] > cap else None
        turn.shorten(spoken, cut_first_s)

        def on_text(j: int) -> None:
            if j < spoken:  # the dropped half sentence is generated, never handed on
                turn.on_text(j)

        return generated, on_text

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
        if self.ladder is not None:
            self.ladder.start(self.measure_from_s, self.measure_until_s)
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
        fps = sorted(
            t.frames / (t.end_s - t.start_s) * (self.fps / t.fps)
            for t in turns
            if t.finished.triggered
        )
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
            degradation=self.ladder.report() if self.ladder is not None else None,
        )


class _Turn(Turn):
    """A turn that tells the ladder (when there is one) of its first frame."""

    __slots__ = ()

    def on_ready(self, c: int, ready_s: float) -> None:
        super().on_ready(c, ready_s)
        if c == 0 and self.sim.ladder is not None:
            self.sim.ladder.first_frame(self.t_ref + self.ttff_s, self.ttff_s)


class _Live:
    """One live session: its frame rate, and the turn it is in."""

    __slots__ = ("current", "ended", "fps")

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.current: Turn | None = None
        self.ended = False


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
