"""The engines application: what ``talkface serve --engines ray`` deploys and what a Serve
config (``talkface plan`` → ``talkface deploy``) names as ``talkface.serving.app:build_app``.

One deployment per stage — ``ASR``, ``LLM``, ``TTS``, ``Animator``, ``Renderer`` — under
a tiny ``Engines`` ingress that only binds them into one application. The application
has no HTTP route: gateways (``talkface serve --engines ray``) hold the sessions and
reach the deployments through handles.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from talkface.config import Settings, load_settings
from talkface.serving.deployments import (
    AnimatorDeployment,
    ASRDeployment,
    LLMDeployment,
    TTSDeployment,
)
from talkface.serving.renderer import RendererDeployment

_SECRETS = {"server": True, "llm": {"api_key": True}}
"""Left out of what replicas are given: keys stay in the gateway (Serve shows app args)."""


@serve.deployment(name="Engines", num_replicas=1, ray_actor_options={"num_cpus": 0})
class EnginesIngress:
    """Binds the stage deployments into one application; says which ones it has."""

    def __init__(self, **stages: Any) -> None:
        self._stages = sorted(stages)

    def stages(self) -> list[str]:
        """The names of the stage deployments bound into the application."""
        return self._stages


def gateway_overrides(settings: Settings) -> dict[str, Any]:
    """The gateway's settings, without its secrets, for the replicas it deploys."""
    return settings.model_dump(mode="json", exclude=_SECRETS, exclude_none=True)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """The engines application (a Serve application builder).

    Args:
        args: ``{"settings": {...}}``: settings overrides, nested as in the TOML file,
            applied in every replica over its node's environment. ``serving`` in them
            shapes each deployment (replicas, autoscaling, pools); a Serve config's own
            per-deployment fields win over both.
    """
    overrides = dict((args or {}).get("settings") or {})
    settings = load_settings(**overrides)
    replica_overrides = {k: v for k, v in overrides.items() if k != "server"}
    serving = settings.serving

    def stage(deployment: Any, name: str, *bind_args: Any) -> Any:
        return deployment.options(**serving.stage(name).deployment_options()).bind(
            replica_overrides, *bind_args)

    tts = stage(TTSDeployment, "tts")
    animator = stage(AnimatorDeployment, "animator")
    stages: dict[str, Any] = {
        "asr": stage(ASRDeployment, "asr"),
        "tts": tts,
        "animator": animator,
        "renderer": stage(RendererDeployment, "renderer", tts, animator),
    }
    if settings.llm.backend == "llama-cpp":
        stages["llm"] = stage(LLMDeployment, "llm")
    return EnginesIngress.bind(**stages)
