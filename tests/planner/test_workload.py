"""Workload distributions and derived quantities."""

from __future__ import annotations

import random
import statistics

import pytest
from pydantic import ValidationError

from talkface.planner.workload import Distribution, Workload

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("shape", ["lognormal", "gamma"])
def test_distributions_have_the_mean_and_spread_asked_for(shape: str) -> None:
    dist = Distribution(mean=4.0, cv=0.5, shape=shape)
    rng = random.Random(1)
    draws = [dist.sample(rng) for _ in range(40_000)]
    assert statistics.fmean(draws) == pytest.approx(4.0, rel=0.02)
    assert statistics.pstdev(draws) / statistics.fmean(draws) == pytest.approx(0.5, rel=0.05)


def test_constant_and_exponential_are_checked() -> None:
    assert Distribution(mean=2.0, cv=0, shape="constant").sample(random.Random(0)) == 2.0
    with pytest.raises(ValidationError, match="cv 1"):
        Distribution(mean=2.0, cv=0.5, shape="exponential")


def test_think_time_fills_the_turn() -> None:
    wl = Workload()
    busy = wl.utterance_s.mean + wl.reply_speech_s_mean + 1.0
    assert wl.think_s_mean == pytest.approx(wl.cycle_s - busy)
    assert wl.sentences_per_reply > 1


def test_caches_cannot_exceed_all_sentences() -> None:
    with pytest.raises(ValidationError, match="exceed 1"):
        Workload(tts_cache_hit_rate=0.7, animation_cache_hit_rate=0.5)
