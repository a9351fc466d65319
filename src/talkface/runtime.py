"""The in-process host: loads each engine once and lends it to every session.

``talkface say``, ``talkface chat`` and ``talkface serve`` each run one :class:`Runtime`.
Engines load lazily on first use (or eagerly with :meth:`Runtime.warm_up`), in a worker
thread so the event loop keeps serving; a second session asking for an engine that is
still loading waits for the same load.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np

from talkface.asr.base import ASRBackend, ASRRequest
from talkface.asr.registry import ASR_BACKENDS
from talkface.config import Settings, load_settings
from talkface.engines import BatchObserver, Engine
from talkface.errors import BadInput
from talkface.face.base import AnimationRequest, AnimatorBackend
from talkface.face.portrait import load_portrait
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
from talkface.vad.base import VADBackend
from talkface.vad.registry import VAD_BACKENDS

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Runtime:
    """Engines shared by all sessions of this process.

    Args:
        settings: the settings tree (default: :func:`talkface.config.load_settings`).
        observers: told about every engine batch (metrics).
    """

    def __init__(
        self, settings: Settings | None = None, *, observers: tuple[BatchObserver, ...] = ()
    ) -> None:
        self.settings = settings or load_settings()
        self._observers = observers
        self._loaded: dict[str, Any] = {}
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self._engines: list[Engine[Any, Any]] = []
        self.backends: dict[str, Any] = {}
        """Loaded backends by engine key ("tts:joe", "animator"), for tools and tests."""
        self._default_avatar_id: str | None = None
        self._primed_persona: str | None = None

    @property
    def engines(self) -> tuple[Engine[Any, Any], ...]:
        """The engines loaded so far (for metrics: queue depths, batch stats)."""
        return tuple(self._engines)

    async def _once(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        if key in self._loaded:
            return self._loaded[key]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            try:
                value = await load()
            except BaseException as exc:
                self._loading.pop(key, None)
                if not pending.done():
                    pending.set_exception(exc)
                    pending.exception()  # retrieved here, so asyncio does not warn
                raise
            self._loaded[key] = value
            pending.set_result(value)
            return value
        return await asyncio.shield(pending)

    def resolve_voice(self, name: str | None, language: str) -> VoiceInfo:
        """The voice called ``name``, or the default voice for ``language``."""
        return resolve_voice(name, language, self.settings.tts)

    async def tts_engine(self, voice: VoiceInfo) -> Engine[SynthesisRequest, SpeechAudio]:
        """The engine that speaks ``voice``, loading its model on first use."""
        cls = backend_class(voice.backend)
        key = f"tts:{voice.name}" if cls.capabilities.one_model_per_voice else f"tts:{cls.name}"

        async def load() -> Engine[SynthesisRequest, SpeechAudio]:
            logger.info("loading TTS %s", key)
            backend: TTSBackend = await asyncio.to_thread(cls.load, self.settings.tts, voice)
            self.backends[key] = backend
            engine: Engine[SynthesisRequest, SpeechAudio] = Engine(
                key,
                backend.synthesize_batch,
                self.settings.tts.batching_options(),
                observers=self._observers,
            )
            self._engines.append(engine)
            return engine

        return await self._once(key, load)

    async def animator(self) -> AnimatorBackend:
        """The loaded animator backend."""
        settings = self.settings.animator

        async def load() -> AnimatorBackend:
            cls = load_backend_class("animator", ANIMATOR_BACKENDS, settings.backend)
            logger.info("loading animator %s", settings.backend)
            backend: AnimatorBackend = await asyncio.to_thread(cls.load, settings)
            self.backends["animator"] = backend
            return backend

        return await self._once("animator", load)

    async def animator_engine(self) -> Engine[AnimationRequest, list[np.ndarray]]:
        """The animator's engine (micro-batched frame rendering)."""

        async def load() -> Engine[AnimationRequest, list[np.ndarray]]:
            backend = await self.animator()
            engine: Engine[AnimationRequest, list[np.ndarray]] = Engine(
                "animator",
                backend.animate_batch,
                self.settings.animator.batching_options(),
                observers=self._observers,
            )
            self._engines.append(engine)
            return engine

        return await self._once("animator-engine", load)

    async def vad(self) -> VADBackend:
        """The loaded VAD model (sessions each get their own stream of it)."""
        settings = self.settings.vad

        async def load() -> VADBackend:
            cls = load_backend_class("VAD", VAD_BACKENDS, settings.backend)
            backend: VADBackend = await asyncio.to_thread(cls.load, settings)
            self.backends["vad"] = backend
            return backend

        return await self._once("vad", load)

    async def asr_backend(self) -> ASRBackend:
        """The loaded speech recogniser."""
        settings = self.settings.asr

        async def load() -> ASRBackend:
            cls = load_backend_class("ASR", ASR_BACKENDS, settings.backend)
            logger.info("loading ASR %s (%s)", settings.backend, settings.model)
            backend: ASRBackend = await asyncio.to_thread(cls.load, settings)
            self.backends["asr"] = backend
            return backend

        return await self._once("asr", load)

    async def asr_engine(self) -> Engine[ASRRequest, Transcript]:
        """The ASR engine shared by all sessions."""

        async def load() -> Engine[ASRRequest, Transcript]:
            backend = await self.asr_backend()
            engine: Engine[ASRRequest, Transcript] = Engine(
                "asr",
                backend.transcribe_batch,
                self.settings.asr.batching_options(),
                observers=self._observers,
            )
            self._engines.append(engine)
            return engine

        return await self._once("asr-engine", load)

    async def llm_backend(self) -> LLMBackend:
        """The loaded LLM (or the connection to an LLM server)."""
        settings = self.settings.llm

        async def load() -> LLMBackend:
            cls = load_backend_class("LLM", LLM_BACKENDS, settings.backend)
            logger.info("loading LLM %s (%s)", settings.backend, settings.model)
            backend: LLMBackend = await asyncio.to_thread(cls.load, settings)
            self.backends["llm"] = backend
            return backend

        return await self._once("llm", load)

    async def llm_engine(self) -> Engine[GenerationRequest, GenerationStats]:
        """The LLM engine shared by all sessions."""

        async def load() -> Engine[GenerationRequest, GenerationStats]:
            backend = await self.llm_backend()
            engine: Engine[GenerationRequest, GenerationStats] = Engine(
                "llm",
                backend.generate_batch,
                self.settings.llm.batching_options(),
                observers=self._observers,
            )
            self._engines.append(engine)
            return engine

        return await self._once("llm-engine", load)

    async def prime_llm(self, persona: str) -> None:
        """Evaluate ``persona`` now, so the first reply only evaluates the user's words.

        Only for backends that keep their evaluated prefix (llama.cpp); the system prompt
        is the same prefix for every session that shares this persona.
        """
        backend = await self.llm_backend()
        if not backend.capabilities.prefix_reuse or self._primed_persona == persona:
            return
        engine = await self.llm_engine()
        stream = TokenStream()
        await engine.submit(GenerationRequest(
            messages=(ChatMessage(role="system", content=persona),
                      ChatMessage(role="user", content="Hello")),
            stream=stream, max_tokens=1, temperature=0.0,
        ))
        self._primed_persona = persona

    async def prepare_avatar(self, image: np.ndarray) -> str:
        """Prepare a portrait once (cached) and return its avatar id."""
        return await (await self.animator()).prepare_avatar(image)

    async def default_avatar(self) -> str:
        """The avatar id of the portrait shipped with talkface."""
        if self._default_avatar_id is None:
            image = await asyncio.to_thread(load_portrait, None)
            self._default_avatar_id = await self.prepare_avatar(image)
        return self._default_avatar_id

    async def warm_up(self, *, voices: tuple[VoiceInfo, ...] = ()) -> None:
        """Load the animator, the default avatar and the given voices now."""
        await self.animator_engine()
        await self.default_avatar()
        for voice in voices:
            await self.tts_engine(voice)

    def check_voice_language(self, voice: VoiceInfo, language: str) -> None:
        """Refuse a voice that cannot speak ``language`` (espeak voices speak any)."""
        if voice.backend != "espeak" and voice.language != language:
            raise BadInput(
                f"voice {voice.name!r} speaks {voice.language!r}, but the text is "
                f"{language!r}; pick a {language!r} voice (see: talkface voices)"
            )

    async def aclose(self) -> None:
        """Stop every engine and release every model."""
        for engine in self._engines:
            await engine.aclose()
        for backend in self.backends.values():
            await backend.aclose()
        self._engines.clear()
        self.backends.clear()
        self._loaded.clear()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
