"""One owner of a conversation's time: the playout clock, the frame index, idle gaps.

The pipeline makes media faster than real time; a player (a WebRTC track, a WebSocket
sender, a file recorder that behaves like a viewer) must deliver each piece when it is
due. The :class:`Timeline` is the one place that knows

* **when media is due**: each turn is anchored when its first media is placed, so a
  turn that took longer to start simply starts later and its frames keep their spacing;
* **what the listener has heard** of a turn (what a barge-in cuts at);
* **which frame index comes next**: where the next answer's first frame goes (after the
  wall-clock time elapsed when live, after the last answer plus a pause when scripted),
  and where the listening face resumes after a turn ends or is cut.

The conversation asks it; players drive it: they place each media message
(:meth:`Timeline.due_ns`), say which spoken frame is on screen
(:meth:`Timeline.frame_shown`) and when a turn was cut (:meth:`Timeline.cut`). Waiting
goes through the :class:`~talkface.clock.Clock`, so tests run on virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from talkface.clock import Clock, MonotonicClock
from talkface.messages import NS_PER_S, Message, SpeechAudio, VideoFrame

TURN_GAP_FRAMES = 12
"""Scripted (not live) conversations: frames of listening face between two answers."""
_TURNS_KEPT = 8


@dataclass(slots=True)
class _Anchor:
    turn_id: int
    first_pts_ns: int
    wall_start_ns: int


class Timeline:
    """Pacing, frame numbering and "what was heard" for one conversation.

    Args:
        clock: the wall clock (a manual one in tests).
        fps: video frame rate.
        realtime: False plays everything at once (offline rendering, scripts).
        lead_ns: deliver this much ahead of due time (covers a client's jitter buffer).
    """

    def __init__(self, clock: Clock | None = None, *, fps: int = 25, realtime: bool = True,
                 lead_ns: int = 0) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.fps = fps
        self.realtime = realtime
        self._lead_ns = lead_ns
        self._start_ns = self.clock.now_ns()
        self._anchor: _Anchor | None = None
        self._end_wall_ns = 0  # when the media placed so far ends
        self._next_frame_index = 0  # one past the last frame any answer was given
        self._last_placed_index: dict[int, int] = {}  # turn -> its last frame placed
        self._shown: tuple[int, int] | None = None  # (turn, index) of the spoken frame shown

    # --- frame numbering -----------------------------------------------------------------

    def first_frame_index(self) -> int:
        """Where the next answer's first frame goes on the session's frame timeline."""
        if self.realtime:
            # Frames follow the wall clock, so the listening face and answers join up.
            elapsed_ns = self.clock.now_ns() - self._start_ns
            return max(int(elapsed_ns * self.fps // NS_PER_S), self._next_frame_index)
        if self._next_frame_index == 0:
            return 0
        return self._next_frame_index + TURN_GAP_FRAMES

    def answer_made(self, end_frame_index: int) -> None:
        """An answer's frames end before ``end_frame_index``; the next one goes after."""
        self._next_frame_index = max(self._next_frame_index, end_frame_index)

    def idle_from(self, turn_id: int, *, cut: bool = False) -> int | None:
        """The frame index the listening face resumes at once ``turn_id`` has ended:
        after its last frame, or, when it was cut, after the frame on screen then.
        None: nothing of it was placed (or, cut, shown), the listening face goes on."""
        last_placed = self._last_placed_index.pop(turn_id, None)
        if cut:
            shown = self._shown
            return shown[1] + 1 if shown is not None and shown[0] == turn_id else None
        return None if last_placed is None else last_placed + 1

    def frame_shown(self, turn_id: int, index: int) -> None:
        """A player shows ``turn_id``'s frame ``index`` now."""
        self._shown = (turn_id, index)

    # --- pacing ----------------------------------------------------------------------------

    def due_ns(self, message: Message) -> int | None:
        """Wall time ``message`` is due, anchoring its turn if it is the turn's first
        media (None: not media)."""
        if not isinstance(message, (SpeechAudio, VideoFrame)):
            return None
        anchor = self._anchor
        if anchor is None or anchor.turn_id != message.turn_id:
            now = self.clock.now_ns()
            # A new turn starts now, or when the previous one's media ends if later.
            anchor = _Anchor(message.turn_id, message.pts_ns, max(now, self._end_wall_ns))
            self._anchor = anchor
        due = anchor.wall_start_ns + max(0, message.pts_ns - anchor.first_pts_ns)
        if isinstance(message, SpeechAudio):
            self._end_wall_ns = max(self._end_wall_ns, due + message.duration_ns)
        else:
            self._end_wall_ns = max(self._end_wall_ns, due)
            self._last_placed_index[message.turn_id] = message.index
            if len(self._last_placed_index) > _TURNS_KEPT:  # a player that never asks
                del self._last_placed_index[min(self._last_placed_index)]
        return due

    async def wait_due(self, message: Message) -> None:
        """Wait until ``message`` should be delivered (at once when not realtime)."""
        due = self.due_ns(message)
        if due is None or not self.realtime:
            return
        await self.clock.sleep(due - self._lead_ns - self.clock.now_ns())

    def cut(self, turn_id: int) -> None:
        """``turn_id`` was interrupted: none of its media plays after now.

        Players read media ahead of time, so the cut turn's end may lie in the future;
        without this the next answer would wait for the rest of the cut one.
        """
        anchor = self._anchor
        if anchor is not None and anchor.turn_id == turn_id:
            self._end_wall_ns = min(self._end_wall_ns, self.clock.now_ns())

    def heard_ns(self, turn_id: int) -> int | None:
        """How far (timeline pts) the listener has got into ``turn_id``; None if it has
        not started playing. Offline, everything placed counts as heard."""
        anchor = self._anchor
        if anchor is None or anchor.turn_id != turn_id:
            return None
        if not self.realtime:
            return 2**62
        return anchor.first_pts_ns + max(0, self.clock.now_ns() - anchor.wall_start_ns)


class MediaSource(Protocol):
    """What a player reads: a conversation's messages, its timeline, its idle face."""

    @property
    def timeline(self) -> Timeline:
        """The conversation's one timeline (the player drives it)."""
        ...

    def messages(self) -> AsyncIterator[Message]:
        """Everything the avatar says and shows, in order."""
        ...

    async def idle_frames(self, first_frame_index: int, count: int) -> list[np.ndarray]:
        """Frames of the listening face for frame indexes ``first..first+count``."""
        ...
