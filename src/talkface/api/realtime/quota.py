"""A live session's quotas while it runs, for every transport.

:func:`watch_live_quota` runs next to a transport's other tasks. It counts the session's
minutes and its turns' LLM tokens against the key's daily quotas at least every
``server.quotas.live_check_interval_s`` (sooner when the minutes are about to run out),
and when either is used up it sends an ``error`` event (``quota_exceeded``, naming the
quota and when it resets) and ends the session, whose transport then sends ``closed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from talkface.api.realtime.session import RealtimeSession
from talkface.services.quotas import TurnTokens

logger = logging.getLogger(__name__)


async def watch_live_quota(session: RealtimeSession, close: Callable[[str], None]) -> None:
    """Meter ``session`` until it ends (this task is cancelled) or its quota runs out.

    Args:
        session: the transport's session (its registry session carries the meter).
        close: ends the session with a reason (the transport's ``close``).
    """
    meter = session.live.meter
    if meter is None:  # quotas are off (no ledger), as in unit tests of transports
        return
    conversation = session.conversation
    turns: TurnTokens | None = None
    meter.start()
    try:
        backend = await conversation.runtime.llm_backend()
        turns = TurnTokens(backend.count_tokens)
        while True:
            await asyncio.sleep(meter.next_check_s())
            meter.update(turns.new_tokens(conversation.turns))
            exceeded = meter.exceeded()
            if exceeded is not None:
                logger.info("session %s ended: quota %s used up", session.session_id,
                            exceeded.kind)
                session.send_error(exceeded)
                close(str(exceeded))
                return
    except Exception:  # a metering bug must not end the conversation
        logger.exception("quota metering of session %s failed", session.session_id)
    finally:
        meter.finish(_last_tokens(turns, session))


def _last_tokens(turns: TurnTokens | None, session: RealtimeSession) -> int:
    if turns is None:
        return 0
    try:
        return turns.new_tokens(session.conversation.turns)
    except Exception:
        logger.exception("counting the last tokens of session %s failed", session.session_id)
        return 0
