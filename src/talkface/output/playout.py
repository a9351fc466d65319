"""Playing a session's media at the pace of the wall clock, turn by turn.

The pipeline makes media faster than real time; a player (a WebRTC track, a WebSocket
sender, a file recorder that behaves like a viewer) must deliver each piece when it is
due. Each turn is anchored when its first media message is played, so a turn that took
longer to start simply starts later, and its frames keep their spacing. The player also
knows how far into a turn the listener has heard, which is what a barge-in cuts at.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from talkface.clock import Clock, MonotonicClock
from talkface.messages import Message, SpeechAudio, VideoFrame


@dataclass(slots=True)
class _Anchor:
    turn_id: int
    first_pts_ns: int
    wall_start_ns: int


class Playout:
    """Wall-clock pacing of media messages.

    Args:
        clock: the wall clock.
        realtime: False plays everything at once (offline rendering).
        lead_ns: deliver this much ahead of due time (covers the client's jitter buffer).
    """

    def __init__(
        self, clock: Clock | None = None, *, realtime: bool = True, lead_ns: int = 0
    ) -> None:
        self._clock = clock or MonotonicClock()
        self.realtime = realtime
        self._lead_ns = lead_ns
        self._anchor: _Anchor | None = None
        self._end_wall_ns = 0  # when the media played so far ends

    def due_ns(self, message: Message) -> int | None:
        """Wall time ``message`` is due, anchoring its turn if it is the turn's first."""
        if not isinstance(message, (SpeechAudio, VideoFrame)):
            return None
        anchor = self._anchor
        if anchor is None or anchor.turn_id != message.turn_id:
            now = self._clock.now_ns()
            # A new turn starts now, or when the previous one's media ends if later.
            anchor = _Anchor(message.turn_id, message.pts_ns, max(now, self._end_wall_ns))
            self._anchor = anchor
        due = anchor.wall_start_ns + max(0, message.pts_ns - anchor.first_pts_ns)
        duration = message.duration_ns if isinstance(message, SpeechAudio) else 0
        self._end_wall_ns = max(self._end_wall_ns, due + duration)
        return due

    async def wait_due(self, message: Message) -> None:
        """Sleep until ``message`` should be delivered (at once when not realtime)."""
        due = self.due_ns(message)
        if due is None or not self.realtime:
            return
        delay_ns = due - self._lead_ns - self._clock.now_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / 1e9)

    def cut(self, turn_id: int) -> None:
        """``turn_id`` was interrupted: none of its media plays after now.

        Players read media ahead of time, so the cut turn's end may lie in the future;
        without this the next answer would wait for the rest of the cut one.
        """
        anchor = self._anchor
        if anchor is not None and anchor.turn_id == turn_id:
            self._end_wall_ns = min(self._end_wall_ns, self._clock.now_ns())

    def position_ns(self, turn_id: int) -> int | None:
        """How far (timeline pts) the listener has got into ``turn_id``; None if not started.

        Offline, everything delivered counts as heard.
        """
        anchor = self._anchor
        if anchor is None or anchor.turn_id != turn_id:
            return None
        if not self.realtime:
            return 2**62
        return anchor.first_pts_ns + max(0, self._clock.now_ns() - anchor.wall_start_ns)
