"""The Ray Serve host: a :class:`~talkface.runtime.Runtime` whose engines are deployments.

Sessions, conversations, render jobs and the OpenAI endpoints ask this runtime for their
engines exactly as they ask the in-process one; what they get forwards each request to a
``DeploymentHandle`` (:class:`~talkface.serving.remote.RemoteEngine`). The VAD stays in
the gateway (it streams per session and costs little); with ``llm.backend = "openai"``
the LLM is an external server and needs no deployment.

Two small local stand-ins remain, for what sessions ask of a backend besides running it:
the ASR's language check (the deployment says which languages it knows) and the LLM's
token counting (the model's vocabulary, loaded without its weights).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from talkface.asr.base import ASRBackend, ASRCapabilities, ASRRequest, ASRSettings
from talkface.config import Settings
from talkface.engines import BatchObserver
from talkface.errors import BackendError, ConfigError
from talkface.face.base import AnimationRequest
from talkface.llm.base import GenerationRequest, GenerationStats, LLMBackend
from talkface.messages import SpeechAudio, Transcript
from talkface.runtime import Runtime
from talkface.serving import _ray
from talkface.serving.remote import RemoteEngine, RemoteLLMCall, call_with_retry
from talkface.serving.settings import STAGE_DEPLOYMENTS
from talkface.tts.base import SynthesisRequest, VoiceInfo

logger = logging.getLogger(__name__)

_REPLICAS_EVERY_S = 2.0
EMBEDDED_LLM = "llama-cpp"
"""The LLM backend that runs as a deployment; any other (``openai``) runs in the gateway."""


class RemoteASR(ASRBackend):
    """The gateway's view of the ASR deployment: its languages, for checking requests
    before they join a batch. Transcription itself goes through the engine."""

    name = "ray"
    capabilities = ASRCapabilities(batching=True, partials=True, gpu=False)

    def __init__(self, settings: ASRSettings, languages: tuple[str, ...]) -> None:
        super().__init__(settings)
        self._languages = languages

    @classmethod
    def load(cls, settings: ASRSettings) -> RemoteASR:
        """Refused: the Ray host builds its ASR view from the deployment."""
        raise ConfigError("the Ray host makes its ASR view itself; select an ASR backend "
                          "such as 'faster-whisper' for the deployment")

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages the ASR deployment's model knows."""
        return self._languages

    def _transcribe_batch(self, requests: list[ASRRequest]) -> list[Transcript]:
        raise BackendError("the Ray host transcribes through its ASR engine, not here",
                           retryable=False)


