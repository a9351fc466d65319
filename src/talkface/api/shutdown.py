"""A graceful stop: live sessions finish their answers before the server closes them.

uvicorn handles SIGTERM and SIGINT by closing every connection at once (a WebSocket with
1012) and only then runs the application's shutdown: too late for a session to finish
the answer it is giving. :class:`DrainOnSignal` takes those signals first: it runs the
application's drain (no new sessions, live ones finish for up to the grace period and
get their last events) and then hands the signal to the handler that was there before
(the server's, which stops it as usual). A second signal does not wait.

The server's handler is found with :func:`signal.getsignal`: uvicorn installs its own with
:func:`signal.signal` (not the event loop's handlers) so that it can restore the previous
ones; ``tests/api/test_serve_cli.py`` fails if a uvicorn upgrade changes that.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class DrainOnSignal:
    """Runs ``drain`` on SIGTERM/SIGINT, then passes the signal on.

    Args:
        drain: what to do before the server stops (bounded: it has its own time limits).
    """

    def __init__(self, drain: Callable[[], Awaitable[None]]) -> None:
        self._drain = drain
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled = False
        self._forced = False
        self._task: asyncio.Task[None] | None = None

    def install(self) -> bool:
        """Take the signals (from the event loop's thread, which must be the main one).

        Returns:
            False when signals cannot be taken here (not the main thread: a server run in
            a thread, as tests do, is stopped by its owner instead).
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        return True

    async def aclose(self) -> None:
        """Give the signals back; a drain still running (a second signal cut it short)
        is stopped."""
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._forced = True  # the server is stopping already: nothing more to pass on
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._signalled or self._loop is None:
            self._forced = True
            self._pass_on(signum, frame)  # a second signal: stop now
            return
        self._signalled = True
        logger.info("event=shutdown signal=%s phase=drain", signal.Signals(signum).name)
        self._loop.call_soon_threadsafe(self._start, signum, frame)

    def _start(self, signum: int, frame: FrameType | None) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._drain_then_pass_on(signum, frame), name="drain-on-signal")

    async def _drain_then_pass_on(self, signum: int, frame: FrameType | None) -> None:
        try:
            await self._drain()
        except Exception:
            logger.exception("draining before shutdown failed; stopping anyway")
        finally:
            if not self._forced:
                self._pass_on(signum, frame)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
