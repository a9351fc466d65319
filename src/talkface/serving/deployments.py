"""The engine deployments: each wraps a stage's existing backend class, unchanged.

A replica loads its backend exactly as the in-process host does (the stage registry,
``Backend.load(settings)``), then serves requests batched by ``@serve.batch`` with the
stage's own ``max_batch_size`` / ``max_wait_ms`` (a Serve config's ``user_config`` may
change them at run time). Every batched result travels back as :class:`Batched`, so the
gateway's metrics see batch sizes and service times as they do in-process.

Requests carry everything a replica needs (audio, voice, avatar id, seed), so any
replica serves any session. Two pieces of state live outside requests: prepared avatars
(on disk, under the animator's ``cache_dir``, so a new replica finds them; a cluster of
several machines needs that folder on shared storage), and the LLM's per-conversation KV
cache, which is why LLM requests are routed by conversation (Serve model multiplexing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from ray import serve

from talkface.asr.base import ASRBackend, ASRRequest
from talkface.asr.registry import ASR_BACKENDS
from talkface.config import Settings, load_settings
from talkface.face.base import AnimationRequest, AnimatorBackend
from talkface.face.registry import ANIMATOR_BACKENDS
from talkface.llm.base import (
    ChatMessage,
    GenerationRequest,
    GenerationStats,
    LLMBackend,
    TokenStream,
)
from talkface.llm.registry import LLM_BACKENDS
from talkface.messages import SpeechAudio, Transcript
from talkface.registry import load_backend_class
from talkface.tts.base import SynthesisRequest, TTSBackend, VoiceInfo
from talkface.tts.voices import backend_class, resolve_voice

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Defaults only: each replica sets its stage's limits in __init__ / reconfigure.
_DEFAULT_BATCH = 4
_DEFAULT_WAIT_S = 0.002
_CONVERSATIONS_PER_REPLICA = 1024
"""Conversation ids a replica remembers for routing (its KV cache has its own bound)."""


@dataclass(frozen=True, slots=True)
class Batched(Generic[T]):
    """One request's result, with the batch it ran in (for the gateway's metrics)."""

    value: T
    batch_size: int
    service_ms: float


def replica_settings(overrides: dict[str, Any] | None) -> Settings:
    """The settings a replica runs with: its node's environment and files, then ``overrides``
    (the gateway's own settings, or a Serve config's ``args.settings``)."""
    return load_settings(**(overrides or {}))


class _BatchLimits:
    """``user_config`` → the ``@serve.batch`` limits of a deployment's ``_batch`` method."""

    _max_batch_size: int
    _max_wait_ms: float

    def _set_batching(self, max_batch_size: int, max_wait_ms: float) -> None:
        self._max_batch_size, self._max_wait_ms = int(max_batch_size), float(max_wait_ms)
        batch = self._batch  # type: ignore[attr-defined]
        batch.set_max_batch_size(self._max_batch_size)
        batch.set_batch_wait_timeout_s(self._max_wait_ms / 1000.0)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this with the deployment's ``user_config`` (also on every change)."""
        self._set_batching(
            user_config.get("max_batch_size", self._max_batch_size),
            1000.0 * user_config.get("batch_wait_timeout_s", self._max_wait_ms / 1000.0),
        )


def _timed(results: list[T], started_s: float) -> list[Batched[T]]:
    service_ms = (time.perf_counter() - started_s) * 1000.0
    return [Batched(r, len(results), service_ms) for r in results]


