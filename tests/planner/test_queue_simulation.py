"""The discrete-event queue against queueing theory: M/M/1 and M/D/1 mean waits within 5 %."""

from __future__ import annotations

import random

import pytest

from talkface.planner.closed_form import md1_mean_wait_s, mm1_mean_wait_s
from talkface.planner.des import simulate_queue

# Hundreds of thousands of simulated customers per case (seconds of CPU): kept out of the
# fast `-m unit` loop; `make test` runs them.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _exponential(rng: random.Random, _batch: int) -> float:
    return rng.expovariate(1.0)


def _deterministic(_rng: random.Random, _batch: int) -> float:
    return 1.0


# Customers per case: the sample mean of waits in a busy queue converges slowly (its
# variance grows like 1 / (1 - rho)^4), so rho = 0.8 with exponential service needs the
# most to keep 5 % well above the noise.
@pytest.mark.parametrize(
    ("rho", "customers"), [(0.5, 150_000), (0.8, 400_000)], ids=["rho=0.5", "rho=0.8"]
)
def test_mm1_mean_wait_matches_formula(rho: float, customers: int) -> None:
    result = simulate_queue(arrival_rate=rho, service=_exponential, customers=customers, seed=3)
    assert result.mean_wait_s == pytest.approx(mm1_mean_wait_s(rho, 1.0), rel=0.05)
    assert result.utilisation == pytest.approx(rho, rel=0.02)
    assert result.mean_batch_size == 1.0


@pytest.mark.parametrize("rho", [0.5, 0.8], ids=["rho=0.5", "rho=0.8"])
def test_md1_mean_wait_matches_pollaczek_khinchine(rho: float) -> None:
    result = simulate_queue(arrival_rate=rho, service=_deterministic, customers=100_000, seed=3)
    assert result.mean_wait_s == pytest.approx(md1_mean_wait_s(rho, 1.0), rel=0.05)
