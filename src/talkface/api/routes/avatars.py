"""Avatars (``POST /v1/avatars``: a portrait in, an ``avatar_id`` out) and voices."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from talkface.api.bodies import LimitedBodyRoute, read_form
from talkface.api.routes._deps import AnyHolder, KeyHolder, Ready, renders_of
from talkface.api.schemas import AvatarCreated, AvatarForm, ErrorResponse, VoiceCard, VoiceList
from talkface.face.portrait import decode_portrait
from talkface.services.speech import OPENAI_VOICES
from talkface.tts.voices import list_voices

router = APIRouter(route_class=LimitedBodyRoute, tags=["avatars"],
                   responses={code: {"model": ErrorResponse}
                              for code in (400, 401, 403, 413, 429, 503)})

_AVATAR_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary",
                            "description": "a photo of one face (JPEG, PNG, WebP)"}},
}}}}}


@router.post("/v1/avatars", status_code=201, response_model=AvatarCreated,
             openapi_extra=_AVATAR_BODY)
async def create_avatar(
    request: Request,
    principal: KeyHolder,
    state: Ready,
) -> AvatarCreated:
    """Upload a portrait (one face); it is prepared once and can then be used by renders
    (``avatar_id``). The same portrait uploaded again gets the same id at once."""
    store = renders_of(request).store
    async with read_form(request, AvatarForm) as (_, upload):
        assert upload is not None
        upload.file.seek(0)
        data = await asyncio.to_thread(upload.file.read)
        name = f"portrait {upload.filename!r}" if upload.filename else "the portrait"
    image = await asyncio.to_thread(decode_portrait, data, name=name)
    avatar_id = await state.runtime.prepare_avatar(image)
    await asyncio.to_thread(store.add_avatar, avatar_id, principal.key_id)
    return AvatarCreated(avatar_id=avatar_id)


@router.get("/v1/voices", response_model=VoiceList)
async def get_voices(principal: AnyHolder) -> VoiceList:
    """The voices installed here (API key or session token)."""
    voices = await asyncio.to_thread(list_voices)
    return VoiceList(
        data=[VoiceCard(name=v.name, language=v.language, backend=v.backend,
                        description=v.description) for v in voices],
        openai_voices=list(OPENAI_VOICES),
    )
