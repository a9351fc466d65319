"""Which replicas share a GPU card: bin packing by memory and compute share.

Ray Serve places replicas by their ``num_gpus`` fraction alone; it knows nothing of
memory. So each replica's fraction is made to cover both what it needs of the card's
usable memory (the card's memory less a headroom, 10 % by default) and of its compute
(its expected busy share over the card's utilisation cap). Then any placement whose
fractions sum to at most 1 per card, ours or Ray's, never exceeds a card's memory.
The packing itself is first-fit decreasing on those fractions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from talkface.errors import ConfigError
from talkface.planner.catalog import GPUKind
from talkface.planner.profile import Stage

DEFAULT_MEMORY_HEADROOM = 0.10
DEFAULT_UTILISATION_CAP = 0.85
_GRAIN = 100  # num_gpus fractions are rounded up to 1/100 of a card


class PackingError(ConfigError):
    """A replica cannot fit on the GPU it was given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Replica:
    """One replica to place.

    Attributes:
        stage: its stage.
        index: its number within the stage.
        memory_mb: GPU memory it holds (model + per-request memory at its batch size).
        compute_share: expected busy share of a whole card at the planned load.
        whole_card: True for servers that take a whole card (an LLM server preallocates
            most of the GPU's memory for its KV cache).
        min_share: smallest ``num_gpus`` to give it (to limit how many replicas share
            its card, which slows them all).
    """

    stage: Stage
    index: int
    memory_mb: float
    compute_share: float
    whole_card: bool = False
    min_share: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    """One GPU card and the replicas on it."""

    index: int
    gpu: str
    replicas: tuple[Replica, ...]
    num_gpus: tuple[float, ...]
    memory_mb: float
    usable_memory_mb: float

    @property
    def memory_used_mb(self) -> float:
        """GPU memory the card's replicas hold, in MB."""
        return sum(r.memory_mb for r in self.replicas)

    @property
    def share_used(self) -> float:
        """Share of the card handed out as ``num_gpus`` (1.0 is the whole card)."""
        return sum(self.num_gpus)

    @property
    def compute_used(self) -> float:
        """Compute share the card's replicas use (1.0 is the whole card)."""
        return sum(r.compute_share for r in self.replicas)


@dataclass(frozen=True, slots=True, kw_only=True)
class Packing:
    """The cards of one GPU kind and each stage's ``num_gpus`` per replica."""

    gpu: str
    cards: tuple[Card, ...]
    num_gpus: dict[Stage, float]


def num_gpus_fraction(
    replica: Replica,
    gpu: GPUKind,
    *,
    gpu_name: str,
    memory_headroom: float = DEFAULT_MEMORY_HEADROOM,
    utilisation_cap: float = DEFAULT_UTILISATION_CAP,
) -> float:
    """The ``num_gpus`` a replica needs on ``gpu``: max of its memory and compute shares.

    Raises:
        PackingError: the replica's memory does not fit the card's usable memory.
    """
    usable_mb = gpu.memory_mb * (1 - memory_headroom)
    if replica.memory_mb > usable_mb:
        raise PackingError(
            f"a {replica.stage} replica needs {replica.memory_mb / 1000:.1f} GB but a "
            f"{gpu_name} has {usable_mb / 1000:.1f} GB usable ({gpu.memory_gb:g} GB less "
            f"{memory_headroom:.0%} headroom); use a GPU with more memory, a smaller "
            "max_batch_size or a smaller model"
        )
    if replica.whole_card:
        return 1.0
    share = max(
        replica.memory_mb / usable_mb, replica.compute_share / utilisation_cap, replica.min_share
    )
    return min(1.0, math.ceil(share * _GRAIN - 1e-9) / _GRAIN)


def pack(
    replicas: Sequence[Replica],
    gpu: GPUKind,
    *,
    gpu_name: str,
    memory_headroom: float = DEFAULT_MEMORY_HEADROOM,
    utilisation_cap: float = DEFAULT_UTILISATION_CAP,
    first_index: int = 0,
) -> Packing:
    """Place replicas on as few cards of one kind as first-fit decreasing finds.

    Args:
        replicas: what to place (all on this GPU kind).
        gpu: the card.
        gpu_name: its catalog name (for messages and the result).
        memory_headroom: share of each card's memory never planned for.
        utilisation_cap: most busy share planned on one card.
        first_index: number of the first card (cards of several kinds count on).

    Raises:
        PackingError: a replica cannot fit on an empty card.
    """
    if not 0 <= memory_headroom < 1:
        raise ValueError("memory_headroom must be in [0, 1)")
    if not 0 < utilisation_cap <= 1:
        raise ValueError("utilisation_cap must be in (0, 1]")
    usable_mb = gpu.memory_mb * (1 - memory_headroom)
    sized = [
        (
            num_gpus_fraction(
                r,
                gpu,
                gpu_name=gpu_name,
                memory_headroom=memory_headroom,
                utilisation_cap=utilisation_cap,
            ),
            r,
        )
        for r in replicas
    ]
    sized.sort(key=lambda item: (-item[0], -item[1].memory_mb, item[1].stage, item[1].index))
    bins: list[tuple[list[float], list[Replica]]] = []
    for share, replica in sized:
        for shares, placed in bins:
            fits_share = sum(shares) + share <= 1.0 + 1e-9
            fits_memory = sum(p.memory_mb for p in placed) + replica.memory_mb <= usable_mb
            if fits_share and fits_memory:
                shares.append(share)
                placed.append(replica)
                break
        else:
            bins.append(([share], [replica]))
    cards = tuple(
        Card(
            index=first_index + i,
            gpu=gpu_name,
            replicas=tuple(placed),
            num_gpus=tuple(shares),
            memory_mb=gpu.memory_mb,
            usable_memory_mb=usable_mb,
        )
        for i, (shares, placed) in enumerate(bins)
    )
    num_gpus: dict[Stage, float] = {}
    for share, replica in sized:
        num_gpus[replica.stage] = max(num_gpus.get(replica.stage, 0.0), share)
    return Packing(gpu=gpu_name, cards=cards, num_gpus=num_gpus)
