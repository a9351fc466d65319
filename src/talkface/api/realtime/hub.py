"""The WebRTC sessions of one server process, which outlive the request that created them.

A WebRTC session is created by one HTTP request and then lives on its own (the media
flows peer to peer, not over that request). The hub owns their tasks, so none is
forgotten: it ends a session when asked (``DELETE /v1/sessions/{id}``) and, when the
server shuts down, lets each finish the answer it is giving (up to the grace period)
before ending it.
"""

from __future__ import annotations

import asyncio
import logging

from talkface.api.realtime.webrtc import WebRTCTransport

logger = logging.getLogger(__name__)


class RealtimeHub:
    """Running WebRTC transports by session id."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[WebRTCTransport, asyncio.Task[None]]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def start(self, transport: WebRTCTransport) -> None:
        """Run ``transport`` until its session ends."""
        session_id = transport.session_id
        task = asyncio.create_task(transport.run(), name=f"webrtc-{session_id}")
        self._running[session_id] = (transport, task)
        task.add_done_callback(lambda done: self._finished(session_id, done))

    def _finished(self, session_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(session_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("session %s failed", session_id, exc_info=task.exception())

    async def close(self, session_id: str, reason: str) -> bool:
        """End one session now; False if this process does not run it."""
        running = self._running.get(session_id)
        if running is None:
            return False
        transport, task = running
        transport.close(reason)
        await asyncio.wait([task])
        return True

    async def aclose(self, grace_s: float) -> None:
        """Shutdown: no more input; answers in progress may finish for ``grace_s``."""
        running = list(self._running.values())
        if not running:
            return
        for transport, _ in running:
            transport.end_reason = "the server is shutting down"
            try:
                await transport.session.conversation.end_input()
            except Exception:
                logger.warning("could not end input of %s", transport.session_id)
        tasks = [task for _, task in running]
        await asyncio.wait(tasks, timeout=grace_s)
        for transport, _ in running:
            transport.close("the server is shutting down")
        await asyncio.wait(tasks)
