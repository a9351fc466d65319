"""Packing never puts more on a card than its usable memory, and fails clearly."""

from __future__ import annotations

import random

import pytest

from talkface.planner.catalog import GPUCatalog, GPUKind
from talkface.planner.packing import PackingError, Replica, pack

pytestmark = pytest.mark.unit

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

A10 = GPUCatalog.default().gpus["A10"]  # 24 GB, 21.6 GB usable with 10 % headroom


def _check(replicas: list[Replica], gpu: GPUKind) -> None:
    packing = pack(replicas, gpu, gpu_name="A10")
    placed = [(r.stage, r.index) for card in packing.cards for r in card.replicas]
    assert sorted(placed) == sorted((r.stage, r.index) for r in replicas)
    for card in packing.cards:
        assert card.memory_used_mb <= card.usable_memory_mb + 1e-6
        assert card.usable_memory_mb <= gpu.memory_mb
        assert card.share_used <= 1.0 + 1e-9
        for replica, share in zip(card.replicas, card.num_gpus, strict=True):
            # Ray places by num_gpus alone: each share must cover its memory.
            assert share * card.usable_memory_mb >= replica.memory_mb - 1e-6


_STAGES = ("asr", "tts", "animator", "llm")


@hypothesis.given(
    st.lists(
        st.tuples(
            st.sampled_from(_STAGES),
            st.floats(min_value=1.0, max_value=21_600.0),
            st.floats(min_value=0.0, max_value=1.0),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
@hypothesis.settings(max_examples=150, deadline=None)
def test_packing_never_exceeds_a_cards_memory(
    items: list[tuple[str, float, float, bool]],
) -> None:
    replicas = [
        Replica(stage=stage, index=i, memory_mb=memory, compute_share=share, whole_card=whole)
        for i, (stage, memory, share, whole) in enumerate(items)
    ]
    _check(replicas, A10)


def test_packing_random_mixes_without_hypothesis() -> None:
    rng = random.Random(11)
    for _ in range(200):
        replicas = [
            Replica(
                stage=rng.choice(_STAGES),
                index=i,
                memory_mb=rng.uniform(1, 21_600),
                compute_share=rng.random() * 0.9,
            )
            for i in range(rng.randint(1, 30))
        ]
        _check(replicas, A10)


def test_small_replicas_share_cards() -> None:
    replicas = [
        Replica(stage="asr", index=i, memory_mb=3_000, compute_share=0.15) for i in range(4)
    ]
    packing = pack(replicas, A10, gpu_name="A10")
    assert len(packing.cards) == 1
    assert packing.num_gpus["asr"] == pytest.approx(0.18)


def test_whole_card_replicas_do_not_share() -> None:
    replicas = [
        Replica(stage="llm", index=i, memory_mb=1_000, compute_share=0.1, whole_card=True)
        for i in range(3)
    ]
    assert len(pack(replicas, A10, gpu_name="A10").cards) == 3


def test_a_replica_bigger_than_any_card_fails_clearly() -> None:
    too_big = Replica(stage="llm", index=0, memory_mb=30_000, compute_share=0.5)
    with pytest.raises(PackingError) as caught:
        pack([too_big], A10, gpu_name="A10")
    message = str(caught.value)
    assert "llm" in message and "A10" in message and "30.0 GB" in message
    assert "\n" not in message
