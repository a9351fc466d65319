"""Render jobs: accepted at once, rendered in the background, kept across restarts.

:class:`RenderQueue` is what the ``/v1/renders`` routes talk to. It stores each job in
the :class:`~talkface.services.store.Store` before answering 202, so a job that was accepted
is never lost: when the server stops, the job it is rendering goes back to the queue,
and when a server starts on the same ``data_dir`` it renders what is queued, oldest
first. A few jobs render at once (:data:`RENDERS_AT_ONCE`), next to the live sessions
and through the same engines; more wait, up to ``limits.max_pending_renders``, beyond
which new jobs are refused with 503.

While a job renders, its worker renews its lease and records progress every
:data:`HEARTBEAT_S`; a cancel (``DELETE``) reaches it within that time, or at once when
the job runs in this process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from talkface.config import Settings
from talkface.engines import ModelThread
from talkface.errors import TalkfaceError
from talkface.priority import offline_work
from talkface.runtime import Runtime
from talkface.services.render import RenderedVideo, RenderSpec, render_job
from talkface.services.store import JobRecord, Store, worker_identity
from talkface.trace import TurnTrace

if TYPE_CHECKING:
    from talkface.services.quotas import QuotaLedger

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

RENDERS_AT_ONCE = 1
"""Jobs rendered at the same time by one server process (the rest of the box is for the
live sessions; each render already keeps the TTS and animator engines busy)."""
HEARTBEAT_S = 1.0
LEASE_S = 30.0
"""A running job whose worker has not been heard of for this long is taken over."""
POLL_S = 2.0
"""How often an idle worker looks for jobs that other processes queued or abandoned."""
KEEP_FINISHED_S = 7 * 24 * 3600.0
"""Finished jobs and their videos are deleted this long after they end."""
_PURGE_EVERY_S = 3600.0


class EngineHost(Protocol):
    """What the render queue needs of its host: the engines and whether they are ready
    (the server's state is one; a render worker without HTTP is another)."""

    settings: Settings
    runtime: Runtime

    @property
    def ready(self) -> bool:
        """True once the engines are loaded."""

    @property
    def failed(self) -> str | None:
        """Why loading the engines failed, or None."""


class RenderObserver(Protocol):
    """Told how each job ended (metrics)."""

    def render_ended(self, status: str, trace: TurnTrace | None) -> None:
        """A job ended with ``status``; ``trace`` holds its timings when it ran."""


class RenderRunner(Protocol):
    """Renders one job where the engines are: in this process (:func:`render_job`) or on
    a render worker (:mod:`talkface.serving`)."""

    async def __call__(self, job: JobRecord, spec: RenderSpec, output: Path, *,
                       input_path: Path | None, encoder: ModelThread,
                       on_progress: Callable[[float], None]) -> RenderedVideo:
        """Render ``job`` into ``output``, reporting progress (0 to 1) to ``on_progress``."""


class RenderNotFound(TalkfaceError):
    """No such job for this API key."""

    code = "render_not_found"
    http_status = 404


class RenderNotReady(TalkfaceError):
    """The job has no video (yet, or at all)."""

    code = "render_not_ready"
    http_status = 409


@dataclass(slots=True)
class _Running:
    task: asyncio.Task[object]
    progress: float = 0.0
    cancelled_by_user: bool = False


class RenderQueue:
    """Render jobs of one server process.

    Args:
        state: the host's engines, settings and readiness.
        store: where jobs are kept.
        observer: told how each job ended, and each text job's latency trace.
        concurrency: jobs rendered at once.
        runner: renders one job (default: here, through ``state.runtime``'s engines).
        quotas: the daily quotas per key: checked at submission, charged when a video is done.
    """

    def __init__(self, state: EngineHost, store: Store, observer: RenderObserver | None = None,
                 *, concurrency: int = RENDERS_AT_ONCE, runner: RenderRunner | None = None,
                 quotas: QuotaLedger | None = None) -> None:
        self.state = state
        self.store = store
        self._observer = observer
        self._runner = runner
        self._quotas = quotas
        self._concurrency = concurrency
        self._worker_id = worker_identity()
        self._wakeup = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._encoder = ModelThread("render-encoder")

    async def submit(self, owner: str, spec: RenderSpec, *, job_id: str | None = None) -> JobRecord:
        """Store a new queued job for ``owner``.

        Raises:
            Overloaded: ``limits.max_pending_renders`` jobs are already waiting.
            QuotaExceeded: ``owner``'s rendered video minutes are used up today.
        """
        if self._quotas is not None:
            self._quotas.check_render(owner, spec)
        job = JobRecord(id=job_id or new_job_id(), owner=owner, status="queued", kind=spec.kind,
                        spec=spec.to_dict(), created_s=time.time())
        limit = self.state.settings.server.limits.max_pending_renders
        await asyncio.to_thread(self.store.create, job, max_pending=limit)
        self._wakeup.set()
        return job

    async def get(self, job_id: str, owner: str) -> JobRecord:
        """``owner``'s job, with live progress when it renders here.

        Raises:
            RenderNotFound: no such job, or another key's (the same answer either way).
        """
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None or job.owner != owner:
            raise RenderNotFound(f"no render job {job_id!r}; list yours with GET /v1/renders")
        running = self._running.get(job_id)
        if running is not None and job.status == "running":
            job.progress = max(job.progress, running.progress)
        return job

    async def list_jobs(self, owner: str, *, limit: int = 100) -> list[JobRecord]:
        """``owner``'s jobs, newest first, at most ``limit``."""
        return await asyncio.to_thread(self.store.list_jobs, owner, limit=limit)

    async def cancel_or_delete(self, job_id: str, owner: str) -> JobRecord | None:
        """Cancel a pending job (returned, now ``cancelled``), or delete a finished one
        and its video (None).

        Raises:
            RenderNotFound: no such job for ``owner``.
        """
        job = await self.get(job_id, owner)
        if job.status in ("queued", "running"):
            cancelled = await asyncio.to_thread(self.store.cancel, job_id, owner)
            running = self._running.get(job_id)
            if running is not None:
                running.cancelled_by_user = True
                running.task.cancel()
            if cancelled is not None and cancelled.status == "cancelled":
                if running is None:
                    await asyncio.to_thread(self.store.remove_files, cancelled)
                    self._count("cancelled")
                return cancelled
        await asyncio.to_thread(self.store.delete, job)
        return None

    def pending_count(self) -> int:
        """Jobs queued or running on every process sharing the store (blocking)."""
        return self.store.pending_count()

    async def run(self) -> None:
        """Render jobs until cancelled (at shutdown, running jobs go back to the queue)."""
        try:
            # Unfinished videos of renders that a killed server left behind.
            removed = await asyncio.to_thread(self.store.remove_stale_partials)
            if removed:
                logger.info("event=render_partials_removed count=%d", removed)
            if not await self._until_ready():
                return
            await asyncio.to_thread(self.store.purge, time.time() - KEEP_FINISHED_S)
            async with asyncio.TaskGroup() as group:
                for n in range(self._concurrency):
                    group.create_task(self._work(), name=f"render-worker-{n}")
        finally:
            self._encoder.shutdown()

    async def _until_ready(self) -> bool:
        """Wait for the models; False if they failed to load (jobs then wait for a restart)."""
        while not self.state.ready:
            if self.state.failed is not None:
                logger.error("render jobs will not run: the models failed to load")
                return False
            await asyncio.sleep(0.2)
        return True

    async def _work(self) -> None:
        last_purge_s = time.monotonic()
        while True:
            try:
                if await self._render_next():
                    continue
                if time.monotonic() - last_purge_s > _PURGE_EVERY_S:
                    last_purge_s = time.monotonic()
                    await asyncio.to_thread(self.store.purge, time.time() - KEEP_FINISHED_S)
            except Exception:  # a disk or database hiccup must not stop the renders for good
                logger.exception("the render queue failed; it tries again in %g s", POLL_S)
                await asyncio.sleep(POLL_S)
                continue
            try:
                async with asyncio.timeout(POLL_S):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def _render_next(self) -> bool:
        """Render the next job, if there is one; True if there was."""
        self._wakeup.clear()
        job, given_up = await self._claim()
        for failed in given_up:
            await asyncio.to_thread(self.store.remove_files, failed)
            self._count("failed")
        if job is None:
            return False
        await self._render(job)
        return True

    async def _claim(self) -> tuple[JobRecord | None, list[JobRecord]]:
        claim = asyncio.ensure_future(
            asyncio.to_thread(self.store.claim, self._worker_id, lease_s=LEASE_S)
        )
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            # Stopping while the claim runs in its thread: hand back what it took.
            job, _ = await claim
            if job is not None:
                await asyncio.to_thread(self.store.release, job.id, self._worker_id)
            raise

    async def _render(self, job: JobRecord) -> None:
        store = self.store
        spec = RenderSpec.from_dict(job.spec)
        logger.info("event=render_attempt job=%s attempt=%d", job.id, job.attempts)
        if job.attempts > 1:  # an earlier attempt was cut short: its file goes
            await asyncio.to_thread(store.remove_partials, job.id)
        running: _Running

        def on_progress(fraction: float) -> None:
            # The estimate of a text's length is revised as it is spoken; never go back.
            running.progress = max(running.progress, fraction)

        if self._runner is not None:
            rendering = self._runner(job, spec, store.video_path(job.id),
                                     input_path=store.input_path(job), encoder=self._encoder,
                                     on_progress=on_progress)
        else:
            rendering = render_job(self.state.runtime, spec, store.video_path(job.id),
                                   input_path=store.input_path(job), encoder=self._encoder,
                                   on_progress=on_progress)
        with offline_work():  # the task's engine requests wait behind live sessions'
            task = asyncio.create_task(rendering, name=f"render-{job.id}")
        running = _Running(task=task)
        self._running[job.id] = running
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=HEARTBEAT_S)
                if task.done():
                    break
                status = await asyncio.to_thread(
                    store.heartbeat, job.id, self._worker_id, progress=running.progress,
                    lease_s=LEASE_S,
                )
                if status != "running":  # cancelled or deleted from another process
                    running.cancelled_by_user = True
                    task.cancel()
                    await asyncio.wait({task})
        except asyncio.CancelledError:
            # The server is stopping: the job goes back to the queue for the next start.
            task.cancel()
            await asyncio.wait({task})
            await asyncio.to_thread(store.release, job.id, self._worker_id)
            logger.info("event=render_handed_back job=%s reason=shutdown", job.id)
            self._running.pop(job.id, None)
            raise
        try:
            await self._record_outcome(job, running)
        finally:
            # Only once the outcome is stored: until then, readers see the live progress
            # rather than the last heartbeat's (older) one.
            self._running.pop(job.id, None)

    async def _record_outcome(self, job: JobRecord, running: _Running) -> None:
        store, task = self.store, running.task
        if task.cancelled() and running.cancelled_by_user:
            await asyncio.to_thread(store.remove_files, job)
            self._count("cancelled")
            logger.info("event=render_cancelled job=%s", job.id)
            return
        error = (asyncio.CancelledError("render cancelled by someone else") if task.cancelled()
                 else task.exception())
        if error is None:
            video = task.result()
            # The status, the log line and the count go together, even when the queue is
            # stopped meanwhile: a reader may see "done" the moment the status is stored.
            kept = await _to_the_end(self._record_done(job, video))
            await asyncio.to_thread(store.remove_files, job, keep_video=kept)
            return
        if isinstance(error, TalkfaceError):
            code, message = error.code, str(error)
        else:
            logger.error("event=render_error job=%s", job.id, exc_info=error)
            code = "internal"
            message = f"internal error ({type(error).__name__}); it was logged, please report it"
        await _to_the_end(self._record_failed(job, code, message))
        await asyncio.to_thread(store.remove_files, job)

    async def _record_done(self, job: JobRecord, video: RenderedVideo) -> bool:
        """Store that ``job`` is done, say it and count it; False when it was cancelled
        meanwhile (its video is then not kept)."""
        kept = await asyncio.to_thread(self.store.finish, job.id, self._worker_id,
                                       status="done", duration_s=video.duration_s)
        if kept:
            logger.info("event=render_done job=%s duration_s=%.2f cache=%s", job.id,
                        video.duration_s, video.cache or "none")
            if self._quotas is not None:
                self._quotas.rendered(job.owner, video.duration_s)
            if self._observer is not None:
                self._observer.render_ended("done", video.trace)
        return kept

    async def _record_failed(self, job: JobRecord, code: str, message: str) -> None:
        recorded = await asyncio.to_thread(self.store.finish, job.id, self._worker_id,
                                           status="failed", error_code=code,
                                           error_message=message)
        if recorded:  # else it was cancelled while it failed: that is how it ended
            self._count("failed")
            logger.info("event=render_failed job=%s code=%s", job.id, code)

    def _count(self, status: str) -> None:
        if self._observer is not None:
            self._observer.render_ended(status, None)


async def _to_the_end(step: Coroutine[Any, Any, _T]) -> _T:
    """Run ``step`` to its end even if the caller is cancelled meanwhile (the caller's
    cancellation then goes on once ``step`` is done)."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


def new_job_id() -> str:
    """A fresh, unguessable job id: ``r_`` and 16 URL-safe characters."""
    return "r_" + secrets.token_urlsafe(12)
