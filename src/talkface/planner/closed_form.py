"""Closed-form queueing results: the simulator's test oracle and the planner's first guess.

All times are in seconds; ``arrival_rate`` and ``service_rate`` are per second.
"""

from __future__ import annotations

import math


def _check_stable(utilisation: float) -> None:
    if not 0 <= utilisation < 1:
        raise ValueError(f"the queue is unstable: utilisation {utilisation:.3f} is not below 1")


def mm1_mean_wait_s(arrival_rate: float, service_rate: float) -> float:
    """M/M/1 mean time in queue (before service starts): ``rho / (mu - lambda)``."""
    rho = arrival_rate / service_rate
    _check_stable(rho)
    return rho / (service_rate - arrival_rate)


def mg1_mean_wait_s(arrival_rate: float, mean_service_s: float, service_cv: float) -> float:
    """M/G/1 mean time in queue (Pollaczek-Khinchine).

    ``W = rho * E[S] * (1 + cv^2) / (2 * (1 - rho))``; cv = 1 gives M/M/1, cv = 0 M/D/1.
    """
    rho = arrival_rate * mean_service_s
    _check_stable(rho)
    return rho * mean_service_s * (1 + service_cv**2) / (2 * (1 - rho))


def md1_mean_wait_s(arrival_rate: float, service_s: float) -> float:
    """M/D/1 mean time in queue: ``rho * S / (2 * (1 - rho))``."""
    return mg1_mean_wait_s(arrival_rate, service_s, 0.0)


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (Erlang C).

    Args:
        servers: c.
        offered_load: lambda / mu (must be below ``servers``).
    """
    if servers < 1:
        raise ValueError("servers must be at least 1")
    _check_stable(offered_load / servers)
    # Erlang B by its stable recursion, then C from B.
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    rho = offered_load / servers
    return b / (1 - rho + rho * b)


def mgc_mean_wait_s(
    arrival_rate: float,
    mean_service_s: float,
    servers: int,
    *,
    service_cv: float = 1.0,
    arrival_cv: float = 1.0,
) -> float:
    """Mean time in queue of a G/G/c queue (Allen-Cunneen approximation).

    Exact for M/M/c (both cv 1); for c = 1 with Poisson arrivals it is Pollaczek-Khinchine.
    """
    offered = arrival_rate * mean_service_s
    wait_mmc = erlang_c(servers, offered) * mean_service_s / (servers - offered)
    return wait_mmc * (arrival_cv**2 + service_cv**2) / 2


def power_of_two_mean_wait_s(
    utilisation: float, mean_service_s: float, service_cv: float = 1.0
) -> float:
    """Mean wait with many servers, each request sent to the shorter of two random queues.

    The supermarket model (Mitzenmacher, d = 2): the mean time in system is
    ``S * sum_{i>=1} rho^(2^i - 2)`` for exponential service (the i = 1 term is the
    service itself); the wait is scaled by ``(1 + cv^2) / 2`` for other service-time
    spreads, as Pollaczek-Khinchine does.
    """
    _check_stable(utilisation)
    total, i = 0.0, 2
    while True:
        term = utilisation ** (2**i - 2)
        total += term
        if term < 1e-9 or i > 60:
            break
        i += 1
    return total * mean_service_s * (1 + service_cv**2) / 2


def wait_p95_s(mean_wait_s: float, wait_probability: float) -> float:
    """95th percentile of the wait when waits are exponential given that one waits.

    Used for rough per-stage tails: ``P(W > t) = p * exp(-t * p / mean)``.
    """
    if mean_wait_s <= 0 or wait_probability <= 0.05:
        return 0.0
    conditional_mean = mean_wait_s / wait_probability
    return conditional_mean * math.log(wait_probability / 0.05)


def interrupted_segment_s(work_s: float, failures_per_s: float, restart_s: float) -> float:
    """Expected wall time to finish ``work_s`` of uninterrupted work under random failures.

    A failure (Poisson, ``failures_per_s``) loses the segment's progress and costs
    ``restart_s`` before it starts again: ``E[T] = (1/r + R) * (exp(r * w) - 1)``.
    """
    if failures_per_s == 0:
        return work_s
    r = failures_per_s
    return (1 / r + restart_s) * math.expm1(r * work_s)
