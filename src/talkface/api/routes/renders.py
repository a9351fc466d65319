"""Render jobs: ``/v1/renders``. A video of the avatar saying a text, or lip-syncing audio.

``POST /v1/renders`` answers 202 at once with the job (``status: "queued"``); poll
``GET /v1/renders/{id}`` for ``status`` and ``progress``, then download
``GET /v1/renders/{id}/video``. ``DELETE`` cancels a pending job, or deletes a finished
one and its video. Jobs belong to the API key that created them and survive a restart
of the server (see :mod:`talkface.services.jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from talkface.api.auth import Principal
from talkface.api.bodies import LimitedBodyRoute, read_form, read_json, save_upload, upload_suffix
from talkface.api.errors import AvatarNotFound
from talkface.api.metrics import metrics_of
from talkface.api.routes._deps import KeyHolder, renders_of
from talkface.api.schemas import (
    ErrorBody,
    ErrorResponse,
    RenderForm,
    RenderJob,
    RenderList,
    RenderRequest,
)
from talkface.audio_file import load_audio_file
from talkface.errors import BadInput, ConfigError, Overloaded, TalkfaceError
from talkface.services.jobs import (
    RenderNotFound,
    RenderNotReady,
    RenderQueue,
    new_job_id,
)
from talkface.services.render import RenderSpec
from talkface.services.speech import api_voice_name, resolve_api_voice
from talkface.services.store import JobRecord, Store, default_data_dir
from talkface.text.policy import speech_text

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def _render_jobs(app: FastAPI) -> AsyncIterator[None]:
    """Open the job store and render queued jobs for as long as the server runs."""
    state = app.state.talkface
    root = (state.settings.server.data_dir or default_data_dir()).expanduser()
    try:
        store = await asyncio.to_thread(Store, root)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"server.data_dir {root} cannot hold render jobs ({exc}); "
                          "point it at a writable folder") from None
    metrics = metrics_of(app)
    queue = RenderQueue(state, store, metrics, runner=state.runtime.render_runner(),
                        quotas=state.quotas)
    app.state.renders = queue
    metrics.watch_renders(queue.pending_count)
    worker = asyncio.create_task(queue.run(), name="render-jobs")
    try:
        yield
    finally:
        worker.cancel()
        await asyncio.wait([worker])
        if not worker.cancelled() and worker.exception() is not None:
            logger.error("the render queue stopped", exc_info=worker.exception())


router = APIRouter(route_class=LimitedBodyRoute, tags=["renders"], lifespan=_render_jobs,
                   responses={code: {"model": ErrorResponse}
                              for code in (400, 401, 403, 404, 409, 413, 429, 503)})


def _form_schema() -> dict[str, object]:
    fields = RenderForm.model_json_schema()["properties"]
    return {"type": "object", "properties": {"file": {"type": "string", "format": "binary"},
                                             **fields}}


_RENDER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": RenderRequest.model_json_schema()},
    "multipart/form-data": {"schema": _form_schema()},
}}}


@router.post("/v1/renders", status_code=202, response_model=RenderJob,
             openapi_extra=_RENDER_BODY)
async def create_render(request: Request, response: Response,
                        principal: KeyHolder) -> RenderJob:
    """Queue a render: JSON with ``text``, or a multipart form with an audio ``file``
    (the avatar lip-syncs it) or ``text``."""
    queue = renders_of(request)
    if queue.state.failed is not None:
        raise Overloaded(f"renders cannot run: the models failed to load ({queue.state.failed})",
                         retry_after_s=60.0)
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        async with read_form(request, RenderForm, file_required=False) as (form, upload):
            if upload is not None:
                if form.text is not None or form.voice is not None or form.language is not None:
                    raise BadInput("send either text (with voice, language) or an audio file "
                                   "to lip-sync, not both")
                job = await _submit_audio(queue, principal, form, upload)
            elif form.text is None:
                raise BadInput("nothing to render: send text, or an audio file in 'file'")
            else:
                job = await queue.submit(principal.key_id, await _text_spec(
                    queue, principal, form.text, voice=form.voice, language=form.language,
                    avatar_id=form.avatar_id, speed=form.speed, seed=form.seed,
                ))
    else:
        body = await read_json(request, RenderRequest)
        job = await queue.submit(principal.key_id, await _text_spec(
            queue, principal, body.text, voice=body.voice, language=body.language,
            avatar_id=body.avatar_id, speed=body.speed, seed=body.seed,
        ))
    response.headers["Location"] = f"/v1/renders/{job.id}"
    return _wire(job)


async def _text_spec(queue: RenderQueue, principal: Principal, text: str, *, voice: str | None,
                     language: str | None, avatar_id: str | None, speed: float,
                     seed: int | None) -> RenderSpec:
    """Check a text render now, so that a bad request is a 4xx and not a failed job."""
    limits = queue.state.settings.server.limits
    checked = speech_text(text, language=language, limit_chars=limits.max_text_chars)
    await asyncio.to_thread(resolve_api_voice, queue.state.runtime, voice, checked.language)
    await _check_avatar(queue.store, avatar_id, principal)
    # The text keeps its emotion tag: the job speaks it as `talkface say` does.
    return RenderSpec(kind="text", text=text.strip(), voice=api_voice_name(voice),
                      language=checked.language, avatar_id=avatar_id, speed=speed,
                      seed=seed)  # None: the caches' fixed seed (re-runs match)


async def _submit_audio(queue: RenderQueue, principal: Principal, form: RenderForm,
                        upload: UploadFile) -> JobRecord:
    limits = queue.state.settings.server.limits
    job_id = new_job_id()
    suffix = upload_suffix(upload, ".audio")
    path = queue.store.inputs_dir / f"{job_id}{suffix}"
    try:
        await save_upload(upload, path)
        try:  # decoded once now, so a file that cannot be used is a 4xx, not a failed job
            await asyncio.to_thread(load_audio_file, path, max_duration_s=limits.max_audio_s)
        except TalkfaceError as exc:
            # Name the user's file, not the server's path.
            exc.message = exc.message.replace(str(path), f"the uploaded file "
                                                         f"{upload.filename or 'file'!r}")
            raise
        await _check_avatar(queue.store, form.avatar_id, principal)
        spec = RenderSpec(kind="audio", avatar_id=form.avatar_id, speed=form.speed,
                          seed=form.seed, input_suffix=suffix,
                          max_audio_s=limits.max_audio_s)
        return await queue.submit(principal.key_id, spec, job_id=job_id)
    except BaseException:
        await asyncio.to_thread(path.unlink, True)
        raise


async def _check_avatar(store: Store, avatar_id: str | None, principal: Principal) -> None:
    if avatar_id is not None and not await asyncio.to_thread(
        store.owns_avatar, avatar_id, principal.key_id
    ):
        raise AvatarNotFound(
            f"no avatar {avatar_id!r} for this API key; upload the portrait first "
            "(POST /v1/avatars) and use the avatar_id it returns"
        )


@router.get("/v1/renders", response_model=RenderList)
async def list_renders(request: Request, principal: KeyHolder) -> RenderList:
    """Your 100 most recent render jobs, newest first."""
    jobs = await renders_of(request).list_jobs(principal.key_id)
    return RenderList(data=[_wire(job) for job in jobs])


@router.get("/v1/renders/{job_id}", response_model=RenderJob)
async def get_render(job_id: str, request: Request,
                     principal: KeyHolder) -> RenderJob:
    """A job's status (queued, running, done, failed, cancelled) and progress (0..1)."""
    return _wire(await renders_of(request).get(job_id, principal.key_id))


