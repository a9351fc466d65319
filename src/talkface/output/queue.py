"""A session's outbox: bounded for data, never blocking or dropping system messages.

Data messages (speech, frames, transcripts...) wait in a bounded queue: a producer that
runs ahead of the consumer waits, which paces the pipeline to the client. System
messages (:class:`~talkface.messages.Interrupt`, :class:`~talkface.messages.Error`) skip
the queue and are read first. When a turn is dropped (barge-in), its data messages
still in the queue are thrown away instead of being delivered late, its
:class:`~talkface.messages.EndOfTurn` among them: whoever drops a turn sends its one
(interrupted) end.
"""

from __future__ import annotations

import asyncio
import collections

from talkface.messages import SYSTEM_MESSAGES, EndOfTurn, Message

DEFAULT_DATA_CAPACITY = 128


class OutputQueue:
    """One consumer reads what the session's tasks put in.

    Args:
        capacity: how many data messages may wait.
    """

    def __init__(self, capacity: int = DEFAULT_DATA_CAPACITY) -> None:
        self._data: asyncio.Queue[Message | None] = asyncio.Queue(capacity)
        self._system: collections.deque[Message] = collections.deque()
        self._wakeup = asyncio.Event()
        self._dropped_turns: set[int] = set()
        self._closed = False

    async def put(self, message: Message) -> None:
        """Queue ``message``; waits for room if it is data and the queue is full."""
        if isinstance(message, SYSTEM_MESSAGES):
            self._system.append(message)
            self._wakeup.set()
            return
        if message.turn_id in self._dropped_turns and not isinstance(message, EndOfTurn):
            return  # a dropped turn's data; its EndOfTurn still tells the client it ended
        await self._data.put(message)
        self._wakeup.set()

    def drop_turn(self, turn_id: int) -> int:
        """Throw away ``turn_id``'s queued data now and later; returns how many went.

        An :class:`EndOfTurn` already queued goes too (the turn did not end as it said);
        one put after this call is delivered: the caller's own, interrupted end.
        """
        self._dropped_turns.add(turn_id)
        kept: list[Message | None] = []
        dropped = 0
        while not self._data.empty():
            item = self._data.get_nowait()
            if item is not None and item.turn_id == turn_id:
                dropped += 1
            else:
                kept.append(item)
        for item in kept:
            self._data.put_nowait(item)
        return dropped

    def close(self) -> None:
        """No more messages: the reader ends once the queue is empty."""
        if not self._closed:
            self._closed = True
            self._wakeup.set()

    async def get(self) -> Message | None:
        """The next message (system ones first), or None once closed and empty."""
        while True:
            if self._system:
                return self._system.popleft()
            if not self._data.empty():
                item = self._data.get_nowait()
                if (
                    item is not None
                    and item.turn_id in self._dropped_turns
                    and not isinstance(item, EndOfTurn)
                ):
                    continue
                return item
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> OutputQueue:
        return self

    async def __anext__(self) -> Message:
        item = await self.get()
        if item is None:
            raise StopAsyncIteration
        return item
