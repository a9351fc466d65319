"""A long-running process hands memory it freed back to the system."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from talkface.process_memory import release_freed_memory, release_freed_memory_every

pytestmark = pytest.mark.unit


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def churn_in_a_thread() -> None:
    """What a model or encoder thread does: many medium allocations freed, a few kept
    (those pin the heap, so malloc cannot simply shrink it from the top)."""
    kept = []

    def work() -> None:
        blocks = [bytes(3000) for _ in range(60_000)]  # ~180 MB in a thread's arena
        kept.extend(blocks[::200])
        del blocks

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    churn_in_a_thread.kept = kept  # type: ignore[attr-defined]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_freed_memory_goes_back_to_the_system() -> None:
    churn_in_a_thread()
    before = rss_mb()
    assert release_freed_memory()
    assert before - rss_mb() > 100


async def test_the_periodic_release_stops_when_cancelled() -> None:
    task = asyncio.create_task(release_freed_memory_every(0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