@router.get("/v1/renders/{job_id}/video", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}, "description": "the MP4"}})
async def get_render_video(job_id: str, request: Request,
                           principal: KeyHolder) -> FileResponse:
    """The finished MP4 (409 while the job is not done)."""
    queue = renders_of(request)
    job = await queue.get(job_id, principal.key_id)
    if job.status == "failed":
        raise RenderNotReady(f"render {job_id} failed, so it has no video: {job.error_message}")
    if job.status == "cancelled":
        raise RenderNotReady(f"render {job_id} was cancelled, so it has no video")
    if job.status != "done":
        raise RenderNotReady(
            f"render {job_id} is {job.status} ({job.progress:.0%} done); fetch the video "
            "when GET /v1/renders/{id} says status 'done'"
        )
    path = queue.store.video_path(job_id)
    if not await asyncio.to_thread(path.is_file):
        raise RenderNotFound(f"the video of render {job_id} is no longer on this server; "
                             "render it again")
    return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4",
                        content_disposition_type="inline")


@router.delete("/v1/renders/{job_id}", response_model=RenderJob,
               responses={204: {"description": "the finished job and its video were deleted"}})
async def delete_render(job_id: str, request: Request,
                        principal: KeyHolder) -> RenderJob | Response:
    """Cancel a queued or running job (200, status ``cancelled``); delete a finished job
    and its video (204)."""
    job = await renders_of(request).cancel_or_delete(job_id, principal.key_id)
    return _wire(job) if job is not None else Response(status_code=204)


def _wire(job: JobRecord) -> RenderJob:
    error = None
    if job.status == "failed":
        code = job.error_code or "render_failed"
        error = ErrorBody(message=job.error_message or "the render failed", type=code, code=code)
    return RenderJob(
        id=job.id, status=job.status,  # type: ignore[arg-type]
        progress=round(min(1.0, max(0.0, job.progress)), 3),
        input=job.kind,  # type: ignore[arg-type]
        error=error, created_at=job.created_s, started_at=job.started_s,
        finished_at=job.finished_s, attempts=job.attempts,
        duration_s=round(job.duration_s, 3) if job.duration_s is not None else None,
        video_url=f"/v1/renders/{job.id}/video" if job.status == "done" else None,
    )
