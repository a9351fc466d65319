"""The workload a plan is sized for, and the service level it must meet.

A session alternates: the user speaks (``utterance_s``), waits for the first frame of the
reply, listens to the reply (``reply_tokens * speech_s_per_token`` seconds), then thinks
before speaking again, so that it takes ``turns_per_min`` turns a minute.

The LLM's prompt is modelled as talkface runs it (``prompt_reuse: prefix``): each
conversation's KV cache is kept, so a turn evaluates only its new tokens (the user's
message and the chat template's), the first turn of a conversation evaluates its whole
(short) prompt, and a turn whose cache was evicted evaluates the whole history.
``prompt_reuse: fixed_share`` models a server without per-conversation reuse: every turn
evaluates ``prompt_tokens * (1 - prompt_cached_share)`` (0: no reuse at all).

The cache hit rates default to 0: the product has no FAQ, TTS or animation cache yet.
The defaults
live in ``talkface/planner/data/workload.yaml`` (identical to the field defaults here);
``talkface plan --workload FILE`` reads a user's own.
"""

from __future__ import annotations

import math
import random
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from talkface.planner._loading import load_model, parse_text, validate_data

NOMINAL_RESPONSE_S = 1.0
"""Reply latency assumed when the think time is derived from ``turns_per_min``."""
MIN_THINK_S = 1.0


class Distribution(BaseModel):
    """A positive random quantity given by its mean and coefficient of variation.

    Attributes:
        mean: the mean.
        cv: standard deviation / mean (0 for a constant).
        shape: ``lognormal`` (default), ``gamma``, ``exponential`` (cv must be 1) or
            ``constant`` (cv must be 0).
    """

    model_config = ConfigDict(extra="forbid")

    mean: float = Field(gt=0)
    cv: float = Field(0.5, ge=0, le=5)
    shape: Literal["lognormal", "gamma", "exponential", "constant"] = "lognormal"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.shape == "constant" and self.cv != 0:
            raise ValueError("a constant has cv 0")
        if self.shape == "exponential" and self.cv != 1:
            raise ValueError("an exponential has cv 1")
        return self

    def sample(self, rng: random.Random) -> float:
        """One draw (always > 0 except for a constant's own value)."""
        if self.cv == 0 or self.shape == "constant":
            return self.mean
        if self.shape == "exponential":
            return rng.expovariate(1.0 / self.mean)
        if self.shape == "gamma":
            k = 1.0 / self.cv**2
            return rng.gammavariate(k, self.mean / k)
        sigma2 = math.log1p(self.cv**2)
        return rng.lognormvariate(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2))


class RenderJobs(BaseModel):
    """Offline render jobs (a script to a video file), run on spot GPUs.

    Attributes:
        jobs_per_h: jobs submitted per hour (0: no offline plan).
        video_s: length of each rendered video.
        checkpoint_s: video seconds rendered between checkpoints; a preemption loses the
            segment in progress.
        restart_s: time to get a replacement GPU and reload the models after a preemption.
        utilisation_target: busy share the render pool is sized for.
    """

    model_config = ConfigDict(extra="forbid")

    jobs_per_h: float = Field(120.0, ge=0)
    video_s: Distribution = Field(default_factory=lambda: Distribution(mean=120.0, cv=0.5))
    checkpoint_s: float = Field(10.0, gt=0)
    restart_s: float = Field(120.0, ge=0)
    utilisation_target: float = Field(0.85, gt=0, le=1)


