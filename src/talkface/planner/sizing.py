"""Closed-form estimates per stage: demand, capacity, latency (the planner's first guess).

The search uses these to rank thousands of candidate configurations in milliseconds;
the simulator then checks the chosen one. The report prints them as the step-by-step
derivation of every GPU count. All times here are in seconds.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from talkface.planner.closed_form import (
    mg1_mean_wait_s,
    power_of_two_mean_wait_s,
    wait_p95_s,
)
from talkface.planner.costmodel import ServiceModel
from talkface.planner.profile import PipelineSettings, Stage
from talkface.planner.simulate import plan_reply
from talkface.planner.workload import Workload

_Z95 = 1.6448536269514722
_EXP_P95 = math.log(20.0)  # p95 / mean of an exponential


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyShape:
    """Per-turn averages of the workload, drawn the way the simulator draws them.

    Attributes:
        vad_windows: VAD requests per turn.
        sentences: sentences per reply.
        tts_requests: TTS calls per reply (cache hits left out).
        sentence_audio_s: mean seconds of speech per TTS call.
        first_audio_s: mean seconds of speech of the first sentence.
        chunks: animator chunks per reply.
        animator_requests: animator calls per reply (cache hits left out).
        chunk_frames: mean frames per chunk.
        reply_s: mean seconds of speech per reply.
        first_tokens_p95: 95th percentile of tokens to the first sentence.
        first_audio_s_p95: 95th percentile of the first sentence's speech.
        utterance_s_p95: 95th percentile of the user's utterance.
        prompt_tokens_p95: 95th percentile of the prompt tokens the LLM evaluates.
    """

    vad_windows: float
    sentences: float
    tts_requests: float
    sentence_audio_s: float
    first_audio_s: float
    chunks: float
    animator_requests: float
    chunk_frames: float
    reply_s: float
    first_tokens_p95: float
    first_audio_s_p95: float
    utterance_s_p95: float
    prompt_tokens_p95: float


def reply_shape(workload: Workload, pipeline: PipelineSettings, *, draws: int = 4000) -> ReplyShape:
    """Average ``draws`` simulated replies (fixed seed, so the result is reproducible)."""
    rng = random.Random("reply-shape")
    window_s = pipeline.vad_window_ms / 1000.0
    hangover_s = pipeline.vad_hangover_ms / 1000.0
    sums = np.zeros(9)
    first_tokens, first_audio, utterances = [], [], []
    for _ in range(draws):
        utterance_s = workload.utterance_s.sample(rng)
        boundaries, audio, hits = plan_reply(workload, rng)
        chunks = anim_chunks = 0
        for audio_s, hit in zip(audio, hits, strict=True):
            n = math.ceil(max(1, round(audio_s * pipeline.fps)) / pipeline.animator_chunk_frames)
            chunks += n
            anim_chunks += n if hit != 2 else 0
        tts_calls = sum(1 for h in hits if h == 0)
        frames = sum(max(1, round(a * pipeline.fps)) for a in audio)
        sums += (
            max(1, math.ceil((utterance_s + hangover_s) / window_s)),
            len(boundaries),
            tts_calls,
            sum(a for a, h in zip(audio, hits, strict=True) if h == 0),
            audio[0],
            chunks,
            anim_chunks,
            frames,
            sum(audio),
        )
        first_tokens.append(boundaries[0])
        first_audio.append(audio[0])
        utterances.append(utterance_s)
    m = sums / draws
    prompts = [workload.sample_evaluated_prompt_tokens(rng) for _ in range(draws)]
    return ReplyShape(
        vad_windows=m[0],
        sentences=m[1],
        tts_requests=m[2],
        sentence_audio_s=m[3] / m[2] if m[2] else 0.0,
        first_audio_s=m[4],
        chunks=m[5],
        animator_requests=m[6],
        chunk_frames=m[7] / m[5],
        reply_s=m[8],
        first_tokens_p95=float(np.percentile(first_tokens, 95)),
        first_audio_s_p95=float(np.percentile(first_audio, 95)),
        utterance_s_p95=float(np.percentile(utterances, 95)),
        prompt_tokens_p95=float(np.percentile(prompts, 95)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StageEstimate:
    """Closed-form estimate of one stage at one load.

    Attributes:
        replicas: model copies.
        max_batch_size: batching limit (LLM: concurrent sequences).
        requests_per_s: load on the whole stage.
        mean_batch: expected requests per batch (LLM: running sequences).
        load: per-replica busy share if every batch were full (must stay below 1).
        busy: expected busy share of one replica.
        first_mean_s: mean time of this stage on the path to the first frame.
        first_p95_s: rough 95th percentile of it.
        request_p95_s: rough 95th percentile of one streaming request (sustained check).
        stable: False when the stage cannot keep up at all.
    """

    replicas: int
    max_batch_size: int
    requests_per_s: float
    mean_batch: float
    load: float
    busy: float
    first_mean_s: float
    first_p95_s: float
    request_p95_s: float
    stable: bool


def _interp(model: ServiceModel, batch: float, work: float) -> float:
    lo = max(1, math.floor(batch))
    hi = max(lo, math.ceil(batch))
    t_lo = model.mean_s(lo, work)
    return t_lo if hi == lo else t_lo + (batch - lo) * (model.mean_s(hi, work) - t_lo)


def _unstable(replicas: int, max_batch: int, rate: float, load: float) -> StageEstimate:
    return StageEstimate(
        replicas=replicas,
        max_batch_size=max_batch,
        requests_per_s=rate,
        mean_batch=max_batch,
        load=load,
        busy=1.0,
        first_mean_s=math.inf,
        first_p95_s=math.inf,
        request_p95_s=math.inf,
        stable=False,
    )


def estimate_batching(
    model: ServiceModel,
    *,
    requests_per_s: float,
    work_units: float,
    first_work_units: float,
    replicas: int,
    max_batch_size: int,
    max_wait_s: float,
    first_work_p95_units: float | None = None,
) -> StageEstimate:
    """A micro-batched engine (shared FIFO queue, ``replicas`` servers).

    Each replica gets ``lambda_r = lambda / replicas``. The requests that arrive while a
    batch runs form the next one, and a batch that is not full waits ``max_wait`` for
    more, so the mean batch solves
    ``b = lambda_r * (S(b) + max_wait) + exp(-lambda_r * S(b))`` (capped at the limit).
    Batches then queue per replica: Pollaczek-Khinchine for one replica, the
    power-of-two-choices (supermarket) result for several; while batches are not full,
    a request waits at most about half a running batch.
    """
    rate_r = requests_per_s / replicas
    full_load = rate_r * model.mean_s(max_batch_size, work_units) / max_batch_size
    if full_load >= 0.999:
        return _unstable(replicas, max_batch_size, requests_per_s, full_load)
    batch = 1.0
    for _ in range(80):
        busy_arrivals = rate_r * _interp(model, batch, work_units)
        target = busy_arrivals + math.exp(-busy_arrivals) + rate_r * max_wait_s
        previous, batch = batch, 0.5 * batch + 0.5 * min(float(max_batch_size), max(1.0, target))
        if abs(batch - previous) < 1e-4:
            break
    service_s = _interp(model, batch, work_units)
    cv = model.noise_cv
    rho = min(0.999, rate_r * service_s / batch)
    formation_s = min(max_wait_s, (batch - 1) / (2 * rate_r)) if batch > 1 else 0.0
    # A replica that is always busy has rho = 1 at the mean batch; the cap keeps the
    # formulas finite and the residual-batch bound below takes over in that regime.
    rho_q = min(rho, 0.98)
    if replicas == 1:
        queue_s = mg1_mean_wait_s(rate_r / batch, rho_q * batch / rate_r, cv)
        p_wait = rho_q
    else:
        queue_s = power_of_two_mean_wait_s(rho_q, service_s, cv)
        p_wait = rho_q**2
    if batch < max_batch_size - 0.5:
        # The batch absorbs the queue: a request waits for the running batch only.
        queue_s = min(queue_s, 0.5 * service_s * (1 + cv**2))
    wait_s = formation_s + queue_s
    wait_p95 = formation_s + max(wait_p95_s(queue_s, p_wait), queue_s)

    def batch_with(first: float) -> float:
        return _interp(model, batch, (work_units * (batch - 1) + first) / batch)

    first_service_s = batch_with(first_work_units)
    # The tail of the first request's service: its noise and the spread of its work.
    long_first_s = batch_with(first_work_p95_units or first_work_units) - first_service_s
    service_tail_s = math.hypot(long_first_s, _Z95 * cv * first_service_s)
    return StageEstimate(
        replicas=replicas,
        max_batch_size=max_batch_size,
        requests_per_s=requests_per_s,
        mean_batch=batch,
        load=full_load,
        busy=min(1.0, rho),
        first_mean_s=wait_s + first_service_s,
        first_p95_s=wait_p95 + first_service_s + service_tail_s,
        request_p95_s=wait_p95 + service_s * (1 + _Z95 * cv),
        stable=True,
    )


def estimate_llm(
    prefill: ServiceModel,
    decode: ServiceModel,
    *,
    requests_per_s: float,
    prompt_tokens: float,
    reply_tokens: float,
    first_tokens: float,
    first_tokens_p95: float,
    replicas: int,
    max_batch_size: int,
    prompt_tokens_p95: float | None = None,
) -> StageEstimate:
    """A continuous-batching LLM server (``max_batch_size`` sequence slots per replica).

    Decoding is a processor-sharing queue whose speed depends on how many sequences run:
    with ``n`` running, each step takes ``step(n) / (1 - prefill share)`` and gives every
    sequence a token, so sequences finish at rate ``min(n, B) / (step * tokens)``. The
    number in the replica is then a birth-death chain, solved exactly (PS queues do not
    care how reply lengths are spread). An arrival sees the chain's stationary state
    (PASTA): it waits for a slot when all ``B`` are taken, and decodes its first sentence
    at the step time of the state it joins; the p95 uses the chain's 95th percentile.
    """
    rate_r = requests_per_s / replicas
    prefill_s = prefill.mean_s(1, prompt_tokens)
    prefill_share = rate_r * prefill_s
    if prefill_share >= 0.95:
        return _unstable(replicas, max_batch_size, requests_per_s, prefill_share)
    tokens = max(1.0, reply_tokens - 1)
    steps_s = [0.0] + [
        decode.mean_s(min(n, max_batch_size), 1.0) / (1 - prefill_share)
        for n in range(1, max_batch_size + 1)
    ]
    full_rate = max_batch_size / (steps_s[max_batch_size] * tokens)
    full_load = rate_r / full_rate
    if full_load >= 0.999:
        return _unstable(replicas, max_batch_size, requests_per_s, full_load)
    # Stationary distribution: p[n] ~ prod_{k<=n} rate / death(k); beyond B it is geometric.
    weights = [1.0]
    for n in range(1, max_batch_size + 1):
        weights.append(weights[-1] * rate_r * steps_s[n] * tokens / n)
    tail = full_load  # p[B + j] = p[B] * full_load ** j
    queued_mass = weights[-1] * tail / (1 - tail)
    total = sum(weights) + queued_mass
    probs = [w / total for w in weights]
    p_wait = (weights[-1] / (1 - tail)) / total  # P(n >= B)
    queue_len = probs[-1] * tail / (1 - tail) ** 2
    queue_s = queue_len / rate_r
    queue_p95 = max(queue_s, wait_p95_s(queue_s, p_wait))
    running = sum(n * p for n, p in enumerate(probs)) + max_batch_size * queued_mass / total
    # The step time a new sequence decodes at: the state it joins (it makes n + 1).
    joined = [steps_s[min(n + 1, max_batch_size)] for n in range(max_batch_size + 1)]
    step_mean = sum(p * s for p, s in zip(probs, joined, strict=True)) + (
        steps_s[max_batch_size] * queued_mass / total
    )
    cumulative, n95 = 0.0, max_batch_size
    for n, p in enumerate(probs):
        cumulative += p
        if cumulative >= 0.95:
            n95 = n
            break
    step_p95 = joined[n95]
    cv = prefill.noise_cv
    long_prefill = prefill.mean_s(1, prompt_tokens_p95 or prompt_tokens) - prefill_s
    return StageEstimate(
        replicas=replicas,
        max_batch_size=max_batch_size,
        requests_per_s=requests_per_s,
        mean_batch=running,
        load=full_load,
        busy=min(1.0, prefill_share + (1 - probs[0]) * (1 - prefill_share)),
        first_mean_s=queue_s + step_mean / 2 + prefill_s + (first_tokens - 1) * step_mean,
        first_p95_s=queue_p95
        + step_p95
        + prefill_s
        + math.hypot(long_prefill, _Z95 * cv * prefill_s)
        + (first_tokens_p95 - 1) * step_p95,
        request_p95_s=queue_p95 + prefill_s + tokens * step_p95,
        stable=True,
    )


def estimate_per_session(
    model: ServiceModel,
    *,
    requests_per_s: float,
    work_units: float,
    first_work_units: float,
    first_work_p95_units: float | None = None,
) -> StageEstimate:
    """A per-session worker on uncontended CPU: no queue; ``busy`` counts cores."""
    cv = model.noise_cv
    first_s = model.mean_s(1, first_work_units)
    long_first_s = model.mean_s(1, first_work_p95_units or first_work_units) - first_s
    return StageEstimate(
        replicas=1,
        max_batch_size=1,
        requests_per_s=requests_per_s,
        mean_batch=1.0,
        load=0.0,
        busy=requests_per_s * model.mean_s(1, work_units),
        first_mean_s=first_s,
        first_p95_s=first_s + math.hypot(long_first_s, _Z95 * cv * first_s),
        request_p95_s=model.mean_s(1, work_units) * (1 + _Z95 * cv),
        stable=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StageDemand:
    """What ``sessions`` concurrent sessions ask of one stage.

    Attributes:
        requests_per_s: requests per second to the stage.
        work_units: mean work per request (stage unit).
        first_work_units: work of the request on the path to the first frame.
        first_work_p95_units: 95th percentile of that work.
        media_s_per_s: seconds of media (audio, video) the stage must process per second
            (LLM: sequences generating at once are reported instead by the estimate).
    """

    stage: Stage
    requests_per_s: float
    work_units: float
    first_work_units: float
    first_work_p95_units: float
    media_s_per_s: float


def stage_demands(
    workload: Workload, pipeline: PipelineSettings, sessions: float, shape: ReplyShape
) -> dict[Stage, StageDemand]:
    """Per-stage demand of ``sessions`` concurrent sessions."""
    turns_per_s = sessions / workload.cycle_s
    window_s = pipeline.vad_window_ms / 1000.0
    llm_turns = turns_per_s * (1 - workload.faq_cache_hit_rate)
    chunk_s = shape.chunk_frames / pipeline.fps
    prompt = workload.evaluated_prompt_tokens_mean

    def demand(
        stage: Stage, rate: float, work: float, first: float, first_p95: float, media: float
    ) -> StageDemand:
        return StageDemand(
            stage=stage,
            requests_per_s=rate,
            work_units=work,
            first_work_units=first,
            first_work_p95_units=first_p95,
            media_s_per_s=media,
        )

    chunk = float(pipeline.animator_chunk_frames)
    return {
        "vad": demand(
            "vad",
            turns_per_s * shape.vad_windows,
            window_s,
            window_s,
            window_s,
            turns_per_s * shape.vad_windows * window_s,
        ),
        "asr": demand(
            "asr",
            turns_per_s,
            workload.utterance_s.mean,
            workload.utterance_s.mean,
            shape.utterance_s_p95,
            turns_per_s * workload.utterance_s.mean,
        ),
        "llm": demand(
            "llm",
            llm_turns,
            prompt,
            prompt,
            shape.prompt_tokens_p95,
            0.0,
        ),
        "tts": demand(
            "tts",
            turns_per_s * shape.tts_requests,
            shape.sentence_audio_s,
            shape.first_audio_s,
            shape.first_audio_s_p95,
            turns_per_s * shape.tts_requests * shape.sentence_audio_s,
        ),
        "animator": demand(
            "animator",
            turns_per_s * shape.animator_requests,
            shape.chunk_frames,
            chunk,
            chunk,
            turns_per_s * shape.animator_requests * chunk_s,
        ),
        "encoder": demand(
            "encoder",
            turns_per_s * shape.chunks,
            shape.chunk_frames,
            chunk,
            chunk,
            turns_per_s * shape.chunks * chunk_s,
        ),
    }
