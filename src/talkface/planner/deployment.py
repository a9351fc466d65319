"""A configuration to simulate: per stage, where it runs, how many replicas, how it batches.

Two shapes:

* a **CPU box** (:meth:`Deployment.cpu_box`): every engine is one worker thread on one
  machine, all of them sharing ``cpu_cores`` cores (``talkface serve`` on a small box),
  its embedded llama.cpp LLM letting replies take turns by sentence;
* a **cluster**: GPU stages run as replicas on GPU cards (several replicas may share a
  card, see :mod:`talkface.planner.packing`), CPU stages on CPU capacity sized to stay
  uncontended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Self

from talkface.errors import ConfigError
from talkface.llm.base import LLMSettings
from talkface.planner.profile import Profile, Stage

DEFAULT_MAX_WAIT_MS = 5.0

LLMScheduling = Literal["continuous", "sentence_turns"]
"""How an LLM replica shares itself among replies: ``continuous`` batching per decoding
step (a vLLM-style server; with ``max_batch_size`` 1, one whole reply after another), or
``sentence_turns`` (the embedded llama.cpp LLM: one sequence at a time, replies taking
turns by sentence, see :mod:`talkface.planner.turns`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageConfig:
    """How one stage is deployed.

    Attributes:
        stage: the pipeline stage.
        device: ``"cpu"`` or a GPU name from the catalog.
        replicas: model copies (engine hosting); ignored for per-session stages.
        max_batch_size: most requests per batch (for the LLM: concurrent sequences).
        max_wait_ms: longest a batch waits to fill (not used by the LLM).
        cost_speed: speed of the stage's main calls relative to the profile's device.
        decode_speed: LLM only: speed of decoding steps relative to the profile's device.
        cards: for each replica, the shared GPU card it runs on (replicas on one card
            share it), or -1 when it has its device to itself; empty: all have their own.
        num_gpus: GPU share of one replica (Ray Serve's ``num_gpus``); 0 on CPU.
        scheduling: LLM only: see :data:`LLMScheduling`; ``sentence_turns`` needs
            ``max_batch_size`` 1.
        max_concurrent_batches: LLM with ``sentence_turns`` only: replies the engine hands
            the model at once to take turns (more wait in its queue).
    """

    stage: Stage
    device: str = "cpu"
    replicas: int = 1
    max_batch_size: int = 1
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    cost_speed: float = 1.0
    decode_speed: float = 1.0
    cards: tuple[int, ...] = ()
    num_gpus: float = 0.0
    scheduling: LLMScheduling = "continuous"
    max_concurrent_batches: int = 1

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"{self.stage}: replicas must be at least 1")
        if self.max_batch_size < 1:
            raise ValueError(f"{self.stage}: max_batch_size must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError(f"{self.stage}: max_wait_ms must not be negative")
        if self.cost_speed <= 0 or self.decode_speed <= 0:
            raise ValueError(f"{self.stage}: speeds must be positive")
        if self.cards and len(self.cards) != self.replicas:
            raise ValueError(f"{self.stage}: cards must name one card per replica")
        if self.max_concurrent_batches < 1:
            raise ValueError(f"{self.stage}: max_concurrent_batches must be at least 1")
        if self.scheduling == "sentence_turns" and (
            self.stage != "llm" or self.max_batch_size != 1
        ):
            raise ValueError(
                f"{self.stage}: sentence_turns is the LLM's scheduling without batched "
                "decoding (max_batch_size 1)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """A whole configuration.

    Attributes:
        stages: per profiled stage.
        cpu_cores: CPU-box mode: the cores every CPU stage shares (each engine needs its
            profile's ``threads`` while it runs). None in cluster mode, where CPU stages
            are sized to stay uncontended.
        card_count: GPU cards that hold more than one replica (shared by processor
            sharing in the simulation); card ids in ``StageConfig.cards`` count from 0.
    """

    stages: Mapping[Stage, StageConfig]
    cpu_cores: float | None = None
    card_count: int = 0
    card_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for stage, config in self.stages.items():
            if config.stage != stage:
                raise ValueError(f"stages[{stage!r}] holds the config of {config.stage!r}")
            if any(not -1 <= c < self.card_count for c in config.cards):
                raise ValueError(f"{stage}: a card id is outside 0..{self.card_count - 1}")
        if self.cpu_cores is not None and self.cpu_cores <= 0:
            raise ValueError("cpu_cores must be positive")

    @property
    def is_cpu_box(self) -> bool:
        """True when the stages share one box's CPU cores instead of GPUs."""
        return self.cpu_cores is not None

    def with_stage(self, config: StageConfig) -> Self:
        """A copy with one stage's config replaced."""
        return replace(self, stages={**self.stages, config.stage: config})

    @classmethod
    def cpu_box(
        cls,
        profile: Profile,
        *,
        batching: Mapping[Stage, tuple[int, float]] | None = None,
        cpu_cores: float | None = None,
        llm_scheduling: LLMScheduling | None = None,
    ) -> Self:
        """The deployment of ``talkface serve`` on the machine the profile was measured on.

        Args:
            profile: a CPU profile (every engine on ``cpu``).
            batching: per stage ``(max_batch_size, max_wait_ms)``; by default what the
                engine ran with when profiled, else its largest measured batch size and
                5 ms (the LLM: 1 sequence).
            cpu_cores: cores the engines share; default the profile's
                ``machine.cpu_cores - machine.reserved_cores``.
            llm_scheduling: default: ``sentence_turns`` as the embedded llama.cpp LLM runs
                (up to :class:`~talkface.llm.base.LLMSettings`' default
                ``max_concurrent_batches`` replies taking turns), or ``continuous`` when
                the LLM batches more than 1 sequence; ``continuous`` with 1 sequence is
                the sequential engine talkface had before replies took turns.

        Raises:
            ConfigError: the profile has GPU engines or no machine.
        """
        gpu = [s for s, e in profile.engines.items() if e.on_gpu]
        if gpu:
            raise ConfigError(f"a CPU box needs a CPU profile, but {', '.join(gpu)} ran on a GPU")
        if cpu_cores is None:
            if profile.machine is None:
                raise ConfigError("a CPU box plan needs the profile's machine (cpu_cores)")
            cpu_cores = profile.machine.engine_cores
        batching = batching or {}
        stages: dict[Stage, StageConfig] = {}
        for stage, engine in profile.engines.items():
            default_batch = engine.max_batch_size or (
                1 if stage == "llm" else engine.cost.batch_sizes[-1]
            )
            default_wait = DEFAULT_MAX_WAIT_MS if engine.max_wait_ms is None else engine.max_wait_ms
            max_batch, max_wait = batching.get(stage, (default_batch, default_wait))
            config = StageConfig(stage=stage, max_batch_size=max_batch, max_wait_ms=max_wait)
            if stage == "llm":
                config = _with_llm_scheduling(config, llm_scheduling)
            stages[stage] = config
        return cls(stages=stages, cpu_cores=cpu_cores)


def _with_llm_scheduling(config: StageConfig, scheduling: LLMScheduling | None) -> StageConfig:
    """The CPU box's LLM ``config`` with its scheduling (see :meth:`Deployment.cpu_box`)."""
    if scheduling is None:
        scheduling = "sentence_turns" if config.max_batch_size == 1 else "continuous"
    if scheduling == "continuous":
        return config
    # The shipped engine default, read from its one owner (not the environment).
    concurrent = LLMSettings.model_validate({}).batching.max_concurrent_batches
    return replace(config, scheduling=scheduling, max_concurrent_batches=concurrent)
