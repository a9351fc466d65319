"""Unfinished videos of render jobs do not pile up: a render cut short by a killed server
leaves one (``videos/.r_<id>.mp4.<random>.mp4``), and it is removed when a server starts
on the same data dir and before the job is tried again; a failed attempt and a deleted
job take theirs along. No models: the renders here are scripted (real ones in
tests/api/test_renders.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from talkface.config import Settings, load_settings
from talkface.engines import ModelThread
from talkface.messages import VideoFrame
from talkface.output.mp4 import MP4Writer, partial_files
from talkface.services.jobs import RenderQueue
from talkface.services.render import RenderedVideo, RenderSpec
from talkface.services.store import JobRecord, Store, worker_identity

pytestmark = pytest.mark.unit


@dataclass
class Host:
    settings: Settings
    runtime: object = None
    ready: bool = True
    failed: str | None = None


@pytest.fixture
def writers() -> Iterator[list[MP4Writer]]:
    """Writers a test leaves open, as a killed process would; released afterwards."""
    opened: list[MP4Writer] = []
    yield opened
    for writer in opened:
        writer.abort()


def start_writing(output: Path, writers: list[MP4Writer]) -> None:
    """What a render does first: the real writer, one frame in, not finished."""
    writer = MP4Writer(output, fps=25, size_px=64)
    writer.write_frame(VideoFrame(image=np.zeros((64, 64, 3), np.uint8), pts_ns=0, index=0))
    writers.append(writer)


def add_job(store: Store, job_id: str) -> JobRecord:
    spec = RenderSpec(kind="text", text="hello")
    job = JobRecord(id=job_id, owner="k", status="queued", kind="text", spec=spec.to_dict(),
                    created_s=store.pending_count() + 1.0)  # claimed in this order
    store.create(job, max_pending=10)
    return job


async def test_a_server_that_starts_removes_what_killed_renders_left(
        tmp_path: Path, writers: list[MP4Writer]) -> None:
    store = Store(tmp_path)
    live = add_job(store, "r_live")
    claimed, _ = store.claim(worker_identity(), lease_s=60.0)  # rendering in a live process
    assert claimed is not None and claimed.id == live.id
    start_writing(store.video_path(live.id), writers)
    killed = add_job(store, "r_killed")
    claimed, _ = store.claim("elsewhere:1:dead", lease_s=-1.0)  # its lease ran out
    assert claimed is not None and claimed.id == killed.id
    start_writing(store.video_path(killed.id), writers)
    start_writing(store.video_path("r_deleted_since"), writers)  # its job is gone
    assert len(list(store.videos_dir.iterdir())) == 3

    # A server starting on this data dir (its models failed to load: it renders nothing).
    queue = RenderQueue(Host(settings=load_settings(), ready=False, failed="no models"), store)
    await asyncio.wait_for(queue.run(), 10)
    assert [p.name for p in store.videos_dir.iterdir()] == [
        partial_files(store.video_path(live.id))[0].name]  # the live render's own file stays


class ScriptedRuns:
    """Render attempts as scripted: each starts writing its video, then dies or fails."""

    def __init__(self, writers: list[MP4Writer], outcomes: list[str]) -> None:
        self.writers = writers
        self.outcomes = outcomes
        self.partials_at_start: list[int] = []

    async def __call__(self, job: JobRecord, spec: RenderSpec, output: Path, *,
                       input_path: Path | None, encoder: ModelThread,
                       on_progress: Callable[[float], None]) -> RenderedVideo:
        self.partials_at_start.append(len(partial_files(output)))
        start_writing(output, self.writers)
        outcome = self.outcomes.pop(0)
        if outcome == "killed":  # the process dies: nothing runs after this
            await asyncio.Event().wait()
        raise RuntimeError("the encoder crashed")


async def run_until(queue: RenderQueue, done: Callable[[], bool]) -> None:
    """Run the queue until ``done()`` (a test that times out here failed)."""
    task = asyncio.create_task(queue.run())
    try:
        deadline = time.monotonic() + 20
        while not done():
            assert time.monotonic() < deadline, "the render queue did not get there"
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.wait([task])


async def test_a_job_tried_again_or_failed_leaves_no_unfinished_video(
        tmp_path: Path, writers: list[MP4Writer]) -> None:
    store = Store(tmp_path)
    job = add_job(store, "r_job")
    # First attempt, on another host sharing the data dir: it dies mid-render. Its lease
    # is still good when this server starts, so its file stays until the job is retried.
    claimed, _ = store.claim("elsewhere:1:dead", lease_s=1.5)
    assert claimed is not None
    start_writing(store.video_path(job.id), writers)
    # Second attempt, here, once the lease ran out: it starts clean, then fails; the job
    # ends with no file at all.
    runs = ScriptedRuns(writers, ["failed"])
    queue = RenderQueue(Host(settings=load_settings()), store, runner=runs)
    await run_until(queue, lambda: store.get(job.id).status == "failed"  # type: ignore[union-attr]
                    and not any(store.videos_dir.iterdir()))
    assert runs.partials_at_start == [0]


def test_a_deleted_job_takes_its_unfinished_videos_along(tmp_path: Path,
                                                         writers: list[MP4Writer]) -> None:
    store = Store(tmp_path)
    job = add_job(store, "r_gone")
    start_writing(store.video_path(job.id), writers)
    store.delete(job)
    assert list(store.videos_dir.iterdir()) == []