class RayRuntime(Runtime):
    """Engines shared by the sessions of this gateway, served by Ray Serve deployments.

    Args:
        settings: the settings tree (``serving`` says where Ray is and how to deploy).
        observers: told about every request's batch (metrics), as in-process.
        handles: stage name → ``DeploymentHandle``, when the caller has them already (a
            render worker inside the app); otherwise the runtime connects to Ray and
            deploys the engines application, or uses it if it already runs.
    """

    def __init__(self, settings: Settings | None = None, *,
                 observers: tuple[BatchObserver, ...] = (),
                 handles: dict[str, Any] | None = None) -> None:
        super().__init__(settings, observers=observers)
        self._handles = handles
        self._started_ray = False
        self._replicas: dict[str, int] = {}
        self._watcher: asyncio.Task[None] | None = None

    # --- connection -----------------------------------------------------------------------

    async def handles(self) -> dict[str, Any]:
        """Stage name ("asr", "llm", ...) → the handle of its deployment."""
        if self._handles is None:
            self._handles = await self._once("ray", lambda: asyncio.to_thread(self._connect))
            if self._watcher is None:
                self._watcher = asyncio.create_task(self._watch_replicas(), name="ray-replicas")
        return self._handles

    def deployment_replicas(self) -> dict[str, int]:
        """Running replicas per stage deployment, as Serve last reported them."""
        return dict(self._replicas)

    async def _watch_replicas(self) -> None:
        """Keep :meth:`deployment_replicas` fresh (Serve's status is a blocking RPC, so it
        is read here, in a thread, not when metrics are scraped)."""
        names = {name: stage for stage, name in STAGE_DEPLOYMENTS.items()}
        app_name = self.settings.serving.app_name
        while True:
            try:
                apps = await asyncio.to_thread(_ray.running_applications)
                app = apps.get(app_name)
                if app is not None:
                    self._replicas = {
                        names[name]: status.replica_states.get("RUNNING", 0)
                        for name, status in app.deployments.items() if name in names
                    }
            except Exception as exc:  # the controller restarting must not end the watch
                logger.warning("reading Serve's status failed: %s", exc)
            await asyncio.sleep(_REPLICAS_EVERY_S)

    def _connect(self) -> dict[str, Any]:
        from ray import serve

        from talkface.serving.app import build_app, gateway_overrides

        serving = self.settings.serving
        self._started_ray = _ray.connect(serving.ray_address)
        app_name = serving.app_name
        status = _ray.running_applications().get(app_name)
        if status is None:
            logger.info("deploying the engines application %r on Ray Serve", app_name)
            _ray.start_serve()
            serve.run(build_app({"settings": gateway_overrides(self.settings)}),
                      name=app_name, route_prefix=None, blocking=False)
            status = _ray.running_applications()[app_name]
        else:
            logger.info("using the engines application %r that runs on the cluster", app_name)
        deployed = set(status.deployments)
        return {stage: serve.get_deployment_handle(name, app_name=app_name)
                for stage, name in STAGE_DEPLOYMENTS.items() if name in deployed}

    async def _handle(self, stage: str) -> Any:
        handles = await self.handles()
        if stage not in handles:
            raise ConfigError(
                f"the engines application {self.settings.serving.app_name!r} has no "
                f"{STAGE_DEPLOYMENTS[stage]} deployment; deploy one with it (talkface deploy)"
            )
        return handles[stage]

    def _remote_engine(self, stage: str, handle: Any, options: Any) -> RemoteEngine[Any, Any]:
        engine: RemoteEngine[Any, Any] = RemoteEngine(
            stage, handle.submit.remote, options, observers=self._observers,
            retry_s=self.settings.serving.retry_s,
        )
        self._engines.append(engine)  # type: ignore[arg-type]
        return engine

    # --- engines --------------------------------------------------------------------------

    async def tts_engine(self, voice: VoiceInfo) -> RemoteEngine[SynthesisRequest, SpeechAudio]:
        """The TTS deployment (one for every voice; a replica loads a voice on first use)."""

        async def load() -> RemoteEngine[SynthesisRequest, SpeechAudio]:
            return self._remote_engine("tts", await self._handle("tts"),
                                       self.settings.tts.batching_options())

        return await self._once("tts-remote", load)

    async def animator_engine(self) -> RemoteEngine[AnimationRequest, list[np.ndarray]]:
        """The Animator deployment, behind the engine interface."""
        async def load() -> RemoteEngine[AnimationRequest, list[np.ndarray]]:
            return self._remote_engine("animator", await self._handle("animator"),
                                       self.settings.animator.batching_options())

        return await self._once("animator-engine", load)

    async def animator(self) -> Any:
        """Refused: the animator runs in its deployment."""
        raise ConfigError("the animator runs in its Ray Serve deployment; use "
                          "animator_engine() and prepare_avatar()")

    async def prepare_avatar(self, image: np.ndarray) -> str:
        """Prepare ``image`` on the Animator deployment; the avatar id to animate it by."""
        handle = await self._handle("animator")
        return await call_with_retry(lambda: handle.prepare_avatar.remote(image),
                                     what="animator", retry_s=self.settings.serving.retry_s)

    async def asr_backend(self) -> ASRBackend:
        """A local view of the ASR deployment: its languages and request checks."""
        async def load() -> ASRBackend:
            handle = await self._handle("asr")
            languages = await call_with_retry(lambda: handle.languages.remote(), what="ASR",
                                              retry_s=self.settings.serving.retry_s)
            return RemoteASR(self.settings.asr, tuple(languages))

        return await self._once("asr", load)

    async def asr_engine(self) -> RemoteEngine[ASRRequest, Transcript]:
        """The ASR deployment, behind the engine interface."""
        async def load() -> RemoteEngine[ASRRequest, Transcript]:
            return self._remote_engine("asr", await self._handle("asr"),
                                       self.settings.asr.batching_options())

        return await self._once("asr-engine", load)

    async def llm_backend(self) -> LLMBackend:
        """With the embedded LLM, its vocabulary only (for counting tokens here; the model
        runs in its deployment); any other backend as in-process."""
        if self.settings.llm.backend != EMBEDDED_LLM:
            return await super().llm_backend()

        async def load() -> LLMBackend:
            from talkface.llm.llama_cpp import LlamaCppLLM

            return await asyncio.to_thread(LlamaCppLLM.load_vocabulary, self.settings.llm)

        return await self._once("llm", load)

    async def llm_engine(self) -> Any:
        """With the embedded LLM, its deployment behind the engine interface; any other
        backend as in-process."""
        if self.settings.llm.backend != EMBEDDED_LLM:
            return await super().llm_engine()

        async def load() -> RemoteEngine[GenerationRequest, GenerationStats]:
            call = RemoteLLMCall(await self._handle("llm"), retry_s=self.settings.serving.retry_s)
            engine: RemoteEngine[GenerationRequest, GenerationStats] = RemoteEngine(
                "llm", call, self.settings.llm.batching_options(), observers=self._observers,
                retry_s=0.0,  # the call retries itself, only before the first token
            )
            self._engines.append(engine)  # type: ignore[arg-type]
            return engine

        return await self._once("llm-engine", load)

    def render_runner(self) -> Any:
        """Render jobs run on the Renderer deployment."""
        from talkface.serving.renderer import RemoteRenderer

        return RemoteRenderer(self)

    async def aclose(self) -> None:
        """Stop watching the deployments, then close the engines and backends."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait([self._watcher])
            self._watcher = None
        await super().aclose()
        if self._started_ray:
            import ray

            await asyncio.to_thread(ray.shutdown)
            self._started_ray = False
