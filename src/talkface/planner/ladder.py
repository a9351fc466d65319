"""The degradation ladder in simulated time: the server's own :mod:`talkface.degradation`.

With ``SimOptions.degradation`` set, the simulator runs a
:class:`~talkface.degradation.DegradationLadder` on simulated time, as
:mod:`talkface.api.pressure` runs it on the wall clock: every ``sample_interval_s`` it
reads four signals, averages them over ``window_s`` and lets the ladder step.

The signals, from what the simulation knows:

* ``first_frame_s``: the median time to first frame (as the simulation measures TTFF) of
  the turns whose first frame was shown in the last ``first_frame_window_s``, 0 with
  fewer than ``min_turns`` of them (the server counts only the turns of sessions still
  live; here an ended session's turns stay in the window);
* ``live_queue_depth``: requests waiting in the engine stages' queues (a request in a
  batch or taking its turn on the LLM runs; per-session stages have no queue);
* ``late_frame_ratio``: frames of live sessions held because a reply's next chunk was
  not ready (playback stalls, at the session's frame rate), over every frame the live
  sessions showed (listening and idle frames count as shown and are never late);
* ``cpu_fraction``: on a CPU box, the busy cores of the shared processor pool plus the
  live sessions' overhead cores, over the box's engine cores (a saturated box reads
  1.0); 0 on a cluster, whose CPU stages are sized to stay uncontended.

The rungs, as the simulator applies them:

* ``shorter_replies``: a reply that starts while it is taken is capped at
  ``short_reply_tokens`` tokens: its sentences up to the cap are spoken, the unfinished
  one is generated to the cap and dropped (a first sentence longer than the cap is
  spoken cut), as :class:`~talkface.llm.guard.ReplyGuard` does;
* ``lower_fps``: a session that starts while it is taken runs at ``reduced_fps``: fewer
  frames to animate and encode, for its whole life;
* ``small_llm_only``: nothing (the simulator has one LLM tier);
* ``refuse_sessions``: a session that would start is refused and its user tries again
  ``retry_after_s`` later (a refused *attempt*, counted); live sessions go on.

Sessions start and end only with the ladder on: each simulated user then holds a series
of sessions of ``Workload.conversation_turns`` turns on average (a new session starts
after the last one's last turn and think time); without the ladder a user's one session
lasts the whole run.
"""

from __future__ import annotations

import collections
import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import simpy

from talkface.degradation import (
    DegradationLadder,
    DegradationSettings,
    Pressure,
    Step,
    StepChange,
)

_SERVER_LOG = logging.getLogger("talkface.degradation")

Counted = Literal["started", "reduced", "refused", "capped"]
"""What the simulated server counts: sessions started, started at the reduced frame rate,
session starts refused, replies capped."""

__all__ = ["FrameMeter", "LadderReport", "LadderStep", "SimulatedLadder", "capped_reply"]


def capped_reply(boundaries: list[int], cap_tokens: int) -> tuple[list[int], int]:
    """A reply capped at ``cap_tokens``: the token counts the LLM generates to (sentence
    ends, and the cap when an unfinished sentence is dropped there), and how many of those
    sentences are spoken."""
    if boundaries[-1] <= cap_tokens:
        return boundaries, len(boundaries)
    spoken = [b for b in boundaries if b <= cap_tokens]
    if not spoken:  # only a first sentence longer than the budget is handed on unfinished
        return [cap_tokens], 1
    tail = [cap_tokens] if spoken[-1] < cap_tokens else []
    return spoken + tail, len(spoken)


