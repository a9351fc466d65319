"""The plan's Serve config and KubeRay RayService: valid for Ray, complete for KubeRay,
and placing every replica on a pool that exists."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import pytest
import yaml

from talkface.planner import SLO, PlanOptions, Profile, make_plan
from talkface.planner.plan import Plan
from talkface.planner.rayservice import rayservice, rayservice_yaml
from talkface.planner.serve_config import scale_to_box, serve_config, serve_config_yaml

pytestmark = pytest.mark.unit

DEPLOYMENTS = {"ASR", "LLM", "TTS", "Animator", "Renderer"}
BATCHED = {"ASR", "TTS", "Animator"}


def _ray_schema() -> Any:
    # Ray's pydantic models warn about their own deprecated Field() use at import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("ray.serve.schema")
        from ray.serve.config import AutoscalingConfig
        from ray.serve.schema import ServeDeploySchema
    return ServeDeploySchema, AutoscalingConfig


def _validate_with_ray(config: dict[str, Any]) -> None:
    deploy_schema, autoscaling = _ray_schema()
    deploy_schema.model_validate(config)
    for d in config["applications"][0]["deployments"]:
        # The schema takes autoscaling_config as a plain dict; Ray checks it at deploy time.
        autoscaling.model_validate(d["autoscaling_config"])


@pytest.fixture(scope="module")
def cluster() -> Plan:
    return make_plan(Profile.from_published(), sessions=1000, options=PlanOptions(simulate=False))


@pytest.fixture
def box(cpu_profile: Profile) -> Plan:
    options = PlanOptions(slo=SLO(ttff_p95_ms=2500), simulate=False)
    return make_plan(cpu_profile, sessions=20, options=options)


def _deployments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (application,) = config["applications"]
    return {d["name"]: d for d in application["deployments"]}


def _group_resources(group: dict[str, Any]) -> dict[str, float]:
    text = group["rayStartParams"]["resources"]
    assert text.startswith('"') and text.endswith('"')  # KubeRay's quoted, escaped JSON
    return json.loads(text[1:-1].replace('\\"', '"'))


@pytest.mark.parametrize("which", ["cluster", "box"])
def test_serve_config_is_what_ray_and_the_app_expect(which: str, request: Any) -> None:
    plan: Plan = request.getfixturevalue(which)
    config = yaml.safe_load(serve_config_yaml(plan))
    _validate_with_ray(config)
    (application,) = config["applications"]
    assert application["name"] == "talkface"
    assert application["import_path"] == "talkface.serving.app:build_app"
    assert application["route_prefix"] is None  # engines only; gateways hold the routes
    deployments = _deployments(config)
    assert set(deployments) == DEPLOYMENTS
    for name, d in deployments.items():
        assert "num_replicas" not in d
        scaling = d["autoscaling_config"]
        assert 1 <= scaling["min_replicas"] <= scaling["initial_replicas"]
        assert scaling["initial_replicas"] <= scaling["max_replicas"]
        assert d["max_queued_requests"] == -1 or d["max_queued_requests"] >= 1
        resources = d["ray_actor_options"]["resources"]
        assert len(resources) == 1 and next(iter(resources)).startswith("pool_")
        if name in BATCHED:
            batch = d["user_config"]["max_batch_size"]
            # Ray's @serve.batch never fills a batch larger than max_ongoing_requests.
            assert d["max_ongoing_requests"] >= batch >= 1
            assert d["user_config"]["batch_wait_timeout_s"] >= 0
        else:
            assert "user_config" not in d
    # The job store is the real queue: Serve's is bounded, and a refused job waits.
    assert 1 <= deployments["Renderer"]["max_queued_requests"] <= 64
    if which == "cluster":
        for name, stage in (("ASR", "asr"), ("LLM", "llm"), ("TTS", "tts"),
                            ("Animator", "animator")):
            d, sp = deployments[name], plan.stages[stage]
            assert d["autoscaling_config"]["max_replicas"] == sp.replicas
            assert d["ray_actor_options"]["num_gpus"] == sp.num_gpus > 0
            assert d["ray_actor_options"]["resources"] == {f"pool_{stage}": 1}
        assert deployments["Renderer"]["ray_actor_options"]["resources"] == {"pool_render": 1}
    else:
        assert all(d["ray_actor_options"]["num_gpus"] == 0 for d in deployments.values())


@pytest.mark.parametrize("which", ["cluster", "box"])
def test_rayservice_has_what_kuberay_needs(which: str, request: Any) -> None:
    plan: Plan = request.getfixturevalue(which)
    service = yaml.safe_load(rayservice_yaml(plan, image="registry.example/talkface:1"))
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    assert service["metadata"]["name"]
    spec = service["spec"]
    served = yaml.safe_load(spec["serveConfigV2"])
    assert served["applications"] == yaml.safe_load(serve_config_yaml(plan))["applications"]
    _validate_with_ray(served)
    cluster = spec["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (head_container,) = head["template"]["spec"]["containers"]
    assert head_container["image"] == "registry.example/talkface:1"
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    declared: dict[str, tuple[dict[str, Any], float]] = {}
    for group in groups.values():
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] >= 1
        containers = group["template"]["spec"]["containers"]
        assert containers and all(c["image"] == "registry.example/talkface:1" for c in containers)
        assert "num-cpus" in group["rayStartParams"]
        if "resources" in group["rayStartParams"]:
            for resource, units in _group_resources(group).items():
                declared[resource] = (group, units)
    # Every replica's pool resource (and GPU kind) is declared by a group that can hold
    # the deployment's peak replicas.
    for name, d in _deployments(served).items():
        actor = d["ray_actor_options"]
        ((resource, units),) = actor["resources"].items()
        group, per_node = declared[resource]
        nodes_needed = math.ceil(d["autoscaling_config"]["max_replicas"] * units / per_node)
        assert group["maxReplicas"] >= nodes_needed, name
        if actor.get("accelerator_type"):
            assert f"accelerator_type:{actor['accelerator_type']}" in _group_resources(group)
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        if actor["num_gpus"] > 0:
            assert limits["nvidia.com/gpu"] == "1"
            assert group["template"]["spec"]["nodeSelector"]
        else:
            assert "nvidia.com/gpu" not in limits
    # The gateway runs beside a Ray node (KubeRay's container 0), sharing its /tmp/ray.
    gateway_group = groups["gateway" if which == "cluster" else "box"]
    ray_node, gateway = gateway_group["template"]["spec"]["containers"]
    command = " ".join(gateway["command"])
    assert "talkface serve --engines ray --ray-address auto --host 0.0.0.0" in command
    for container in (ray_node, gateway):
        assert {"name": "ray-tmp", "mountPath": "/tmp/ray"} in container["volumeMounts"]
    if which == "cluster":
        assert gateway_group["rayStartParams"]["num-cpus"] == "0"
        spot = groups["render"]["template"]["spec"]
        assert spot["nodeSelector"] and spot["tolerations"]


def test_scale_to_box_fits_a_two_core_machine(cluster: Plan) -> None:
    config = serve_config(cluster)
    before = json.dumps(config)
    small = scale_to_box(config, cpus=2)
    assert json.dumps(config) == before  # a copy; the plan's config is untouched
    _validate_with_ray(small)
    assert small["proxy_location"] == "Disabled"
    deployments = _deployments(small)
    assert set(deployments) == DEPLOYMENTS
    assert sum(d["ray_actor_options"]["num_cpus"] for d in deployments.values()) <= 2
    for d in deployments.values():
        actor = d["ray_actor_options"]
        assert actor["num_gpus"] == 0 and actor["num_cpus"] > 0
        assert "accelerator_type" not in actor and not actor.get("resources")
        scaling = d["autoscaling_config"]
        bounds = ("min_replicas", "initial_replicas", "max_replicas")
        assert [scaling[k] for k in bounds] == [1, 1, 1]
        batch = d.get("user_config", {}).get("max_batch_size", 1)
        assert batch <= d["max_ongoing_requests"] <= max(batch, 8)
    with pytest.raises(ValueError, match="cpus"):
        scale_to_box(config, cpus=0)


def test_the_rayservice_is_one_kubernetes_object(cluster: Plan) -> None:
    text = rayservice_yaml(cluster)
    assert len(list(yaml.safe_load_all(text))) == 1
    assert yaml.safe_load(text) == rayservice(cluster)
