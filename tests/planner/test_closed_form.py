"""The closed-form queueing formulas: they agree where they overlap, refuse an unstable
queue, and the preemption formula matches a Monte Carlo run.

The discrete-event simulator is checked against them in test_queue_simulation.py.
"""

from __future__ import annotations

import math
import random

import pytest

from talkface.planner.closed_form import (
    erlang_c,
    interrupted_segment_s,
    md1_mean_wait_s,
    mg1_mean_wait_s,
    mgc_mean_wait_s,
    mm1_mean_wait_s,
    power_of_two_mean_wait_s,
)

pytestmark = pytest.mark.unit


def test_formulas_agree_where_they_overlap() -> None:
    assert mg1_mean_wait_s(0.7, 1.0, 1.0) == pytest.approx(mm1_mean_wait_s(0.7, 1.0))
    assert mgc_mean_wait_s(0.7, 1.0, 1) == pytest.approx(mm1_mean_wait_s(0.7, 1.0))
    assert erlang_c(1, 0.7) == pytest.approx(0.7)
    # M/D/1 waits half as long as M/M/1.
    assert md1_mean_wait_s(0.6, 1.0) == pytest.approx(mm1_mean_wait_s(0.6, 1.0) / 2)
    # Two choices beat one queue per server by far at high load.
    assert power_of_two_mean_wait_s(0.9, 1.0) < mm1_mean_wait_s(0.9, 1.0) / 3


def test_unstable_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="unstable"):
        mm1_mean_wait_s(1.0, 1.0)


def test_interrupted_segment_matches_monte_carlo() -> None:
    rng = random.Random(5)
    work_s, rate, restart_s = 600.0, 1 / 900.0, 60.0
    total = 0.0
    for _ in range(40_000):
        while (failure := rng.expovariate(rate)) < work_s:
            total += failure + restart_s
        total += work_s
    expected = interrupted_segment_s(work_s, rate, restart_s)
    assert total / 40_000 == pytest.approx(expected, rel=0.03)
    assert interrupted_segment_s(work_s, 0.0, restart_s) == work_s
    assert expected > work_s * math.exp(0)  # failures only ever cost time
