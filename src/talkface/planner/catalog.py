"""The GPU catalog: which GPUs can be rented, how big and fast they are, what they cost.

The default catalog ships as package data (``talkface/planner/data/gpus.yaml``, every
number an estimate with its basis in the file's comments); ``talkface plan --gpus FILE``
replaces it with the user's own.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from talkface.errors import ConfigError
from talkface.planner._loading import load_model, parse_text, validate_data

CATALOG_FORMAT = "talkface.gpus/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class GPUKind(BaseModel):
    """One rentable GPU.

    Attributes:
        memory_gb: GPU memory.
        memory_bandwidth_gbps: memory bandwidth; scales memory-bound work (LLM decoding).
        relative_speed: compute-bound inference speed relative to the catalog's
            ``reference_gpu``; scales compute-bound work.
        on_demand_usd_per_h: price of one GPU per hour, on demand.
        spot_usd_per_h: price of one GPU per hour on spot / preemptible capacity.
        spot_interruptions_per_h: how often a spot GPU is taken back, per hour.
        ray_accelerator_type: the node label Ray uses for it, or null to not pin.
    """

    model_config = ConfigDict(extra="forbid")

    memory_gb: float = Field(gt=0, le=4096)
    memory_bandwidth_gbps: float = Field(gt=0)
    relative_speed: float = Field(gt=0, le=1000)
    on_demand_usd_per_h: float = Field(gt=0)
    spot_usd_per_h: float = Field(gt=0)
    spot_interruptions_per_h: float = Field(0.1, ge=0, le=10)
    ray_accelerator_type: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.spot_usd_per_h > self.on_demand_usd_per_h:
            raise ValueError(
                f"spot_usd_per_h={self.spot_usd_per_h:g} is above "
                f"on_demand_usd_per_h={self.on_demand_usd_per_h:g}"
            )
        return self

    @property
    def memory_mb(self) -> float:
        """The card's memory in MB (1 GB = 1000 MB)."""
        return self.memory_gb * 1000.0


class GPUCatalog(BaseModel):
    """The GPUs a plan may use, and the price of CPU capacity.

    Attributes:
        format: always ``"talkface.gpus/1"``.
        reference_gpu: the GPU whose ``relative_speed`` is 1.0.
        vcpu_on_demand_usd_per_h: price of one vCPU per hour (CPU stages, CPU boxes).
        vcpu_spot_usd_per_h: the same on spot capacity.
        gpus: by name (the names profiles and ``--gpus`` files use).
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["talkface.gpus/1"] = CATALOG_FORMAT
    reference_gpu: str
    vcpu_on_demand_usd_per_h: float = Field(0.045, gt=0)
    vcpu_spot_usd_per_h: float = Field(0.018, gt=0)
    gpus: dict[str, GPUKind] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in self.gpus:
            if not _NAME.match(name):
                raise ValueError(f"GPU name {name!r} may only use letters, digits, '.', '_', '-'")
        if self.reference_gpu not in self.gpus:
            raise ValueError(
                f"reference_gpu {self.reference_gpu!r} is not one of the gpus "
                f"({', '.join(self.gpus)})"
            )
        if self.vcpu_spot_usd_per_h > self.vcpu_on_demand_usd_per_h:
            raise ValueError("vcpu_spot_usd_per_h is above vcpu_on_demand_usd_per_h")
        return self

    @classmethod
    def default(cls) -> Self:
        """The catalog shipped with talkface."""
        text = resources.files("talkface.planner").joinpath("data/gpus.yaml").read_text("utf-8")
        return validate_data(cls, parse_text(text, "gpus.yaml"), "gpus.yaml (package data)")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Self:
        """The catalog in ``path``, or the default one when ``path`` is None.

        Raises:
            ConfigError: the file is missing, malformed or invalid (one line, names the field).
        """
        return cls.default() if path is None else load_model(cls, path)

    def get(self, name: str) -> GPUKind:
        """The GPU called ``name``.

        Raises:
            ConfigError: no such GPU in this catalog.
        """
        try:
            return self.gpus[name]
        except KeyError:
            raise ConfigError(
                f"GPU {name!r} is not in the catalog; known: {', '.join(self.gpus)} "
                "(add it to a --gpus file)"
            ) from None

    def speed_ratio(self, measured_on: str, run_on: str, bound: str) -> float:
        """How much faster work measured on ``measured_on`` runs on ``run_on``.

        Compute-bound work scales with ``relative_speed``, memory-bound work with
        ``memory_bandwidth_gbps``.
        """
        src, dst = self.get(measured_on), self.get(run_on)
        if bound == "memory":
            return dst.memory_bandwidth_gbps / src.memory_bandwidth_gbps
        return dst.relative_speed / src.relative_speed
