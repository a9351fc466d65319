"""Live before batch: offline work (render jobs) gives way to live conversations.

Two rules, both process-wide:

- Work submitted inside :func:`offline_work` waits in every engine's offline lane, taken
  only when no live request is waiting (:mod:`talkface.engines`).
- While a live turn races to its first frame (:func:`live_turn_starting`: from the moment
  it starts answering until its first video frame is out), offline work holds back
  altogether: engines take nothing from their offline lane and a render job's encoder
  pauses (:func:`yield_to_live_turns`). On a small box the two cores are what a render
  job and a live turn share, not just the engines' queues: without the hold, a long
  render pushed a live turn's first frame from ~1 s to ~10 s. Each live turn holds
  offline work for at most :data:`MAX_HOLD_S`, so busy conversations slow render jobs
  down but never stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Iterator

__all__ = [
    "MAX_HOLD_S",
    "StartingTurn",
    "hold_left_s",
    "is_offline",
    "live_turn_starting",
    "offline_work",
    "wait_until_offline_may_run",
    "yield_to_live_turns",
]

MAX_HOLD_S = 2.0
"""Longest one live turn holds offline work back (a first frame normally takes ~1 s)."""

_OFFLINE: contextvars.ContextVar[bool] = contextvars.ContextVar("talkface_offline_work",
                                                               default=False)


@contextlib.contextmanager
def offline_work() -> Iterator[None]:
    """Requests submitted in this context (and in tasks it starts) are offline work:
    every engine serves them only when no live request is waiting, and not while a live
    turn is starting."""
    token = _OFFLINE.set(True)
    try:
        yield
    finally:
        _OFFLINE.reset(token)


def is_offline() -> bool:
    """Whether the running code is offline work (inside :func:`offline_work`)."""
    return _OFFLINE.get()


class StartingTurn:
    """One live turn racing to its first frame; :meth:`reached_first_frame` ends its hold
    (so does leaving :func:`live_turn_starting`)."""

    def __init__(self) -> None:
        self.hold_until_s = time.monotonic() + MAX_HOLD_S

    def reached_first_frame(self) -> None:
        """Its first frame is out: offline work may run again (once no other holds it)."""
        if self in _STARTING:
            _STARTING.discard(self)
            _wake_waiters()


_STARTING: set[StartingTurn] = set()
_WAITERS: set[asyncio.Future[None]] = set()


def _wake_waiters() -> None:
    for waiter in list(_WAITERS):
        try:
            waiter.get_loop().call_soon_threadsafe(_settle, waiter)
        except RuntimeError:  # its event loop is closed: nobody waits on it any more
            _WAITERS.discard(waiter)


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@contextlib.contextmanager
def live_turn_starting() -> Iterator[StartingTurn]:
    """A live turn is being answered: offline work holds back until it reaches its first
    frame, the context ends, or :data:`MAX_HOLD_S` passes."""
    turn = StartingTurn()
    _STARTING.add(turn)
    try:
        yield turn
    finally:
        turn.reached_first_frame()


def hold_left_s() -> float:
    """How much longer offline work is held back now (0: it may run)."""
    now_s = time.monotonic()
    return max(0.0, max((t.hold_until_s - now_s for t in _STARTING), default=0.0))


async def wait_until_offline_may_run() -> None:
    """Wait while live turns hold offline work back."""
    while (left_s := hold_left_s()) > 0:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        _WAITERS.add(waiter)
        try:
            await asyncio.wait([waiter], timeout=left_s)
        finally:
            _WAITERS.discard(waiter)


async def yield_to_live_turns() -> None:
    """For offline work outside the engines (a render job's encoding): pause while live
    turns are starting. Returns at once when none is, or outside :func:`offline_work`."""
    if is_offline() and hold_left_s() > 0:
        await wait_until_offline_may_run()