@serve.deployment(name="ASR")
class ASRDeployment(_BatchLimits):
    """Speech recognition for every gateway's sessions, batched."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = replica_settings(settings)
        asr = self.settings.asr
        cls = load_backend_class("ASR", ASR_BACKENDS, asr.backend)
        self.backend: ASRBackend = cls.load(asr)
        self._set_batching(asr.batching.max_batch_size, asr.batching.max_wait_ms)

    @serve.batch(max_batch_size=_DEFAULT_BATCH, batch_wait_timeout_s=_DEFAULT_WAIT_S)
    async def _batch(self, requests: list[ASRRequest]) -> list[Batched[Transcript]]:
        started_s = time.perf_counter()
        return _timed(await self.backend.transcribe_batch(requests), started_s)

    async def submit(self, request: ASRRequest) -> Batched[Transcript]:
        """Transcribe one request (it joins a batch with other sessions' requests)."""
        return await self._batch(request)

    def languages(self) -> tuple[str, ...]:
        """The language codes the loaded model transcribes."""
        return self.backend.languages


@serve.deployment(name="TTS")
class TTSDeployment(_BatchLimits):
    """Speech synthesis for every voice, batched; a voice's model loads on first use."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = replica_settings(settings)
        tts = self.settings.tts
        self._backends: dict[str, TTSBackend] = {}
        self._loading = asyncio.Lock()
        for language in ("en", "zh"):  # the default voices, ready before the first request
            voice = resolve_voice(None, language, tts)
            self._backends[self._key(voice)] = backend_class(voice.backend).load(tts, voice)
        self._set_batching(tts.batching.max_batch_size, tts.batching.max_wait_ms)

    @staticmethod
    def _key(voice: VoiceInfo) -> str:
        cls = backend_class(voice.backend)
        return f"{cls.name}:{voice.name}" if cls.capabilities.one_model_per_voice else cls.name

    async def _backend(self, voice: VoiceInfo) -> TTSBackend:
        key = self._key(voice)
        async with self._loading:
            if key not in self._backends:
                logger.info("loading TTS voice %s", voice.name)
                cls = backend_class(voice.backend)
                self._backends[key] = await asyncio.to_thread(cls.load, self.settings.tts, voice)
        return self._backends[key]

    @serve.batch(max_batch_size=_DEFAULT_BATCH, batch_wait_timeout_s=_DEFAULT_WAIT_S)
    async def _batch(self, requests: list[SynthesisRequest]) -> list[Batched[SpeechAudio]]:
        started_s = time.perf_counter()
        # One batch may mix voices: each loaded model speaks its own requests, together.
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(self._key(request.voice), []).append(index)
        results: list[SpeechAudio | None] = [None] * len(requests)
        for indices in groups.values():
            backend = await self._backend(requests[indices[0]].voice)
            spoken = await backend.synthesize_batch([requests[i] for i in indices])
            for index, speech in zip(indices, spoken, strict=True):
                results[index] = speech
        return _timed([r for r in results if r is not None], started_s)

    async def submit(self, request: SynthesisRequest) -> Batched[SpeechAudio]:
        """Speak one sentence (it joins a batch with other sessions' sentences)."""
        return await self._batch(request)


@serve.deployment(name="Animator")
class AnimatorDeployment(_BatchLimits):
    """Frame rendering for every session, batched; avatars are prepared here too."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = replica_settings(settings)
        animator = self.settings.animator
        cls = load_backend_class("animator", ANIMATOR_BACKENDS, animator.backend)
        self.backend: AnimatorBackend = cls.load(animator)
        self._set_batching(animator.batching.max_batch_size, animator.batching.max_wait_ms)

    @serve.batch(max_batch_size=_DEFAULT_BATCH, batch_wait_timeout_s=_DEFAULT_WAIT_S)
    async def _batch(self, requests: list[AnimationRequest]) -> list[Batched[list[np.ndarray]]]:
        started_s = time.perf_counter()
        return _timed(await self.backend.animate_batch(requests), started_s)

    async def submit(self, request: AnimationRequest) -> Batched[list[np.ndarray]]:
        """Render one request's frames (it joins a batch with other sessions' requests)."""
        return await self._batch(request)

    async def prepare_avatar(self, image: np.ndarray) -> str:
        """Prepare a portrait (cached on disk, so every replica finds it) → avatar id."""
        return await self.backend.prepare_avatar(image)


@serve.deployment(name="LLM")
class LLMDeployment:
    """The embedded LLM, streaming replies; routed by conversation.

    The gateway names each request's conversation as its multiplexed model id, so Serve
    sends a conversation's turns to the replica that holds its KV cache, and a turn
    evaluates only its new tokens, as in-process.
    """

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = replica_settings(settings)
        llm = self.settings.llm
        cls = load_backend_class("LLM", LLM_BACKENDS, llm.backend)
        self.backend: LLMBackend = cls.load(llm)

    @serve.multiplexed(max_num_models_per_replica=_CONVERSATIONS_PER_REPLICA)
    async def _conversation(self, conversation_id: str) -> str:
        # Nothing to load: being "loaded" here is what makes Serve route the
        # conversation's next turns to this replica.
        return conversation_id

    async def generate(
        self, messages: tuple[ChatMessage, ...], max_tokens: int, temperature: float
    ) -> AsyncIterator[str | GenerationStats]:
        """Stream a reply: text deltas, then one :class:`GenerationStats`."""
        conversation_id = serve.get_multiplexed_model_id()
        if conversation_id:
            await self._conversation(conversation_id)
        stream = TokenStream()
        request = GenerationRequest(messages=messages, stream=stream, max_tokens=max_tokens,
                                    temperature=temperature)
        generation = asyncio.create_task(self.backend.generate_batch([request]))
        try:
            async for delta in stream:
                yield delta
            yield (await generation)[0]
        finally:
            if not generation.done():  # the caller went away (barge-in): stop at the next token
                stream.cancel()
                await asyncio.wait([generation])
