"""A WebSocket live-session client, as a program would write one: everything it receives,
a way to wait for an event, real-time microphone audio. Used by the WebSocket tests and by
the scenarios that run in a loopback-only namespace (tests/serving/ray_scenario.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from talkface.audio import float32_to_pcm16

RATE = 16_000
CHUNK = 512  # 32 ms of microphone audio per binary frame
EVENT_TIMEOUT_S = 90.0


class Session:
    """One WebSocket session: everything received, and a way to wait for an event."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.binary: list[bytes] = []
        self.frame_times: list[float] = []  # arrival of each JPEG video frame ("V")
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()

    async def read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.binary.append(message)
                    if message[:1] == b"V":
                        self.frame_times.append(time.monotonic())
                else:
                    self.events.append(json.loads(message))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], count: int = 1,
                       timeout_s: float = EVENT_TIMEOUT_S) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                found = [e for e in self.events if predicate(e)]
                if len(found) >= count:
                    return found[count - 1]
                if self.closed.is_set():
                    raise AssertionError(f"closed before the event came: {self.summary()}")
                self._changed.clear()
                await self._changed.wait()

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(json.dumps({"v": 1, **message}) if isinstance(message, dict)
                           else message)

    async def ask(self, text: str) -> dict[str, Any]:
        """Type ``text``; returns the turn's latency event (the answer has played).

        Call it with no other answer in flight: latency events are counted, not matched.
        """
        answered = len(self.of("latency"))
        await self.send({"type": "text", "text": text})
        return await self.wait_for(lambda e: e["type"] == "latency", count=answered + 1)

    def reply(self, turn_id: int) -> str:
        return "".join(e["text"] for e in self.of("reply_delta") if e["turn_id"] == turn_id)

    def summary(self) -> list[str]:
        return [e["type"] for e in self.events if e["type"] != "reply_delta"]



async def speak_in_real_time(live: Session, audio: np.ndarray,
                             until: Callable[[], bool], max_s: float) -> None:
    """Play ``audio`` as a microphone would, then silence until ``until()`` (bounded)."""
    start = time.monotonic()
    offset = 0
    while time.monotonic() - start < max_s and not (offset >= len(audio) and until()):
        chunk = audio[offset : offset + CHUNK] if offset < len(audio) else np.zeros(CHUNK)
        await live.send(float32_to_pcm16(chunk.astype(np.float32)))
        offset += CHUNK
        await asyncio.sleep(max(0.0, start + offset / RATE - time.monotonic()))
