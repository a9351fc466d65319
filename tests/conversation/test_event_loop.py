"""A live turn keeps the event loop free: every model, every conversion runs elsewhere.

The loop serves every session of a server; one callback that computes for 50 ms delays
every other session's frames by 50 ms. This runs one spoken question through the real
models and the live player (:class:`AvatarMedia`, paced like the WebSocket sender) with
asyncio in debug mode, and times every callback the loop runs.

A callback's time is the CPU time of the loop's thread while it ran, not the wall time:
on a shared 2-core box the thread can be descheduled (or wait for the GIL) in the middle
of a 1 ms callback, which says nothing about the code; computing on the loop is what
this catches, and that shows as CPU time on the loop's thread. A garbage collection that
happens to start inside a callback is not that callback's work: it is timed apart (the
runtime freezes the models' objects after warm-up, so collections stay short).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from talkface.api.realtime.media import AvatarMedia
from talkface.api.realtime.outgoing import encode_jpeg
from talkface.audio import float32_to_pcm16
from talkface.conversation import Conversation, ConversationOptions
from talkface.messages import NS_PER_S, AudioChunk, EndOfTurn, Message
from talkface.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 16_000
CHUNK = 512
SLOW_CALLBACK_S = 0.020


class _CallbackTimer:
    """Times every callback the event loop runs (its thread's CPU time)."""

    def __init__(self) -> None:
        self.slow: list[tuple[float, float, str]] = []  # (cpu s, wall s, what)
        self.count = 0
        self.gc_s = 0.0  # collections on the loop's thread, in the current callback
        self.longest_gc_s = 0.0
        self._gc_started: float | None = None
        self._loop_thread = threading.get_ident()

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._loop_thread:
            return
        if phase == "start":
            self._gc_started = time.thread_time()
        elif self._gc_started is not None:
            took = time.thread_time() - self._gc_started
            self.gc_s += took
            self.longest_gc_s = max(self.longest_gc_s, took)
            self._gc_started = None

    @staticmethod
    def _describe(handle: asyncio.Handle) -> str:
        callback = getattr(handle, "_callback", None)
        task = getattr(callback, "__self__", None)
        if isinstance(task, asyncio.Task):
            coro = task.get_coro()
            frame = getattr(coro, "cr_frame", None)
            where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame else ""
            return f"task {task.get_name()} ({getattr(coro, '__qualname__', coro)}){where}"
        return repr(handle)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = asyncio.Handle._run
        timer = self

        def timed_run(handle: asyncio.Handle) -> None:
            timer.gc_s = 0.0
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            try:
                original(handle)
            finally:
                cpu = time.thread_time() - cpu0 - timer.gc_s
                timer.count += 1
                if cpu > SLOW_CALLBACK_S:
                    timer.slow.append((cpu, time.perf_counter() - wall0,
                                       timer._describe(handle)))

        asyncio.Handle._run = timed_run  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)
        try:
            yield
        finally:
            asyncio.Handle._run = original  # type: ignore[method-assign]
            gc.callbacks.remove(self._on_gc)


async def _play(media: AvatarMedia, stop: asyncio.Event) -> int:
    """Pull frames and audio as the WebSocket sender does (25 fps, JPEG in a thread)."""
    start = media.start_clock()
    tick = audio_at = 0
    while not stop.is_set():
        due = start + tick * NS_PER_S // media.fps
        await media.clock.sleep(due - media.clock.now_ns())
        image = media.video_frame(due)
        audio_end = (tick + 1) * 48_000 // media.fps
        media.audio(audio_at, audio_end - audio_at)
        audio_at = audio_end
        await asyncio.to_thread(encode_jpeg, image)
        tick += 1
    return tick


async def test_a_live_turn_runs_no_callback_over_20_ms_on_the_loop(
    chat_runtime: Runtime, speak
) -> None:
    question = speak("piper", "What can you do for me today?")
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), question,
                            np.zeros(RATE * 3 // 2, np.float32)])
    loop = asyncio.get_running_loop()
    loop.set_debug(True)  # and asyncio checks thread-safety of loop calls as it goes
    loop.slow_callback_duration = 1.0  # wall time is timed below, by CPU; keep logs quiet
    timer = _CallbackTimer()
    ends: list[EndOfTurn] = []

    def on_message(message: Message) -> None:
        if isinstance(message, EndOfTurn):
            ends.append(message)

    async with Conversation(chat_runtime, ConversationOptions(seed=1)) as conversation:
        media = AvatarMedia(conversation, fps=chat_runtime.settings.animator.fps,
                            on_message=on_message, on_first_output=lambda turn_id: None)
        await media.prepare()
        stop = asyncio.Event()
        with timer.installed():
            media_task = asyncio.create_task(media.run())
            player = asyncio.create_task(_play(media, stop))
            clock = conversation.clock
            start_ns = clock.now_ns()
            for offset in range(0, len(audio), CHUNK):
                await clock.sleep(start_ns + offset * NS_PER_S // RATE - clock.now_ns())
                await conversation.send_audio(AudioChunk(
                    pcm=float32_to_pcm16(audio[offset: offset + CHUNK]), sample_rate_hz=RATE,
                    pts_ns=offset * NS_PER_S // RATE))
            await conversation.end_input()
            async with asyncio.timeout(120):
                await media_task
            stop.set()
            ticks = await player
    loop.set_debug(False)
    assert ends and not ends[-1].interrupted, "the turn was not answered"
    assert ticks > 50 and timer.count > 1000
    logging.getLogger(__name__).info("%d callbacks, %d frames, longest collection %.0f ms",
                                     timer.count, ticks, timer.longest_gc_s * 1e3)
    assert not timer.slow, "callbacks that computed on the event loop:\n" + "\n".join(
        f"{cpu * 1e3:.0f} ms CPU ({wall * 1e3:.0f} ms wall): {what}"
        for cpu, wall, what in sorted(timer.slow, reverse=True))
