"""Render jobs on their own deployment (a spot pool), the job store still the source of truth.

The gateway's :class:`~talkface.services.jobs.RenderQueue` claims a job from the durable
store as always, and hands the rendering to the ``Renderer`` deployment through
:class:`RemoteRenderer`. The worker renders with the same code as in-process
(:func:`~talkface.services.render.render_job`), its engines being the sibling
deployments, and streams progress back. A worker that dies mid-job (a spot node taken
away) costs only time: the job is sent again, and Serve starts a new worker.
Outputs are paths on storage the gateway and the workers share (one box, or a volume).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from talkface.engines import ModelThread
from talkface.services.render import RenderedVideo, RenderSpec, render_job
from talkface.services.store import JobRecord
from talkface.serving.deployments import replica_settings
from talkface.serving.remote import _REPLICA_GONE, unwrap_remote_error

logger = logging.getLogger(__name__)

MAX_WORKER_LOSSES = 3
"""A job whose worker died this many times in a row fails, rather than retrying forever."""
_PROGRESS_EVERY_S = 0.5
_BUSY_RETRY_S = 2.0


@serve.deployment(name="Renderer")
class RendererDeployment:
    """Renders one job at a time through the TTS and animator deployments."""

    def __init__(self, settings: dict[str, Any] | None, tts: Any, animator: Any) -> None:
        from talkface.serving.runtime import RayRuntime

        self.runtime = RayRuntime(replica_settings(settings),
                                  handles={"tts": tts, "animator": animator})
        self._encoder = ModelThread("render-encoder")

    async def render(self, spec: dict[str, Any], output: str, input_path: str | None
                     ) -> AsyncIterator[float | RenderedVideo]:
        """Render ``spec`` to ``output``: progress fractions, then the finished video."""
        progress = 0.0

        def on_progress(fraction: float) -> None:
            nonlocal progress
            progress = max(progress, fraction)

        task = asyncio.create_task(render_job(
            self.runtime, RenderSpec.from_dict(spec), Path(output),
            input_path=Path(input_path) if input_path else None, encoder=self._encoder,
            on_progress=on_progress,
        ))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=_PROGRESS_EVERY_S)
                yield progress
            yield task.result()
        finally:
            if not task.done():  # the gateway cancelled the job, or is stopping
                task.cancel()
                await asyncio.wait([task])


class RemoteRenderer:
    """The gateway's render runner: sends a job to the ``Renderer`` deployment."""

    def __init__(self, runtime: Any) -> None:
        self._runtime = runtime

    async def __call__(self, job: JobRecord, spec: RenderSpec, output: Path, *,
                       input_path: Path | None, encoder: ModelThread,
                       on_progress: Callable[[float], None]) -> RenderedVideo:
        """Render ``job`` on the Renderer deployment, relaying its progress; sent again when
        its worker dies."""
        handle = (await self._runtime._handle("renderer")).options(stream=True)
        losses = 0
        while True:
            response = handle.render.remote(spec.to_dict(), str(output),
                                            str(input_path) if input_path else None)
            try:
                async for item in response:
                    if isinstance(item, RenderedVideo):
                        return item
                    on_progress(float(item))
                raise RuntimeError("the render worker ended without a video")
            except _REPLICA_GONE as exc:
                losses += 1
                if losses >= MAX_WORKER_LOSSES:
                    raise unwrap_remote_error(exc, "Renderer") from None
                logger.warning("render %s: its worker died (%s); sending it again",
                               job.id, type(exc).__name__)
            except BackPressureError:
                # Every worker is busy and the deployment's queue is full: a render job is
                # offline work, so it waits its turn rather than failing.
                await asyncio.sleep(_BUSY_RETRY_S)
            except RayTaskError as exc:
                raise unwrap_remote_error(exc, "Renderer") from None
            except BaseException:
                response.cancel()
                raise
