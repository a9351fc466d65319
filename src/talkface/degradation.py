"""The degradation ladder: under pressure, give every user a little less rather than
some users nothing.

When the box falls behind (live turns take long to their first frame, engines' live
queues grow, video frames miss their deadline, the CPU is saturated), the server steps
down one rung at a time, in a fixed order (``degradation.order``), and steps back up the
same way once the pressure has passed:

1. ``shorter_replies`` — new answers are capped at ``short_reply_tokens`` tokens;
2. ``lower_fps`` — new sessions stream at ``reduced_fps`` (a live stream keeps its frame
   rate: changing it mid-stream would restart the client's decoder);
3. ``small_llm_only`` — no question goes to the large LLM tier (:mod:`talkface.llm.routing`);
4. ``refuse_sessions`` — new sessions are refused with 503, ``Retry-After`` and
   ``retryable: true``; sessions already live keep going.

:class:`DegradationLadder` decides the rung from one number, the pressure: the worst of
the signals, each divided by its limit (1.0 is at the limit). It steps down when the
pressure has stayed at or above 1 for ``step_down_after_s`` and steps up when it has
stayed below ``step_up_below`` for ``step_up_after_s``; after each step it waits
``settle_s`` before the next one down, so that a step's effect shows before another is
taken. It holds no clock and no I/O: the server samples the signals
(:mod:`talkface.api.pressure`) and feeds them in; every step is one log line and shows in
``/metrics``.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

logger = logging.getLogger(__name__)

__all__ = [
    "DegradationLadder",
    "DegradationSettings",
    "Pressure",
    "Step",
    "StepChange",
]


class Step(enum.StrEnum):
    """One rung of the ladder: what the server gives up while it is taken."""

    SHORTER_REPLIES = "shorter_replies"
    LOWER_FPS = "lower_fps"
    SMALL_LLM_ONLY = "small_llm_only"
    REFUSE_SESSIONS = "refuse_sessions"


class DegradationSettings(BaseModel):
    """When and how the server steps down under pressure (``[degradation]``).

    Attributes:
        enabled: False: never step down (overload ends only in refusals at
            ``server.limits.max_sessions``).
        order: the rungs, first taken first; leave one out to never take it.
        sample_interval_s: how often the signals are read.
        window_s: the signals are averaged over this long.
        max_first_frame_s: the median time from the end of a user's speech to the
            answer's first frame, over the live turns whose first frame came in the last
            ``first_frame_window_s`` (at least ``min_turns`` of them), at the limit.
        first_frame_window_s: how far back turns count for ``max_first_frame_s``.
        min_turns: fewer turns than this in the window: the latency signal reads 0.
        max_live_queue_depth: live requests waiting in all engines' queues, at the limit.
        max_late_frame_ratio: share of live sessions' video frames shown late or not at
            all, at the limit.
        max_cpu_fraction: this process's CPU use as a share of the cores it may use, at
            the limit.
        step_down_after_s: the pressure stays at or above 1 this long: one step down.
        step_up_below: the pressure below this counts as calm.
        step_up_after_s: calm this long: one step up.
        settle_s: after a step, this long before the next step down.
        short_reply_tokens: the longest answer while ``shorter_replies`` is taken.
        reduced_fps: new sessions' frame rate while ``lower_fps`` is taken.
        retry_after_s: what refused clients are told to wait.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    order: tuple[Step, ...] = tuple(Step)
    sample_interval_s: float = Field(1.0, gt=0)
    window_s: float = Field(5.0, gt=0)
    max_first_frame_s: float = Field(1.5, gt=0)
    first_frame_window_s: float = Field(30.0, gt=0)
    min_turns: int = Field(3, ge=1)
    max_live_queue_depth: float = Field(6.0, gt=0)
    max_late_frame_ratio: float = Field(0.05, gt=0, le=1)
    max_cpu_fraction: float = Field(0.9, gt=0)
    step_down_after_s: float = Field(5.0, ge=0)
    step_up_below: float = Field(0.75, gt=0, le=1)
    step_up_after_s: float = Field(20.0, ge=0)
    settle_s: float = Field(10.0, ge=0)
    short_reply_tokens: int = Field(32, ge=8)
    reduced_fps: int = Field(20, ge=20, le=60)
    retry_after_s: float = Field(15.0, gt=0)

    @field_validator("order")
    @classmethod
    def _each_step_once(cls, order: tuple[Step, ...]) -> tuple[Step, ...]:
        if len(set(order)) != len(order):
            raise ValueError(f"each step may appear once in the order, got {list(order)}")
        return order


