"""Live sessions on the server: one :class:`~talkface.conversation.Conversation` each.

The registry enforces the concurrent-session limit (refusing with 503 and Retry-After
rather than letting every session stutter), checks that a session belongs to the key
asking for it, and closes everything cleanly on shutdown.

Starting a conversation can take a while under load (the LLM primes its persona), so a
session first reserves its slot under the registry's lock, then starts outside it, with
a time limit: one slow start never holds up the others, and never goes on unbounded.

Shutdown has two phases. :meth:`SessionRegistry.drain` runs while connections are still
open: no new session is admitted, live ones get no more input and may finish the answer
they are giving for up to the grace period, and their transports end them with their
last events. :meth:`SessionRegistry.close_all` then stops whatever is left.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from talkface.api.auth import Principal
from talkface.api.errors import SessionNotFound
from talkface.conversation import Conversation, ConversationOptions
from talkface.errors import Overloaded
from talkface.runtime import Runtime

if TYPE_CHECKING:
    from talkface.services.quotas import LiveMeter, QuotaLedger

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
"""The longest a conversation may take to start (LLM priming included)."""
STOP_TIMEOUT_S = 10.0
"""After the grace period, how long transports may take to close what is left."""
SHUTDOWN_REASON = "the server is shutting down"
_END_INPUT_TIMEOUT_S = 1.0


@dataclass(slots=True)
class FrameCounts:
    """Video frames of live streams: how many were shown, and how many of those came
    late (a turn's next frame was not ready, or frames due together were skipped).
    The degradation ladder reads them (:mod:`talkface.api.pressure`)."""

    shown: int = 0
    late: int = 0

    def add(self, other: FrameCounts) -> None:
        """Count ``other``'s frames in these."""
        self.shown += other.shown
        self.late += other.late


@dataclass(eq=False)
class LiveSession:
    """One live conversation and who owns it.

    Attributes:
        stop: set by the transport that carries the session: ends it now, with a reason
            for the client (the registry calls it when the shutdown grace runs out).
        end_reason: why the session ends once its conversation does (set at shutdown).
    """

    session_id: str
    owner: str  # key id
    conversation: Conversation
    created_s: float = field(default_factory=time.time)
    transport: str | None = None  # "webrtc" or "websocket" once connected
    stop: Callable[[str], None] | None = None
    end_reason: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    meter: LiveMeter | None = None  # its key's daily quotas (api/realtime/quota.py)
    frames: FrameCounts = field(default_factory=FrameCounts)  # its stream counts them

    async def aclose(self) -> None:
        """End the conversation and release what it holds."""
        await self.conversation.aclose()


class SessionRegistry:
    """The live sessions of one server.

    Args:
        runtime: the shared engines.
        max_sessions: how many may be live (or starting) at once.
        start_timeout_s: the longest a session may take to start.
    """

    def __init__(self, runtime: Runtime, max_sessions: int, *,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self._runtime = runtime
        self._max = max_sessions
        self._start_timeout_s = start_timeout_s
        self._sessions: dict[str, LiveSession] = {}
        self._starting = 0
        self._draining = False
        self._ended_frames = FrameCounts()
        self._lock = asyncio.Lock()
        self.quotas: QuotaLedger | None = None  # set when the server starts

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[LiveSession]:
        """The live sessions now (a copy: sessions may come and go meanwhile)."""
        return iter(list(self._sessions.values()))

    @property
    def draining(self) -> bool:
        """Whether the server is shutting down (no new session is admitted)."""
        return self._draining

    async def create(self, principal: Principal, options: ConversationOptions) -> LiveSession:
        """Start a session for ``principal``.

        Raises:
            Overloaded: the server is at its session limit, shutting down, or too busy to
                start the session within ``start_timeout_s``.
        """
        # 429 when the key's live minutes or LLM tokens are used up today.
        meter = self.quotas.admit_live(principal.key_id) if self.quotas is not None else None
        async with self._lock:
            self.check_admission()
            self._starting += 1
        conversation = Conversation(self._runtime, options)
        try:
            try:
                async with asyncio.timeout(self._start_timeout_s):
                    await conversation.__aenter__()
            except TimeoutError:
                await _aclose_quietly(conversation)
                raise Overloaded(
                    f"the server is too busy to start a session (it took more than "
                    f"{self._start_timeout_s:g} s); try again in a little while",
                    retry_after_s=10.0) from None
            except BaseException:
                await _aclose_quietly(conversation)
                raise
            session = LiveSession(
                session_id="s_" + secrets.token_urlsafe(12),
                owner=principal.key_id,
                conversation=conversation,
                meter=meter,
            )
            if self._draining:
                await _aclose_quietly(conversation)
                self.check_admission()  # raises
            self._sessions[session.session_id] = session
            return session
        finally:
            self._starting -= 1

    def check_admission(self) -> None:
        """Refuse at once when a session would be refused anyway (full, shutting down,
        or the degradation ladder's ``refuse_sessions`` step is taken).

        Raises:
            Overloaded: with the reason and when to retry.
        """
        if self._draining:
            raise Overloaded(f"{SHUTDOWN_REASON}; connect again in a moment",
                             retry_after_s=10.0)
        ladder = self._runtime.ladder
        if ladder.refusing_sessions:
            raise Overloaded(
                "the server is under heavy load and takes no new sessions for now; "
                f"try again in {ladder.settings.retry_after_s:g} s",
                retry_after_s=ladder.settings.retry_after_s,
            )
        if len(self._sessions) + self._starting >= self._max:
            raise Overloaded(
                f"the server is at its limit of {self._max} live sessions; "
                "try again in a little while",
                retry_after_s=10.0,
            )

    def frames_seen(self) -> FrameCounts:
        """Every live stream's frames since the server started (ended sessions' too)."""
        total = FrameCounts(self._ended_frames.shown, self._ended_frames.late)
        for session in self._sessions.values():
            total.add(session.frames)
        return total

    def get(self, session_id: str, principal: Principal) -> LiveSession:
        """The session, if it exists and belongs to ``principal``'s key.

        Raises:
            SessionNotFound: otherwise (the same answer either way: ids are not revealed).
        """
        session = self._sessions.get(session_id)
        if session is None or session.owner != principal.key_id:
            raise SessionNotFound(f"no live session {session_id!r}; create one first")
        return session

    async def close(self, session_id: str) -> None:
        """End a session (its client left, or asked to)."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._ended_frames.add(session.frames)
            try:
                await session.aclose()
            finally:
                session.ended.set()

    async def drain(self, grace_s: float) -> None:
        """Shutdown, while connections are still open: admit no new session; let each
        live one finish the answer it is giving for up to ``grace_s``, then have its
        transport end it (its client gets its last events and a ``closed``)."""
        self._draining = True
        sessions = list(self._sessions.values())
        if not sessions:
            return
        logger.info("event=drain sessions=%d grace_s=%g", len(sessions), grace_s)
        for session in sessions:
            session.end_reason = SHUTDOWN_REASON
            await _end_input(session)
        if await _all_ended(sessions, grace_s):
            return
        for session in sessions:
            if session.ended.is_set():
                continue
            logger.info("event=session_cut session=%s reason=shutdown_grace_over",
                        session.session_id)
            if session.stop is not None:
                session.stop(SHUTDOWN_REASON)
            else:
                await self.close(session.session_id)
        await _all_ended(sessions, STOP_TIMEOUT_S)

    async def close_all(self, grace_s: float) -> None:
        """Shutdown: let answers in progress finish for up to ``grace_s``, then stop all."""
        self._draining = True
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            await _end_input(session)
        deadline = time.monotonic() + grace_s
        for session in sessions:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(remaining):
                    await session.conversation.finished()
            except TimeoutError:
                logger.info("event=session_cut session=%s reason=shutdown", session.session_id)
            try:
                await session.aclose()
            finally:
                session.ended.set()


async def _end_input(session: LiveSession) -> None:
    """No more input for ``session`` (bounded: a flooded inbox may be full)."""
    try:
        async with asyncio.timeout(_END_INPUT_TIMEOUT_S):
            await session.conversation.end_input()
    except Exception:
        logger.warning("event=end_input_failed session=%s", session.session_id)


async def _all_ended(sessions: list[LiveSession], timeout_s: float) -> bool:
    waits = [asyncio.ensure_future(s.ended.wait()) for s in sessions if not s.ended.is_set()]
    if not waits:
        return True
    try:
        _, pending = await asyncio.wait(waits, timeout=timeout_s)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.wait(waits)
    return not pending


async def _aclose_quietly(conversation: Conversation) -> None:
    try:
        await conversation.aclose()
    except Exception:
        logger.exception("closing a conversation that failed to start failed")
