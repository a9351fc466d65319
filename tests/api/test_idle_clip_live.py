"""A silent live session plays the avatar's shared idle loop: a real server, a real animator.

While nobody talks, the animator is not asked for frames and JPEGs go out with the
stream's own timestamps, frame after frame; a question is still answered, and the
silence after it is the loop again.
"""

from __future__ import annotations

import asyncio
import itertools
import struct

import pytest

from talkface.api.realtime.idle_clip import idle_clip_cache

from .conftest import RunningServer
from .test_realtime_ws import session
from .ws_client import Session

pytestmark = [pytest.mark.serving, pytest.mark.integration]


def animator_requests(server: RunningServer) -> int:
    runtime = server.app.state.talkface.runtime
    return sum(e.stats.requests for e in runtime.engines if e.name == "animator")


def frame_stamps_us(live: Session) -> list[int]:
    return [struct.unpack(">Q", f[1:9])[0] for f in live.binary if f[:1] == b"V"]


async def wait_for_frames(live: Session, count: int) -> None:
    async with asyncio.timeout(30):
        target = len(frame_stamps_us(live)) + count
        while len(frame_stamps_us(live)) < target:
            await asyncio.sleep(0.05)


async def test_a_silent_session_plays_the_idle_loop_and_still_answers(
        server: RunningServer) -> None:
    settings = server.settings
    runtime = server.app.state.talkface.runtime
    cache = idle_clip_cache(runtime, settings.server.idle_clip)
    frame_us = 1_000_000 // settings.animator.fps
    async with session(server, output="jpeg") as live:
        async with asyncio.timeout(60):
            while len(cache) == 0:  # the first session of the avatar builds its loop
                await asyncio.sleep(0.05)
        await wait_for_frames(live, 5)  # the session has switched to the loop
        before = animator_requests(server)
        await wait_for_frames(live, 2 * settings.animator.fps)  # two seconds of silence
        assert animator_requests(server) == before  # the face moved; nothing was animated

        latency = await live.ask("Hello, who are you?")
        assert live.reply(latency["turn_id"]).strip()
        assert animator_requests(server) > before  # the answer came from the animator
        assert live.of("speaking")[0]["turn_id"] == latency["turn_id"]
        await wait_for_frames(live, 10)
        after = animator_requests(server)
        await wait_for_frames(live, settings.animator.fps)
        assert animator_requests(server) == after  # silent again: the loop again

    # One stream clock throughout: every frame on the frame grid, in order, from 0.
    stamps = frame_stamps_us(live)
    assert stamps[0] == 0
    assert all(s % frame_us == 0 for s in stamps)
    assert all(b > a for a, b in itertools.pairwise(stamps))
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert steps.count(frame_us) >= 0.9 * len(steps)  # a slow client may lose a few
