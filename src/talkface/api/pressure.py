"""How hard the server is pressed, sampled for the degradation ladder.

Every ``degradation.sample_interval_s`` the server reads four signals and feeds their
average over ``degradation.window_s`` to the runtime's
:class:`~talkface.degradation.DegradationLadder`:

* the median time live turns took from the end of the user's speech to their first
  frame, over the turns whose first frame came in the last
  ``degradation.first_frame_window_s`` (what users feel; the SLO is written in it);
* live requests waiting in the engines' queues (render jobs' offline requests left out:
  they wait by design);
* the share of live sessions' video frames that came late since the last sample
  (:class:`~talkface.api.sessions.FrameCounts`);
* this process's CPU time over wall time, as a share of the cores it may use.
"""

from __future__ import annotations

import asyncio
import collections
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from talkface.api.sessions import FrameCounts, SessionRegistry
from talkface.clock import Clock, MonotonicClock
from talkface.degradation import DegradationLadder, Pressure, StepChange
from talkface.runtime import Runtime

__all__ = ["PressureSampler", "usable_cores"]

_NS_PER_S = 1_000_000_000
_LONGEST_TURN_NS = 120 * _NS_PER_S
"""Turns that began longer ago than this before the window are not looked at."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class PressureSampler:
    """Reads the signals of one server and steps its ladder.

    Args:
        runtime: the engines (their live queues) and the ladder.
        sessions: the live sessions (their frames).
        clock: where time comes from (tests drive it by hand).
        cpu_time_s: this process's CPU seconds so far (tests pass their own).
        cores: the cores the CPU time is shared by.
    """

    def __init__(self, runtime: Runtime, sessions: SessionRegistry, *,
                 clock: Clock | None = None,
                 cpu_time_s: Callable[[], float] = time.process_time,
                 cores: int | None = None) -> None:
        self._runtime = runtime
        self._sessions = sessions
        self._clock = clock or MonotonicClock()
        self._cpu_time_s = cpu_time_s
        self._cores = cores or usable_cores()
        settings = runtime.ladder.settings
        samples = max(1, round(settings.window_s / settings.sample_interval_s))
        self._window: collections.deque[Pressure] = collections.deque(maxlen=samples)
        self._last: tuple[float, float, FrameCounts] | None = None  # wall s, CPU s, frames

    @property
    def ladder(self) -> DegradationLadder:
        """The ladder this sampler steps."""
        return self._runtime.ladder

    def sample(self) -> StepChange | None:
        """Read the signals once and let the ladder decide; the step it took, if any."""
        now_s = self._clock.now_ns() / _NS_PER_S
        cpu_s = self._cpu_time_s()
        frames = self._sessions.frames_seen()
        live_queue = sum(engine.live_queue_depth for engine in self._runtime.engines)
        last, self._last = self._last, (now_s, cpu_s, frames)
        if last is None:
            return None  # rates need two samples
        wall_s = max(now_s - last[0], 1e-6)
        shown = frames.shown - last[2].shown
        late = frames.late - last[2].late
        self._window.append(Pressure(
            first_frame_s=self._recent_first_frame_s(),
            live_queue_depth=float(live_queue),
            late_frame_ratio=min(1.0, late / shown) if shown > 0 else 0.0,
            cpu_fraction=(cpu_s - last[1]) / wall_s / self._cores,
        ))
        return self.ladder.observe(Pressure.mean(list(self._window)), now_s)

    def _recent_first_frame_s(self) -> float:
        """The median first-frame latency of the live turns whose first frame came in the
        last ``first_frame_window_s`` (0 with fewer than ``min_turns`` of them)."""
        settings = self.ladder.settings
        since_ns = self._clock.now_ns() - int(settings.first_frame_window_s * _NS_PER_S)
        latencies_s = []
        for session in self._sessions:
            for record in reversed(session.conversation.turns):
                shown_ns = record.trace.marks_ns.get("first_video_frame")
                if record.trace.origin_ns < since_ns - _LONGEST_TURN_NS:
                    break  # older turns' first frames came before the window too
                if shown_ns is not None and shown_ns >= since_ns and record.error is None:
                    latencies_s.append((shown_ns - record.trace.origin_ns) / _NS_PER_S)
        if len(latencies_s) < settings.min_turns:
            return 0.0
        return statistics.median(latencies_s)

    async def run(self, after: asyncio.Future[Any] | None = None) -> None:
        """Sample every ``degradation.sample_interval_s`` until cancelled (once ``after``,
        the server's warm-up, is done, whether it succeeded or not)."""
        if after is not None:
            await asyncio.wait([after])
        interval_ns = int(self.ladder.settings.sample_interval_s * _NS_PER_S)
        while True:
            self.sample()
            await self._clock.sleep(interval_ns)
