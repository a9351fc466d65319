"""Settings of the Ray Serve host (``talkface serve --engines ray``): one block per stage.

Plain pydantic, no Ray import: the settings tree loads everywhere. Field names follow
Ray Serve's own (``min_replicas``, ``max_replicas``, ``target_ongoing_requests``,
``max_ongoing_requests``, ``max_queued_requests``, ``num_cpus``, ``num_gpus``), so a value
reads the same here, in a Serve config and in Ray's docs.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

STAGE_DEPLOYMENTS = {
    "asr": "ASR",
    "llm": "LLM",
    "tts": "TTS",
    "animator": "Animator",
    "renderer": "Renderer",
}
"""Each engine stage's Serve deployment name (the planner and ``talkface deploy`` use these)."""


class DeploymentSettings(BaseModel):
    """How one stage's deployment is scaled, placed and protected.

    Attributes:
        min_replicas: fewest replicas (autoscaling lower bound).
        max_replicas: most replicas; equal to ``min_replicas`` turns autoscaling off.
        target_ongoing_requests: requests in flight per replica that autoscaling aims at.
        upscale_delay_s: how long load must stay high before a replica is added.
        downscale_delay_s: how long load must stay low before a replica is removed.
        max_ongoing_requests: requests one replica takes at once (its batches included).
        max_queued_requests: requests waiting for a replica beyond which new ones are
            refused at once (the caller sees ``Overloaded``, HTTP 503).
        num_cpus: CPUs one replica reserves (logical; fractions allowed).
        num_gpus: GPUs one replica reserves (fractions share a GPU).
        pool: machine pool: the replica needs the custom resource ``pool_<pool>``, which
            only that pool's nodes declare (``ray start --resources``).
        accelerator_type: Ray accelerator type the replica needs ("A10G", "T4"...).
        health_check_period_s: how often Serve checks a replica (a dead one is replaced).
    """

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(1, ge=1, le=1000)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(3.0, ge=0)
    downscale_delay_s: float = Field(30.0, ge=0)
    max_ongoing_requests: int = Field(16, ge=1)
    max_queued_requests: int = Field(64, ge=-1)
    num_cpus: float = Field(0.25, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    pool: str | None = None
    accelerator_type: str | None = None
    health_check_period_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self

    def deployment_options(self) -> dict[str, Any]:
        """These settings as keyword arguments of Serve's ``Deployment.options``."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.pool:
            actor["resources"] = {f"pool_{self.pool}": 1}
        if self.accelerator_type:
            actor["accelerator_type"] = self.accelerator_type
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": actor,
            "health_check_period_s": self.health_check_period_s,
        }
        if self.min_replicas == self.max_replicas:
            options["num_replicas"] = self.max_replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "initial_replicas": max(1, self.min_replicas),
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
            }
        return options


def _deployment(**values: Any) -> Any:
    return lambda: DeploymentSettings(**values)


class ServingSettings(BaseModel):
    """Where the engines run, and how their Serve deployments are shaped.

    Attributes:
        engines: ``local`` (in this process, the default) or ``ray`` (one Ray Serve
            deployment per stage; this process keeps the sessions).
        ray_address: the Ray cluster to join ("auto", "127.0.0.1:6379"); None starts a
            local Ray for this process.
        app_name: the Serve application that holds the engine deployments. If it already
            runs on the cluster (``talkface deploy``), the gateway uses it as it is.
        retry_s: how long an idempotent request (ASR, TTS, animation) is retried while a
            failed replica is replaced.
        asr, llm, tts, animator, renderer: each stage's deployment.
    """

    model_config = ConfigDict(extra="forbid")

    engines: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    app_name: str = "talkface"
    retry_s: float = Field(15.0, ge=0)
    asr: DeploymentSettings = Field(default_factory=_deployment(max_ongoing_requests=8))
    llm: DeploymentSettings = Field(default_factory=_deployment(
        max_ongoing_requests=4, target_ongoing_requests=1.0, num_cpus=0.5))
    tts: DeploymentSettings = Field(default_factory=_deployment(max_ongoing_requests=8))
    animator: DeploymentSettings = Field(default_factory=_deployment(max_ongoing_requests=16))
    renderer: DeploymentSettings = Field(default_factory=_deployment(
        max_ongoing_requests=1, max_queued_requests=8))

    def stage(self, name: str) -> DeploymentSettings:
        """The deployment settings of stage ``name`` ("asr", "llm"...)."""
        return getattr(self, name)