@dataclass(frozen=True, slots=True, kw_only=True)
class Pressure:
    """The signals of one moment (or their average over the window).

    Attributes:
        first_frame_s: the median first-frame latency of recent live turns.
        live_queue_depth: live requests waiting in all engines' queues.
        late_frame_ratio: share of the live sessions' frames that were late or skipped.
        cpu_fraction: this process's CPU use as a share of its cores.
    """

    first_frame_s: float = 0.0
    live_queue_depth: float = 0.0
    late_frame_ratio: float = 0.0
    cpu_fraction: float = 0.0

    def ratios(self, settings: DegradationSettings) -> dict[str, float]:
        """Each signal divided by its limit (1.0: at the limit)."""
        return {
            "first_frame_s": self.first_frame_s / settings.max_first_frame_s,
            "live_queue_depth": self.live_queue_depth / settings.max_live_queue_depth,
            "late_frame_ratio": self.late_frame_ratio / settings.max_late_frame_ratio,
            "cpu_fraction": self.cpu_fraction / settings.max_cpu_fraction,
        }

    @staticmethod
    def mean(samples: list[Pressure]) -> Pressure:
        """The average of ``samples`` (no pressure when there are none)."""
        if not samples:
            return Pressure()
        n = len(samples)
        return Pressure(
            first_frame_s=sum(s.first_frame_s for s in samples) / n,
            live_queue_depth=sum(s.live_queue_depth for s in samples) / n,
            late_frame_ratio=sum(s.late_frame_ratio for s in samples) / n,
            cpu_fraction=sum(s.cpu_fraction for s in samples) / n,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StepChange:
    """One step taken: ``step`` was taken (``down``) or given back (not ``down``)."""

    step: Step
    down: bool
    level: int
    pressure: float
    signal: str


class DegradationLadder:
    """Which rungs are taken now, from the pressure over time (see the module docstring).

    The effects are read where they apply: :meth:`reply_tokens` by the answer code,
    :meth:`fps` by new sessions, :attr:`small_llm_only` by LLM routing,
    :attr:`refusing_sessions` by the session registry.
    """

    def __init__(self, settings: DegradationSettings | None = None) -> None:
        self.settings = settings or DegradationSettings()
        self.level = 0
        """How many rungs of ``settings.order`` are taken."""
        self.pressure = 0.0
        """The last pressure observed (1.0: the worst signal at its limit)."""
        self.signals: dict[str, float] = {}
        """The last signals' ratios to their limits, by name."""
        self.steps_total: dict[tuple[Step, bool], int] = {}
        """Steps taken so far, by rung and direction (True: down)."""
        self._high_since_s: float | None = None
        self._calm_since_s: float | None = None
        self._last_step_s: float | None = None

    def taken(self, step: Step) -> bool:
        """Whether ``step`` is taken now."""
        return step in self.settings.order[: self.level]

    @property
    def small_llm_only(self) -> bool:
        """No question goes to the large LLM tier."""
        return self.taken(Step.SMALL_LLM_ONLY)

    @property
    def refusing_sessions(self) -> bool:
        """New sessions are refused."""
        return self.taken(Step.REFUSE_SESSIONS)

    def reply_tokens(self, max_reply_tokens: int) -> int:
        """The longest answer a new turn may give (``max_reply_tokens`` when calm)."""
        if self.taken(Step.SHORTER_REPLIES):
            return min(max_reply_tokens, self.settings.short_reply_tokens)
        return max_reply_tokens

    def fps(self, fps: int) -> int:
        """The frame rate of a session starting now (``fps`` when calm)."""
        if self.taken(Step.LOWER_FPS):
            return min(fps, self.settings.reduced_fps)
        return fps

    def observe(self, pressure: Pressure, now_s: float) -> StepChange | None:
        """Take in the signals at ``now_s`` (seconds, any origin); returns the step taken
        or given back, if any (at most one per call)."""
        settings = self.settings
        ratios = pressure.ratios(settings)
        signal, worst = max(ratios.items(), key=lambda item: item[1])
        self.signals, self.pressure = ratios, worst
        if not settings.enabled:
            return None
        if worst >= 1.0:
            self._calm_since_s = None
            if self._high_since_s is None:
                self._high_since_s = now_s
            settled = self._last_step_s is None or now_s - self._last_step_s >= settings.settle_s
            if (self.level < len(settings.order) and settled
                    and now_s - self._high_since_s >= settings.step_down_after_s):
                return self._step(now_s, down=True, signal=signal)
            return None
        self._high_since_s = None
        if worst >= settings.step_up_below:
            self._calm_since_s = None
            return None
        if self._calm_since_s is None:
            self._calm_since_s = now_s
        if self.level > 0 and now_s - self._calm_since_s >= settings.step_up_after_s:
            return self._step(now_s, down=False, signal=signal)
        return None

    def _step(self, now_s: float, *, down: bool, signal: str) -> StepChange:
        if down:
            step = self.settings.order[self.level]
            self.level += 1
        else:
            self.level -= 1
            step = self.settings.order[self.level]
        # Each step needs its own full period of pressure (or calm) before the next.
        self._last_step_s = now_s
        self._high_since_s = now_s if down else None
        self._calm_since_s = None if down else now_s
        self.steps_total[step, down] = self.steps_total.get((step, down), 0) + 1
        change = StepChange(step=step, down=down, level=self.level, pressure=self.pressure,
                            signal=signal)
        logger.warning("event=degradation_step direction=%s step=%s level=%d pressure=%.2f "
                       "signal=%s", "down" if down else "up", step, self.level, self.pressure,
                       signal)
        return change
