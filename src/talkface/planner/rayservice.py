"""The plan as a KubeRay ``RayService``: the Serve config plus the cluster that runs it.

``kubectl apply -f plan/rayservice.yaml`` (KubeRay operator installed) brings up:

- a head pod that runs no workloads (``num-cpus: "0"``): GCS, dashboard, Serve's
  controller and its (route-less) proxy, and the in-tree autoscaler;
- one worker group per machine pool (:mod:`talkface.planner.pools`), each declaring its
  custom resource ``pool_<name>`` (and its GPU's ``accelerator_type:<X>`` resource, so the
  autoscaler can start a node for a replica that asks for it) in ``rayStartParams``;
  GPU pools select nodes by the ``talkface.dev/gpu`` label, the render pool spot nodes by
  ``talkface.dev/capacity: spot`` (label your node pools so, or edit the selectors);
- a ``gateway`` group whose pods run the gateway next to a Ray node: the first container
  is the Ray node KubeRay starts (``ray start ... --block``); a second container, sharing
  ``/tmp/ray`` with it through an ``emptyDir``, waits for the file ``ray start`` writes
  once the node is up (``/tmp/ray/ray_current_cluster``), then runs
  ``talkface serve --engines ray --ray-address auto``, which joins through that node
  (the pattern of KubeRay's log-collecting sidecars). KubeRay only ever changes the
  first container. Gateway nodes declare ``num-cpus: "0"``: no Ray work lands there.

``spec.serveConfigV2`` is :func:`talkface.planner.serve_config.serve_config`, as YAML text.
Every pod mounts the shared volume ``talkface-data`` (a ReadWriteMany claim you create)
at ``/data``: prepared avatars, models assembled at first use and render outputs live on
disk, and every node must see the same ones.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from talkface.planner.plan import Plan
from talkface.planner.pools import (
    GATEWAY_MEMORY_GIB,
    GatewayPlan,
    Pool,
    gateway_plan,
    machine_pools,
)
from talkface.planner.serve_config import SERVE_HTTP_PORT, serve_config

DEFAULT_IMAGE = "talkface:latest"
NAME = "talkface"
GPU_NODE_LABEL = "talkface.dev/gpu"
SPOT_NODE_LABEL = "talkface.dev/capacity"
GATEWAY_PORT = 8000
DATA_CLAIM = "talkface-data"
DATA_MOUNT = "/data"
API_KEYS_SECRET = "talkface-api-keys"
"""A Secret with key ``api-keys`` (``k1,k2``): every gateway must accept the same keys."""
RAY_TMP = "/tmp/ray"
HEAD_CPUS = 2
HEAD_MEMORY_GIB = 8
GATEWAY_RAY_CPUS = 1
"""Cores of the Ray node beside each gateway (a raylet with no work to run)."""
GATEWAY_RAY_MEMORY_GIB = 2
GATEWAY_COMMAND = (
    f"until [ -s {RAY_TMP}/ray_current_cluster ]; do sleep 1; done; "
    f"exec talkface serve --engines ray --ray-address auto --host 0.0.0.0 --port {GATEWAY_PORT}"
)


def ray_resources_param(resources: dict[str, float]) -> str:
    """Custom resources as ``rayStartParams.resources`` wants them: a JSON object with its
    quotes escaped, inside quotes (KubeRay pastes it into a shell ``ray start`` line)."""
    return '"' + json.dumps(resources).replace('"', '\\"') + '"'


def _fmt(value: float) -> str:
    return f"{value:g}"


def _env() -> list[dict[str, Any]]:
    return [
        {"name": "TALKFACE_CACHE_DIR", "value": f"{DATA_MOUNT}/cache"},
        {"name": "TALKFACE_SERVER__DATA_DIR", "value": f"{DATA_MOUNT}/renders"},
    ]


def _resources(cpus: float, memory_gib: float, gpus: int = 0, *,
               cpu_limit: bool = True) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": _fmt(cpus), "memory": f"{_fmt(memory_gib)}Gi"}
    if gpus:
        amounts["nvidia.com/gpu"] = str(gpus)
    limits = dict(amounts)
    if not cpu_limit:
        del limits["cpu"]
    return {"requests": amounts, "limits": limits}


def _ray_container(name: str, image: str, resources: dict[str, Any],
                   extra_mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "env": _env(),
        "resources": resources,
        "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT}, *(extra_mounts or [])],
    }


def _data_volume() -> dict[str, Any]:
    return {"name": "data", "persistentVolumeClaim": {"claimName": DATA_CLAIM}}


def _labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": component}


def _head(image: str) -> dict[str, Any]:
    container = _ray_container("ray-head", image, _resources(HEAD_CPUS, HEAD_MEMORY_GIB))
    container["ports"] = [
        {"containerPort": 6379, "name": "gcs"},
        {"containerPort": 8265, "name": "dashboard"},
        {"containerPort": 10001, "name": "client"},
        # KubeRay probes Serve's proxy on the port named "serve".
        {"containerPort": SERVE_HTTP_PORT, "name": "serve"},
    ]
    return {
        # Workloads stay off the head: its loss would take the cluster with it.
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": {
            "metadata": {"labels": _labels("head")},
            "spec": {"containers": [container], "volumes": [_data_volume()]},
        },
    }


def _pool_group(pool: Pool, image: str) -> dict[str, Any]:
    resources: dict[str, float] = {pool.resource: pool.slots_per_node}
    if pool.accelerator_type:
        resources[f"accelerator_type:{pool.accelerator_type}"] = 1
    spec: dict[str, Any] = {
        "containers": [_ray_container(
            "ray-worker", image,
            _resources(pool.cpus_per_node, pool.memory_gib_per_node, pool.gpus_per_node))],
        "volumes": [_data_volume()],
    }
    selector: dict[str, str] = {}
    tolerations: list[dict[str, str]] = []
    if pool.gpu is not None:
        selector[GPU_NODE_LABEL] = pool.gpu
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists",
                            "effect": "NoSchedule"})
    if pool.spot:
        selector[SPOT_NODE_LABEL] = "spot"
        tolerations.append({"key": SPOT_NODE_LABEL, "operator": "Equal", "value": "spot",
                            "effect": "NoSchedule"})
    if selector:
        spec["nodeSelector"] = selector
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "groupName": pool.name,
        "replicas": pool.nodes_average,
        "minReplicas": pool.nodes_min,
        "maxReplicas": pool.nodes_max,
        "rayStartParams": {
            "num-cpus": _fmt(pool.ray_cpus_per_node),
            "resources": ray_resources_param(resources),
        },
        "template": {"metadata": {"labels": _labels(pool.name)}, "spec": spec},
    }


def _gateway_container(image: str, cpus: float, memory_gib: float) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/readyz", "port": GATEWAY_PORT}, "periodSeconds": 5}
    container = _ray_container("gateway", image, _resources(cpus, memory_gib),
                               [{"name": "ray-tmp", "mountPath": RAY_TMP}])
    container["env"] = [
        *container["env"],
        {"name": "TALKFACE_API_KEYS",
         "valueFrom": {"secretKeyRef": {"name": API_KEYS_SECRET, "key": "api-keys"}}},
    ]
    container.update(
        command=["/bin/sh", "-c", GATEWAY_COMMAND],
        ports=[{"containerPort": GATEWAY_PORT, "name": "http"}],
        readinessProbe=probe,
        livenessProbe={"httpGet": {"path": "/healthz", "port": GATEWAY_PORT},
                       "periodSeconds": 10, "initialDelaySeconds": 30},
    )
    return container


def _gateway_group(gateways: GatewayPlan, image: str) -> dict[str, Any]:
    ray_node = _ray_container(
        "ray-worker", image, _resources(GATEWAY_RAY_CPUS, GATEWAY_RAY_MEMORY_GIB),
        [{"name": "ray-tmp", "mountPath": RAY_TMP}])
    return {
        "groupName": "gateway",
        # Fixed at the peak: Ray's autoscaler sees no Ray work on a gateway node and would
        # remove it as idle, sessions and all. Scale gateways from outside Ray, if at all.
        "replicas": gateways.processes_max,
        "minReplicas": gateways.processes_max,
        "maxReplicas": gateways.processes_max,
        "rayStartParams": {"num-cpus": "0"},
        "template": {
            "metadata": {"labels": _labels("gateway")},
            "spec": {
                "containers": [ray_node, _gateway_container(
                    image, gateways.cpus_per_process, GATEWAY_MEMORY_GIB)],
                "volumes": [_data_volume(), {"name": "ray-tmp", "emptyDir": {}}],
            },
        },
    }


def _box_group(plan: Plan, pool: Pool, image: str) -> dict[str, Any]:
    group = _pool_group(pool, image)
    # Boxes hold sessions too: fixed, for the same reason as the gateway group.
    group.update(replicas=pool.nodes_max, minReplicas=pool.nodes_max,
                 maxReplicas=pool.nodes_max)
    # One box is one pod: the engines and the gateway share its cores without CPU limits,
    # as they did on the profiled machine; the gateway is promised what the profile kept
    # free of engines.
    gateway_cpus = max(0.1, plan.profile.machine.reserved_cores)
    gateway_memory = min(GATEWAY_MEMORY_GIB, pool.memory_gib_per_node / 4)
    spec = group["template"]["spec"]
    ray_node = spec["containers"][0]
    ray_node["resources"] = _resources(pool.cpus_per_node - gateway_cpus,
                                       pool.memory_gib_per_node - gateway_memory,
                                       cpu_limit=False)
    ray_node["volumeMounts"].append({"name": "ray-tmp", "mountPath": RAY_TMP})
    gateway = _gateway_container(image, gateway_cpus, gateway_memory)
    gateway["resources"] = _resources(gateway_cpus, gateway_memory, cpu_limit=False)
    spec["containers"].append(gateway)
    spec["volumes"].append({"name": "ray-tmp", "emptyDir": {}})
    return group


def rayservice(plan: Plan, *, image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The KubeRay ``RayService`` for ``plan`` as a dict (see :func:`rayservice_yaml`).

    Args:
        plan: the plan.
        image: the container image of every pod (talkface with its extras and Ray).
    """
    gateways = gateway_plan(plan)
    pools = machine_pools(plan)
    if gateways.on_boxes:
        groups = [_box_group(plan, pool, image) for pool in pools]
    else:
        groups = [_pool_group(pool, image) for pool in pools]
        groups.append(_gateway_group(gateways, image))
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/name": NAME}},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(plan), sort_keys=False),
            "rayClusterConfig": {
                "enableInTreeAutoscaling": True,
                "headGroupSpec": _head(image),
                "workerGroupSpecs": groups,
            },
        },
    }


def rayservice_yaml(plan: Plan, *, image: str = DEFAULT_IMAGE) -> str:
    """The ``RayService`` as YAML text, with a header saying how to apply it."""
    header = (
        f"# KubeRay RayService written by `talkface plan` for {plan.sessions} sessions "
        f"(sized for {plan.peak_sessions} at the peak).\n"
        f"# Needs: the KubeRay operator; a ReadWriteMany PersistentVolumeClaim "
        f"'{DATA_CLAIM}';\n"
        f"# a Secret '{API_KEYS_SECRET}' with key 'api-keys'; node labels {GPU_NODE_LABEL} "
        f"and {SPOT_NODE_LABEL}.\n"
        "# Apply with: kubectl apply -f rayservice.yaml  (see docs/scale-out.md)\n"
    )
    return header + yaml.safe_dump(rayservice(plan, image=image), sort_keys=False)
