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
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from talkface import process_memory
from talkface.asr.base import ASRBackend, ASRRequest
from talkface.asr.registry import ASR_BACKENDS
from talkface.config import Settings, load_settings
from talkface.degradation import DegradationLadder
from talkface.engines import BatchObserver, Engine
from talkface.errors import BackendUnavailable
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
from talkface.llm.routing import RouteCounts
from talkface.messages import SpeechAudio, Transcript
from talkface.registry import BackendEntry, load_backend_class
from talkface.tts.base import SynthesisRequest, TTSBackend, VoiceInfo
from talkface.tts.voices import backend_class, resolve_voice
from talkface.vad.base import VADBackend, VADRequest
from talkface.vad.registry import VAD_BACKENDS

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Stage:
    """How a stage's backend is found: its registry and its name in messages."""

    registry: dict[str, BackendEntry]
    label: str


_STAGES = {
    "vad": _Stage(VAD_BACKENDS, "VAD"),
    "asr": _Stage(ASR_BACKENDS, "ASR"),
    "llm": _Stage(LLM_BACKENDS, "LLM"),
    "animator": _Stage(ANIMATOR_BACKENDS, "animator"),
}
"""The stages with one backend per process, chosen by ``settings.<stage>.backend``. TTS
is apart: one backend per voice (see :meth:`Runtime.tts_engine`)."""


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
        self.route_counts = RouteCounts()
        """Answers per route (FAQ, small LLM, large LLM, fallback), for ``/metrics``."""
        self.ladder = DegradationLadder(self.settings.degradation)
        """What this process gives up under pressure now (the server feeds it)."""

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

    async def _backend(self, stage: str) -> Any:
        """The loaded backend of ``stage`` (one of :data:`_STAGES`), loading it once."""
        spec = _STAGES[stage]
        settings = getattr(self.settings, stage)

        async def load() -> Any:
            cls = load_backend_class(spec.label, spec.registry, settings.backend)
            logger.info("loading %s %s", spec.label, settings.backend)
            backend = await asyncio.to_thread(cls.load, settings)
            self.backends[stage] = backend
            return backend

        return await self._once(stage, load)

    async def _engine(self, stage: str, run_batch_name: str) -> Any:
        """The engine in front of ``stage``'s backend (its method ``run_batch_name``)."""

        async def load() -> Engine[Any, Any]:
            backend = await self._backend(stage)
            engine: Engine[Any, Any] = Engine(
                stage,
                getattr(backend, run_batch_name),
                getattr(self.settings, stage).batching_options(),
                observers=self._observers,
            )
            self._engines.append(engine)
            return engine

        return await self._once(f"{stage}-engine", load)

    async def animator(self) -> AnimatorBackend:
        """The loaded animator backend."""
        return await self._backend("animator")

    async def animator_engine(self) -> Engine[AnimationRequest, list[np.ndarray]]:
        """The animator's engine (micro-batched frame rendering)."""
        return await self._engine("animator", "animate_batch")

    async def vad(self) -> VADBackend:
        """The loaded VAD model (sessions each get their own stream of it)."""
        return await self._backend("vad")

    async def vad_engine(self) -> Engine[VADRequest, np.ndarray]:
        """The VAD engine shared by all live sessions (each scores its own stream)."""
        return await self._engine("vad", "probabilities_batch")

    async def asr_backend(self) -> ASRBackend:
        """The loaded speech recogniser."""
        return await self._backend("asr")

    async def asr_engine(self) -> Engine[ASRRequest, Transcript]:
        """The ASR engine shared by all sessions."""
        return await self._engine("asr", "transcribe_batch")

    async def llm_backend(self) -> LLMBackend:
        """The loaded LLM (or the connection to an LLM server)."""
        return await self._backend("llm")

    async def llm_engine(self) -> Engine[GenerationRequest, GenerationStats]:
        """The LLM engine shared by all sessions."""
        return await self._engine("llm", "generate_batch")

    async def large_llm_engine(self) -> Engine[GenerationRequest, GenerationStats]:
        """The large LLM's engine (an OpenAI-compatible server, ``settings.routing``); it
        runs in this process in both hosts, since the model runs on its own server."""

        async def load() -> Engine[GenerationRequest, GenerationStats]:
            from talkface.llm.openai_http import OpenAICompatibleLLM

            settings = self.settings.routing.large_llm_settings(self.settings.llm)
            backend = await asyncio.to_thread(OpenAICompatibleLLM.load, settings)
            self.backends["llm-large"] = backend
            engine: Engine[GenerationRequest, GenerationStats] = Engine(
                "llm-large", backend.generate_batch, settings.batching_options(),
                observers=self._observers,
            )
            self._engines.append(engine)
            return engine

        return await self._once("llm-large-engine", load)

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
        process_memory.freeze_loaded_objects()

    def deployment_replicas(self) -> dict[str, int]:
        """Running replicas per stage deployment (empty: engines run in this process)."""
        return {}

    def render_runner(self) -> Any:
        """What renders a job away from this process (None: render jobs run here)."""
        return None

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


def create_runtime(settings: Settings, *, observers: tuple[BatchObserver, ...] = ()) -> Runtime:
    """The host ``settings.serving.engines`` names: in-process, or Ray Serve deployments.

    Raises:
        BackendUnavailable: Ray is selected but not installed.
    """
    if settings.serving.engines == "local":
        return Runtime(settings, observers=observers)
    try:
        from talkface.serving.runtime import RayRuntime
    except ImportError as exc:
        raise BackendUnavailable(
            f"--engines ray needs Ray Serve ({exc.name or exc}); run: "
            "pip install 'talkface[serving]'"
        ) from exc
    return RayRuntime(settings, observers=observers)
