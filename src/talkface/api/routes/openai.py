"""OpenAI-compatible endpoints, backed by the engines the live sessions share.

Point any OpenAI client at ``http://HOST:PORT/v1`` with a talkface API key:

* ``POST /v1/audio/speech``: text to audio (mp3, opus, aac, flac, wav, pcm);
* ``POST /v1/audio/transcriptions``: an audio file to text (json, text, verbose_json);
* ``POST /v1/chat/completions``: a chat reply, whole or streamed as server-sent events;
* ``GET /v1/models``: what the names above stand for here.

Model names in requests are accepted as they are (talkface has one model per stage) and
echoed back. Each request takes its turn in the shared engines' batches, next to the
live sessions, and is refused with 503 and Retry-After when an engine's queue is full.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from talkface.api.bodies import LimitedBodyRoute, read_form, save_upload, upload_suffix
from talkface.api.errors import ModelNotFound
from talkface.api.quotas import chat_quota
from talkface.api.routes._deps import KeyHolder, Ready
from talkface.api.schemas import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatReplyMessage,
    ErrorBody,
    ErrorResponse,
    ModelCard,
    ModelList,
    SpeechRequest,
    Transcription,
    TranscriptionForm,
    TranscriptionSegment,
    TranscriptionVerbose,
    Usage,
)
from talkface.asr.base import ASRRequest
from talkface.audio_file import load_audio_file
from talkface.errors import BadInput, TalkfaceError
from talkface.faq.service import answer_from_faq, last_user_text
from talkface.llm.routing import route_answer
from talkface.services.chat import ChatRun, plan_chat
from talkface.services.speech import (
    MEDIA_TYPES,
    encode_audio,
    resolve_api_voice,
    synthesize_text,
)
from talkface.text.policy import speech_text

router = APIRouter(route_class=LimitedBodyRoute, tags=["openai"],
                   responses={code: {"model": ErrorResponse}
                              for code in (400, 401, 403, 404, 413, 429, 503)})
_STARTED_S = int(time.time())


@router.post("/v1/audio/speech", response_class=Response,
             responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()},
                              "description": "the encoded audio"}})
async def create_speech(
    body: SpeechRequest,
    principal: KeyHolder,
    state: Ready,
) -> Response:
    """Speak ``input`` with ``voice``; the language is detected from the text."""
    limits = state.settings.server.limits
    text = speech_text(body.input, language=None, limit_chars=limits.max_text_chars)
    runtime = state.runtime
    voice = await asyncio.to_thread(resolve_api_voice, runtime, body.voice, text.language)
    samples, rate_hz = await synthesize_text(runtime, text, voice, speed=body.speed)
    audio = await asyncio.to_thread(encode_audio, samples, rate_hz, body.response_format)
    return Response(audio, media_type=MEDIA_TYPES[body.response_format])


_TRANSCRIPTION_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary"},
                **TranscriptionForm.model_json_schema()["properties"],
            },
        }}},
    }
}


@router.post("/v1/audio/transcriptions", response_model=None, openapi_extra=_TRANSCRIPTION_BODY,
             responses={200: {"model": TranscriptionVerbose}})
async def create_transcription(
    request: Request,
    principal: KeyHolder,
    state: Ready,
) -> Transcription | TranscriptionVerbose | PlainTextResponse:
    """Transcribe an uploaded audio file (any format FFmpeg reads)."""
    limits = state.settings.server.limits
    async with read_form(request, TranscriptionForm) as (form, upload):
        assert upload is not None
        if form.stream:
            raise BadInput("stream: streamed transcription is not offered; leave it unset")
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="talkface-upload-"))
        try:
            path = folder / f"upload{upload_suffix(upload)}"
            await save_upload(upload, path)
            try:
                audio, info = await asyncio.to_thread(
                    load_audio_file, path, max_duration_s=limits.max_audio_s
                )
            except TalkfaceError as exc:
                # Name the user's file, not the server's temporary path.
                exc.message = exc.message.replace(
                    str(path), f"the uploaded file {upload.filename or 'file'!r}"
                )
                raise
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
    backend = await state.runtime.asr_backend()
    asr_request = ASRRequest(audio=audio, language=form.language)
    backend.check_request(asr_request)  # one bad request must not fail others' batch
    transcript = await (await state.runtime.asr_engine()).submit(asr_request)
    text = transcript.text.strip()
    if form.response_format == "text":
        return PlainTextResponse(text)
    if form.response_format == "verbose_json":
        segments = [TranscriptionSegment(id=0, start=0.0, end=round(info.duration_s, 3), text=text)]
        return TranscriptionVerbose(
            language=transcript.language or form.language or "unknown",
            duration=round(info.duration_s, 3),
            text=text,
            segments=segments if text else [],
        )
    return Transcription(text=text)


@router.post("/v1/chat/completions", response_model=None,
             responses={200: {"model": ChatCompletion,
                              "content": {"text/event-stream": {}}}})
async def create_chat_completion(
    body: ChatCompletionRequest,
    principal: KeyHolder,
    state: Ready,
    response: Response,
) -> ChatCompletion | StreamingResponse:
    """A reply to ``messages``; with ``stream: true``, ``chat.completion.chunk`` events.

    A question the FAQ answers gets the FAQ's answer with no LLM call; others go to the
    small or the large LLM as the routing policy says (:mod:`talkface.llm.routing`). The
    header ``x-talkface-route`` says which: ``faq``, ``small`` (the embedded LLM) or
    ``large``; ``x-talkface-route-fallback: large`` marks a small answer that stood in for
    an unreachable large model."""
    runtime = state.runtime
    quota = chat_quota(state, principal)  # 429 when the key's LLM tokens are used up today
    plan = plan_chat(body, await runtime.llm_backend(), state.settings)
    faq = await answer_from_faq(state.settings.faq, last_user_text(plan.messages))
    routed = await route_answer(runtime, last_user_text(plan.messages),
                                faq.answer if faq else None)
    run = ChatRun(routed.as_engine(), plan)
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())
    try:
        await run.start()
    except BaseException:
        run.cancel()
        raise
    response.headers.update(routed.headers())  # known once the first text came
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = quota.counted(
            _chunk_events(run, completion_id, created, body.model, include_usage), run)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          **routed.headers()})
    try:
        async for _ in run.deltas():
            pass
    finally:
        run.cancel()
        quota.charge(run)
    return ChatCompletion(
        id=completion_id, created=created, model=body.model,
        choices=[ChatChoice(message=ChatReplyMessage(content=run.text),
                            finish_reason=run.finish_reason)],  # type: ignore[arg-type]
        usage=_usage(run),
    )


def _usage(run: ChatRun) -> Usage:
    prompt = run.stats.prompt_tokens if run.stats else 0
    completion = run.stats.completion_tokens if run.stats else 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=prompt + completion)


async def _chunk_events(run: ChatRun, completion_id: str, created: int, model: str,
                        include_usage: bool) -> AsyncIterator[str]:
    def event(choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
        chunk = ChatCompletionChunk(id=completion_id, created=created, model=model,
                                    choices=choices, usage=usage)
        return f"data: {chunk.model_dump_json()}\n\n"

    try:
        yield event([ChatChunkChoice(delta=ChatDelta(role="assistant", content=""))])
        try:
            async for delta in run.deltas():
                yield event([ChatChunkChoice(delta=ChatDelta(content=delta))])
        except TalkfaceError as exc:
            # The status line is sent: the error goes in the stream, as OpenAI does.
            error = ErrorBody(message=str(exc), type=exc.code, code=exc.code)
            yield f"data: {ErrorResponse(error=error).model_dump_json()}\n\n"
            return
        yield event([ChatChunkChoice(delta=ChatDelta(),
                                     finish_reason=run.finish_reason)])  # type: ignore[arg-type]
        if include_usage:
            yield event([], _usage(run))
        yield "data: [DONE]\n\n"
    finally:
        # Runs when the client goes away too; nothing here may await.
        run.cancel()


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request, principal: KeyHolder) -> ModelList:
    """The models behind the endpoints: the LLM, the ASR model and the TTS."""
    return ModelList(data=_models(request))


@router.get("/v1/models/{model_id}", response_model=ModelCard)
async def get_model(model_id: str, request: Request,
                    principal: KeyHolder) -> ModelCard:
    """``GET /v1/models/{model_id}``: that model's card, or 404 naming the models there are."""
    for card in _models(request):
        if card.id == model_id:
            return card
    known = ", ".join(c.id for c in _models(request))
    raise ModelNotFound(f"no model {model_id!r} here; models: {known}")


def _model_name(model: str) -> str:
    """A packaged model by its name ("qwen2.5-coder-0.5b"), a GGUF file by its stem."""
    return Path(model).stem if model.lower().endswith(".gguf") else model


def _models(request: Request) -> list[ModelCard]:
    settings = request.app.state.talkface.settings
    names = (_model_name(settings.llm.model), f"whisper-{Path(settings.asr.model).name}",
             "talkface-tts")
    return [ModelCard(id=name, created=_STARTED_S) for name in names]