class Workload(BaseModel):
    """What the users do.

    Attributes:
        turns_per_min: turns one session takes per minute (speak, wait, listen, think).
        utterance_s: how long the user speaks per turn.
        prompt_reuse: ``prefix`` (talkface's per-conversation KV cache: a turn evaluates
            its new tokens only) or ``fixed_share`` (every turn evaluates the whole prompt
            less ``prompt_cached_share``; e.g. an external server without prefix caching).
            Giving ``prompt_cached_share`` without ``prompt_reuse`` selects ``fixed_share``.
        prompt_tokens: the whole LLM prompt of a turn (system prompt + history +
            utterance): evaluated every turn under ``fixed_share``, and under ``prefix``
            only when the conversation's cache was evicted.
        prompt_cached_share: ``fixed_share`` only: share of the prompt served from a cache.
        first_prompt_tokens: ``prefix`` only: tokens the first turn of a conversation
            evaluates (system prompt, template, first message; measured: 60 tokens, of
            which 12 evaluated because the system prompt is warmed at load).
        new_prompt_tokens: ``prefix`` only: tokens a later turn evaluates (the new
            message and template tokens; measured: 17 on average).
        conversation_turns: ``prefix`` only: mean turns of one conversation (its first
            turn evaluates ``first_prompt_tokens``).
        prefix_cache_miss_share: ``prefix`` only: share of later turns whose saved KV
            state was evicted (then the whole ``prompt_tokens`` is evaluated).
        reply_tokens: LLM reply length.
        first_sentence_tokens: tokens until the sentence splitter emits the first clause.
        sentence_tokens: tokens of each later sentence.
        speech_s_per_token: seconds of speech per reply token (0.3 is ~150 words/min).
        faq_cache_hit_rate: share of turns the FAQ cache answers (no LLM call).
        tts_cache_hit_rate: share of sentences whose audio is cached (no TTS call).
        animation_cache_hit_rate: share of sentences whose audio and video are cached
            (no TTS, no animator call).
        peak_factor: busiest-hour concurrent sessions / the requested sessions; the plan
            is sized for the peak.
        trough_factor: quietest-hour concurrent sessions / the requested sessions; sets
            the autoscaling minimum.
        render: offline render jobs.
    """

    model_config = ConfigDict(extra="forbid")

    turns_per_min: float = Field(2.0, gt=0, le=30)
    utterance_s: Distribution = Field(default_factory=lambda: Distribution(mean=3.5, cv=0.5))
    prompt_tokens: Distribution = Field(default_factory=lambda: Distribution(mean=700.0, cv=0.3))
    prompt_reuse: Literal["prefix", "fixed_share"] = "prefix"
    prompt_cached_share: float = Field(0.0, ge=0, lt=1)
    first_prompt_tokens: Distribution = Field(
        default_factory=lambda: Distribution(mean=60.0, cv=0.3)
    )
    new_prompt_tokens: Distribution = Field(
        default_factory=lambda: Distribution(mean=20.0, cv=0.4)
    )
    conversation_turns: float = Field(10.0, ge=1, le=10_000)
    prefix_cache_miss_share: float = Field(0.0, ge=0, le=1)
    reply_tokens: Distribution = Field(default_factory=lambda: Distribution(mean=40.0, cv=0.5))
    first_sentence_tokens: Distribution = Field(
        default_factory=lambda: Distribution(mean=10.0, cv=0.4)
    )
    sentence_tokens: Distribution = Field(default_factory=lambda: Distribution(mean=14.0, cv=0.4))
    speech_s_per_token: float = Field(0.3, gt=0, le=5)
    faq_cache_hit_rate: float = Field(0.0, ge=0, le=1)
    tts_cache_hit_rate: float = Field(0.0, ge=0, le=1)
    animation_cache_hit_rate: float = Field(0.0, ge=0, le=1)
    peak_factor: float = Field(1.5, ge=1, le=100)
    trough_factor: float = Field(0.3, gt=0, le=1)
    render: RenderJobs = Field(default_factory=RenderJobs)

    @model_validator(mode="before")
    @classmethod
    def _share_means_fixed_share(cls, data: Any) -> Any:
        # A workload written before prefix reuse was modelled gives a measured cached
        # share; it meant "every turn evaluates the rest", so keep that meaning.
        if isinstance(data, dict) and "prompt_cached_share" in data and "prompt_reuse" not in data:
            return {**data, "prompt_reuse": "fixed_share"}
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.prompt_reuse == "prefix" and self.prompt_cached_share > 0:
            raise ValueError(
                "prompt_cached_share applies to prompt_reuse: fixed_share; with "
                "prompt_reuse: prefix set new_prompt_tokens and prefix_cache_miss_share"
            )
        if self.tts_cache_hit_rate + self.animation_cache_hit_rate > 1:
            raise ValueError(
                "tts_cache_hit_rate + animation_cache_hit_rate exceed 1 "
                "(a sentence hits at most one of the two caches)"
            )
        busy_s = self.utterance_s.mean + self.reply_speech_s_mean + NOMINAL_RESPONSE_S
        if self.cycle_s - busy_s < MIN_THINK_S:
            raise ValueError(
                f"turns_per_min={self.turns_per_min:g} gives {self.cycle_s:.1f} s per turn, "
                f"but speaking, waiting and listening already take {busy_s:.1f} s; lower "
                "turns_per_min or shorten utterance_s / reply_tokens"
            )
        return self

    @property
    def cycle_s(self) -> float:
        """Mean length of one turn, think time included."""
        return 60.0 / self.turns_per_min

    @property
    def reply_speech_s_mean(self) -> float:
        """Mean length of a reply's speech, in seconds."""
        return self.reply_tokens.mean * self.speech_s_per_token

    @property
    def think_s_mean(self) -> float:
        """Mean think time that makes a turn last :attr:`cycle_s` on average."""
        return self.cycle_s - self.utterance_s.mean - self.reply_speech_s_mean - NOMINAL_RESPONSE_S

    @property
    def full_prompt_share(self) -> float:
        """``prefix`` only: share of turns that evaluate the whole history (cache evicted)."""
        return (1 - 1 / self.conversation_turns) * self.prefix_cache_miss_share

    @property
    def evaluated_prompt_tokens_mean(self) -> float:
        """Mean prompt tokens the LLM evaluates per turn (prefill work)."""
        if self.prompt_reuse == "fixed_share":
            return self.prompt_tokens.mean * (1 - self.prompt_cached_share)
        first = 1 / self.conversation_turns
        full = self.full_prompt_share
        return (
            first * self.first_prompt_tokens.mean
            + full * self.prompt_tokens.mean
            + (1 - first - full) * self.new_prompt_tokens.mean
        )

    def sample_evaluated_prompt_tokens(self, rng: random.Random) -> float:
        """One turn's evaluated prompt tokens, drawn as :attr:`prompt_reuse` says."""
        if self.prompt_reuse == "fixed_share":
            return self.prompt_tokens.sample(rng) * (1 - self.prompt_cached_share)
        u = rng.random()
        first = 1 / self.conversation_turns
        if u < first:
            return self.first_prompt_tokens.sample(rng)
        if u < first + self.full_prompt_share:
            return self.prompt_tokens.sample(rng)
        return self.new_prompt_tokens.sample(rng)

    @property
    def sentences_per_reply(self) -> float:
        """Expected sentences per reply (the first clause counts as one)."""
        rest = max(0.0, self.reply_tokens.mean - self.first_sentence_tokens.mean)
        return 1.0 + rest / self.sentence_tokens.mean

    @classmethod
    def default(cls) -> Self:
        """The shipped default workload (``data/workload.yaml``)."""
        text = resources.files("talkface.planner").joinpath("data/workload.yaml").read_text("utf-8")
        return validate_data(cls, parse_text(text, "workload.yaml"), "workload.yaml (package data)")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Self:
        """The workload in ``path``, or the default one when ``path`` is None.

        Raises:
            ConfigError: the file is missing, malformed or invalid (one line, names the field).
        """
        return cls.default() if path is None else load_model(cls, path)


class SLO(BaseModel):
    """The service level a plan must meet at its peak load.

    Attributes:
        ttff_p95_ms: 95th percentile of time to first frame.
        min_fps_share: a reply is *sustained* when it plays at no less than this share of
            the pipeline's fps (0.98: stalls add at most 2 % to its play time).
        sustained_turn_share: share of replies that must be sustained.
    """

    model_config = ConfigDict(extra="forbid")

    ttff_p95_ms: float = Field(1500.0, gt=0, le=60_000)
    min_fps_share: float = Field(0.98, gt=0, le=1)
    sustained_turn_share: float = Field(0.95, gt=0, le=1)