class FrameMeter:
    """Video frames of the live sessions: shown (every tick of every live session) and
    late (ticks a reply stalled on)."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.late = 0.0
        self._shown = 0.0
        self._fps = 0.0  # summed over live sessions
        self._last_s = env.now

    def live(self, fps: float) -> None:
        """A session of ``fps`` starts (negative: one ends)."""
        self._advance()
        self._fps += fps

    def stalled(self, seconds: float, fps: float) -> None:
        """A reply played at ``fps`` stalled ``seconds`` for its next chunk."""
        self.late += seconds * fps

    @property
    def shown(self) -> float:
        """Frames the live sessions have shown so far."""
        self._advance()
        return self._shown

    def _advance(self) -> None:
        now = self.env.now
        self._shown += (now - self._last_s) * self._fps
        self._last_s = now


@dataclass(frozen=True, slots=True, kw_only=True)
class LadderStep:
    """One step the simulated ladder took, ``at_s`` seconds after the measured window
    began (negative: during the warm-up)."""

    at_s: float
    change: StepChange


@dataclass(frozen=True, slots=True, kw_only=True)
class LadderReport:
    """What the ladder did in a simulation.

    Attributes:
        order: the rungs; level ``i`` has the first ``i`` taken.
        level_s: seconds of the measured window spent at each level (0: none taken).
        steps: every step taken (down and up), warm-up included.
        sessions_started: sessions started in the measured window.
        reduced_fps_sessions: of those, started at the reduced frame rate.
        refused_attempts: session starts refused in the measured window.
        capped_replies: replies cut by ``shorter_replies`` in the measured window.
        peak_ratios: the highest each signal rose, as a ratio to its limit, in the
            measured window (averaged over ``window_s``, as the ladder saw it), by name:
            which signals pressed the box.
    """

    order: tuple[str, ...]
    level_s: tuple[float, ...]
    steps: tuple[LadderStep, ...]
    sessions_started: int
    reduced_fps_sessions: int
    refused_attempts: int
    capped_replies: int
    peak_ratios: dict[str, float]

    @property
    def max_level(self) -> int:
        """The lowest rung reached in the measured window (0: never stepped down)."""
        return max((i for i, s in enumerate(self.level_s) if s > 0), default=0)

    def level_share(self, level: int) -> float:
        """Share of the measured window spent at ``level``."""
        total = sum(self.level_s)
        return self.level_s[level] / total if total > 0 else 0.0


class SimulatedLadder:
    """The server's ladder fed by simulated signals (see the module docstring).

    Args:
        env: the simulation.
        settings: the ladder's settings (``enabled: false`` samples and never steps).
        queue_depth: requests waiting in the engine queues now.
        busy_core_s: CPU core-seconds the engines have used so far (None: no CPU signal).
        overhead_cores: CPU cores the live sessions cost outside the engines now.
        cores: the cores ``cpu_fraction`` is a share of.
        frames: the live sessions' frames.

    The simulated turns tell it of their first frames (:meth:`first_frame`).
    """

    def __init__(
        self,
        env: simpy.Environment,
        settings: DegradationSettings,
        *,
        queue_depth: Callable[[], float],
        busy_core_s: Callable[[], float] | None,
        overhead_cores: Callable[[], float],
        cores: float,
        frames: FrameMeter,
    ) -> None:
        self.env = env
        self.settings = settings
        self.ladder = DegradationLadder(settings)
        self._queue_depth = queue_depth
        self._busy_core_s = busy_core_s
        self._overhead_cores = overhead_cores
        self._cores = cores
        self._frames = frames
        samples = max(1, round(settings.window_s / settings.sample_interval_s))
        self._window: collections.deque[Pressure] = collections.deque(maxlen=samples)
        # (shown at s, latency s) of recent first frames; kept bounded by dropping those
        # older than first_frame_window_s as the samples move on.
        self._first_frames: collections.deque[tuple[float, float]] = collections.deque()
        self._peak_ratios: dict[str, float] = {}
        self._changes: list[tuple[float, StepChange]] = []
        self._window_s = (0.0, 0.0)
        self._counts: dict[Counted, int] = dict.fromkeys(
            ("started", "reduced", "refused", "capped"), 0
        )

    def start(self, measure_from_s: float, measure_until_s: float) -> None:
        """Sample from now on; count what happens between the two times."""
        self._window_s = (measure_from_s, measure_until_s)
        self.env.process(self._sample())

    # what the simulated server asks
    @property
    def refusing(self) -> bool:
        """New sessions are refused now."""
        return self.ladder.refusing_sessions

    def reply_cap(self, tokens: int) -> int:
        """The tokens a reply starting now may have (``tokens``: what it would have)."""
        return self.ladder.reply_tokens(tokens)

    def session_fps(self, fps: float) -> float:
        """The frame rate of a session starting now (``fps``: the pipeline's)."""
        # DegradationLadder.fps takes the server's whole-number fps; the profile's may not be.
        if self.ladder.taken(Step.LOWER_FPS):
            return min(fps, float(self.settings.reduced_fps))
        return fps

    def first_frame(self, shown_s: float, latency_s: float) -> None:
        """A turn's first frame is shown at ``shown_s`` (which may be later than now),
        ``latency_s`` after the end of the user's speech."""
        self._first_frames.append((shown_s, latency_s))

    def count(self, what: Counted) -> None:
        """Count one ``what`` now (only inside the measured window)."""
        start_s, until_s = self._window_s
        if start_s <= self.env.now < until_s:
            self._counts[what] += 1

    def _sample(self) -> simpy.events.ProcessGenerator:
        env, interval_s = self.env, self.settings.sample_interval_s
        last_s, last_busy, last_shown, last_late = env.now, self._busy(), self._frames.shown, 0.0
        while True:
            yield env.timeout(interval_s)
            now, busy, shown, late = env.now, self._busy(), self._frames.shown, self._frames.late
            dt = now - last_s
            frames = shown - last_shown
            cpu = (busy - last_busy) / dt + self._overhead_cores() if self._busy_core_s else 0.0
            self._window.append(
                Pressure(
                    first_frame_s=self._recent_first_frame_s(now),
                    live_queue_depth=float(self._queue_depth()),
                    late_frame_ratio=min(1.0, (late - last_late) / frames) if frames > 0 else 0.0,
                    cpu_fraction=cpu / self._cores,
                )
            )
            last_s, last_busy, last_shown, last_late = now, busy, shown, late
            # A simulated step is no server event: keep it out of the server's log (and
            # out of a planning run's stderr); the report lists every step instead.
            was_disabled = _SERVER_LOG.disabled
            _SERVER_LOG.disabled = True
            try:
                change = self.ladder.observe(Pressure.mean(list(self._window)), now)
            finally:
                _SERVER_LOG.disabled = was_disabled
            if change is not None:
                self._changes.append((now, change))
            if self._window_s[0] <= now < self._window_s[1]:
                for name, ratio in self.ladder.signals.items():
                    self._peak_ratios[name] = max(ratio, self._peak_ratios.get(name, 0.0))

    def _recent_first_frame_s(self, now_s: float) -> float:
        """The median latency of the first frames shown in the last
        ``first_frame_window_s`` (0 with fewer than ``min_turns`` of them), as
        :class:`~talkface.api.pressure.PressureSampler` reads it."""
        since_s = now_s - self.settings.first_frame_window_s
        frames = self._first_frames
        # Frames arrive nearly in the order they are shown, so the oldest sit at the left.
        while frames and frames[0][0] < since_s:
            frames.popleft()
        latencies_s = [lat_s for shown_s, lat_s in frames if since_s <= shown_s <= now_s]
        if len(latencies_s) < self.settings.min_turns:
            return 0.0
        return statistics.median(latencies_s)

    def _busy(self) -> float:
        return self._busy_core_s() if self._busy_core_s else 0.0

    def report(self) -> LadderReport:
        """What the ladder did (call when the run is over)."""
        start_s, until_s = self._window_s

        def overlap_s(from_s: float, to_s: float) -> float:
            return max(0.0, min(to_s, until_s) - max(from_s, start_s))

        levels = [0.0] * (len(self.settings.order) + 1)
        level, since_s = 0, -math.inf
        for at_s, change in self._changes:
            levels[level] += overlap_s(since_s, at_s)
            level, since_s = change.level, at_s
        levels[level] += overlap_s(since_s, math.inf)
        return LadderReport(
            order=tuple(str(s) for s in self.settings.order),
            level_s=tuple(levels),
            steps=tuple(LadderStep(at_s=at - start_s, change=c) for at, c in self._changes),
            sessions_started=self._counts["started"],
            reduced_fps_sessions=self._counts["reduced"],
            refused_attempts=self._counts["refused"],
            capped_replies=self._counts["capped"],
            peak_ratios=dict(self._peak_ratios),
        )
