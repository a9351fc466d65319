"""Where time comes from. Sessions take a clock so that tests can drive time by hand."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

_NS_PER_S = 1_000_000_000


class Clock(Protocol):
    """Where time comes from, and how to wait for it; tests inject a manual clock."""

    def now_ns(self) -> int:
        """The current time in nanoseconds (any origin; only differences matter)."""
        ...

    async def sleep(self, delay_ns: int) -> None:
        """Wait ``delay_ns`` of this clock's time (at once when not positive)."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic_ns``, waiting with ``asyncio.sleep``."""

    def now_ns(self) -> int:
        """``time.monotonic_ns()``."""
        return time.monotonic_ns()

    async def sleep(self, delay_ns: int) -> None:
        """Sleep on the event loop for ``delay_ns``."""
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / _NS_PER_S)


class ManualClock:
    """Virtual time for tests: it moves only when told to, or when someone sleeps.

    A sleeper does not wait: the clock jumps to its wake-up time (if that is later than
    now) and the sleeper yields once to the event loop, so code that paces itself on the
    clock runs in microseconds while seeing the times it would see in real life.
    """

    def __init__(self, start_ns: int = 0) -> None:
        self._now_ns = start_ns

    def now_ns(self) -> int:
        """The virtual time."""
        return self._now_ns

    def advance(self, delta_ns: int) -> None:
        """Move time forward by ``delta_ns``."""
        self._now_ns += delta_ns

    async def sleep(self, delay_ns: int) -> None:
        """Jump to ``now + delay_ns`` and let other tasks run once."""
        self._now_ns = max(self._now_ns, self._now_ns + delay_ns)
        await asyncio.sleep(0)
