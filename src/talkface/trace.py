"""Per-turn latency traces: when each stage first produced something, from one origin.

The origin is the moment the turn's input was complete: the end of the user's speech
for a spoken turn, the arrival of the text for a typed one. Each stage marks the first
time it delivers, once; the trace then reads as a waterfall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from talkface.clock import Clock

# Stage names in pipeline order, as they appear in traces and reports.
STAGES = (
    "vad_end",
    "asr_final",
    "llm_first_token",
    "first_sentence",
    "first_audio",
    "first_video_frame",
    "first_byte",
)


@dataclass(slots=True)
class TurnTrace:
    """Latency marks of one turn, in ns on ``clock``, relative to ``origin_ns``.

    Attributes:
        origin_ns: when the turn's input was complete.
        marks_ns: stage name → first time it delivered (absolute clock ns).
    """

    clock: Clock
    origin_ns: int
    marks_ns: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(cls, clock: Clock, origin_ns: int | None = None) -> TurnTrace:
        """A trace whose times count from ``origin_ns`` (default: now on ``clock``)."""
        return cls(clock=clock, origin_ns=clock.now_ns() if origin_ns is None else origin_ns)

    def mark(self, stage: str, at_ns: int | None = None) -> None:
        """Record ``stage`` the first time only."""
        if stage not in self.marks_ns:
            self.marks_ns[stage] = self.clock.now_ns() if at_ns is None else at_ns

    def latency_ms(self, stage: str) -> float | None:
        """Milliseconds from the origin to ``stage``, or None if it never happened."""
        at = self.marks_ns.get(stage)
        return None if at is None else (at - self.origin_ns) / 1e6

    def as_dict(self) -> dict[str, float]:
        """Stage → latency in ms, in pipeline order, for the stages that happened."""
        ordered = [s for s in STAGES if s in self.marks_ns]
        ordered += sorted(s for s in self.marks_ns if s not in STAGES)
        return {s: round((self.marks_ns[s] - self.origin_ns) / 1e6, 1) for s in ordered}
