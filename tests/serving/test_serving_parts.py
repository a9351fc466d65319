"""The Ray host's pieces that need no cluster: settings → Serve options, conversation
routing keys, error mapping, config checks, and the Ray internals it leans on."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.serve", reason="needs the serving extra: pip install 'talkface[serving]'")

from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from talkface.config import load_settings
from talkface.errors import BackendError, BadInput, ConfigError, Overloaded
from talkface.llm.base import ChatMessage
from talkface.serving.app import build_app, gateway_overrides
from talkface.serving.deploy import check_serve_config
from talkface.serving.remote import conversation_key, unwrap_remote_error
from talkface.serving.settings import DeploymentSettings

pytestmark = pytest.mark.unit


def test_fixed_and_autoscaled_deployments_read_as_serve_options() -> None:
    fixed = DeploymentSettings(min_replicas=2, max_replicas=2, pool="asr", num_gpus=0.5,
                               accelerator_type="T4").deployment_options()
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.5,
                                          "resources": {"pool_asr": 1},
                                          "accelerator_type": "T4"}
    scaled = DeploymentSettings(min_replicas=1, max_replicas=3,
                                target_ongoing_requests=4).deployment_options()
    assert scaled["autoscaling_config"]["max_replicas"] == 3
    assert scaled["autoscaling_config"]["target_ongoing_requests"] == 4
    assert scaled["max_queued_requests"] == 64
    with pytest.raises(ValueError, match="max_replicas"):
        DeploymentSettings(min_replicas=3, max_replicas=2)


def test_a_conversation_keeps_its_routing_key_as_it_grows() -> None:
    system = ChatMessage(role="system", content="You are Ava.")
    first = (system, ChatMessage(role="user", content="Hi, I am Sam."))
    later = (*first, ChatMessage(role="assistant", content="Hello Sam!"),
             ChatMessage(role="user", content="What is my name?"))
    other = (system, ChatMessage(role="user", content="What time is it?"))
    assert conversation_key(first) == conversation_key(later)
    assert conversation_key(first) != conversation_key(other)


def test_remote_errors_read_as_they_do_in_process() -> None:
    assert isinstance(unwrap_remote_error(BackPressureError(num_queued_requests=9,
                                                             max_queued_requests=8), "TTS"),
                      Overloaded)
    bad = BadInput("nothing to speak: the sentence is empty")
    wrapped = RayTaskError("submit", "traceback", bad)
    assert unwrap_remote_error(wrapped, "TTS") is bad
    crashed = RayTaskError("submit", "traceback", ZeroDivisionError("boom"))
    error = unwrap_remote_error(crashed, "TTS")
    assert isinstance(error, BackendError) and "ZeroDivisionError" in str(error)


def test_replicas_are_never_given_the_gateways_secrets() -> None:
    settings = load_settings(server={"api_keys": ("tfk_secret_key_000000001",)},
                             llm={"api_key": "sk-upstream-secret"})
    overrides = gateway_overrides(settings)
    assert "server" not in overrides
    assert "api_key" not in overrides["llm"]
    assert "secret" not in repr(overrides)


def _config(deployments: list[dict[str, object]]) -> dict[str, object]:
    return {"applications": [{"name": "talkface", "import_path":
                              "talkface.serving.app:build_app", "route_prefix": None,
                              "deployments": deployments}]}


def test_a_serve_config_is_checked_against_the_app_before_it_deploys() -> None:
    check_serve_config(_config([{"name": "ASR", "max_ongoing_requests": 8,
                                 "user_config": {"max_batch_size": 4}}]))
    with pytest.raises(ConfigError, match="no deployment 'SessionHost'"):
        check_serve_config(_config([{"name": "SessionHost"}]))
    with pytest.raises(ConfigError, match="below max_batch_size"):
        check_serve_config(_config([{"name": "Animator", "max_ongoing_requests": 2,
                                     "user_config": {"max_batch_size": 8}}]))
    with pytest.raises(ConfigError, match="unknown keys"):
        check_serve_config(_config([{"name": "LLM", "user_config": {"max_batch_size": 4}}]))
    with pytest.raises(ConfigError, match="not valid"):
        check_serve_config({"applications": [{"name": "x"}]})


def test_the_app_has_one_deployment_per_stage_and_no_llm_for_an_external_one() -> None:
    from talkface.serving.deploy import _build

    assert _build("talkface.serving.app:build_app", {}) >= {
        "ASR", "LLM", "TTS", "Animator", "Renderer"}
    external = _build("talkface.serving.app:build_app",
                      {"settings": {"llm": {"backend": "openai"}}})
    assert "LLM" not in external and "TTS" in external
    assert build_app() is not None


def test_the_ray_internals_talkface_leans_on_still_exist() -> None:
    """If a Ray upgrade moves these, this fails first (see talkface/serving/_ray.py)."""
    from ray._private import state as ray_state
    from ray.serve._private import api as serve_private_api
    from ray.serve.schema import ServeDeploySchema

    assert callable(serve_private_api.serve_start)
    assert callable(ray_state.actors)
    assert "applications" in ServeDeploySchema.model_fields
    app = build_app()
    assert hasattr(app, "_bound_deployment")


# --- the remote engine, with a scripted handle call --------------------------------------

from ray.exceptions import ActorDiedError  # noqa: E402

from talkface.engines import BatchingOptions  # noqa: E402
from talkface.serving.deployments import Batched  # noqa: E402
from talkface.serving.remote import RemoteEngine  # noqa: E402


class ScriptedCall:
    """Answers each call with the next scripted outcome (a value or an exception)."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, request: str) -> Batched[str]:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return Batched(f"{request}:{outcome}", batch_size=3, service_ms=5.0)


async def test_a_request_is_sent_again_while_a_dead_replica_is_replaced() -> None:
    call = ScriptedCall(ActorDiedError(), ActorDiedError(), "ok")
    seen: list[tuple[str, int]] = []
    engine = RemoteEngine("animator", call, BatchingOptions(),
                          observers=(lambda name, size, wait, service: seen.append((name, size)),),
                          retry_s=5.0)
    assert await engine.submit("frame") == "frame:ok"
    assert call.calls == 3
    assert seen == [("animator", 3)]  # the deployment's batch size reaches the metrics
    assert engine.stats.batch_sizes[3] == 1


async def test_no_replica_back_in_time_is_a_retryable_error() -> None:
    engine = RemoteEngine("tts", ScriptedCall(*[ActorDiedError()] * 50), BatchingOptions(),
                          retry_s=0.0)
    with pytest.raises(BackendError) as raised:
        await engine.submit("hello")
    assert raised.value.retryable


async def test_back_pressure_is_overloaded_and_in_flight_requests_are_bounded() -> None:
    refused = RemoteEngine("asr", ScriptedCall(BackPressureError(num_queued_requests=8,
                                                                 max_queued_requests=8)),
                           BatchingOptions())
    with pytest.raises(Overloaded):
        await refused.submit("audio")

    import asyncio

    gate = asyncio.Event()

    async def slow(request: str) -> Batched[str]:
        await gate.wait()
        return Batched(request, 1, 1.0)

    engine = RemoteEngine("asr", slow, BatchingOptions(max_queue_size=2))
    waiting = [asyncio.ensure_future(engine.submit(str(n))) for n in range(2)]
    await asyncio.sleep(0)
    assert engine.queue_depth == 2
    with pytest.raises(Overloaded, match="max_queue_size=2"):
        await engine.submit("third")
    gate.set()
    assert await asyncio.gather(*waiting) == ["0", "1"]
    assert engine.queue_depth == 0

