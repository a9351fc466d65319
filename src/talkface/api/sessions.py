"""Live sessions on the server: one :class:`~talkface.conversation.Conversation` each.

The registry enforces the concurrent-session limit (refusing with 503 and Retry-After
rather than letting every session stutter), checks that a session belongs to the key
asking for it, and closes everything cleanly on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field

from talkface.api.auth import Principal
from talkface.conversation import Conversation, ConversationOptions
from talkface.errors import Overloaded, TalkfaceError
from talkface.runtime import Runtime

logger = logging.getLogger(__name__)


class SessionNotFound(TalkfaceError):
    """No live session with that id for this key."""

    code = "session_not_found"
    http_status = 404


@dataclass(eq=False)
class LiveSession:
    """One live conversation and who owns it."""

    session_id: str
    owner: str  # key id
    conversation: Conversation
    created_s: float = field(default_factory=time.time)
    transport: str | None = None  # "webrtc" or "websocket" once connected

    async def aclose(self) -> None:
        await self.conversation.aclose()


class SessionRegistry:
    """The live sessions of one server.

    Args:
        runtime: the shared engines.
        max_sessions: how many may be live at once.
    """

    def __init__(self, runtime: Runtime, max_sessions: int) -> None:
        self._runtime = runtime
        self._max = max_sessions
        self._sessions: dict[str, LiveSession] = {}
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    async def create(self, principal: Principal, options: ConversationOptions) -> LiveSession:
        """Start a session for ``principal``.

        Raises:
            Overloaded: the server is at its session limit.
        """
        async with self._lock:
            if len(self._sessions) >= self._max:
                raise Overloaded(
                    f"the server is at its limit of {self._max} live sessions; "
                    "try again in a little while",
                    retry_after_s=10.0,
                )
            conversation = Conversation(self._runtime, options)
            await conversation.__aenter__()
            session = LiveSession(
                session_id="s_" + secrets.token_urlsafe(12),
                owner=principal.key_id,
                conversation=conversation,
            )
            self._sessions[session.session_id] = session
            return session

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
            await session.aclose()

    async def close_all(self, grace_s: float) -> None:
        """Shutdown: let answers in progress finish for up to ``grace_s``, then stop all."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            try:
                await session.conversation.end_input()
            except Exception:
                logger.warning("could not end input of %s", session.session_id)
        deadline = time.monotonic() + grace_s
        for session in sessions:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(remaining):
                    await session.conversation.finished()
            except TimeoutError:
                logger.info("session %s cut short by shutdown", session.session_id)
            await session.aclose()
