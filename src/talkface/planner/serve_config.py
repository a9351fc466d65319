"""The plan's scale-out settings as a Ray Serve config (``serve deploy`` format).

One application, ``talkface``, built by ``talkface.serving.app:build_app``, with no HTTP
route: gateways (``talkface serve --engines ray``) hold the sessions and reach the engines
through deployment handles. One deployment per engine stage (``ASR``, ``LLM``, ``TTS``,
``Animator``) and the render worker (``Renderer``), each with:

- autoscaling bounds: ``min_replicas`` at the quietest hour, ``initial_replicas`` at the
  average load, ``max_replicas`` at the peak, ``target_ongoing_requests`` by Little's law;
- back-pressure: ``max_ongoing_requests`` per replica (at least two full batches, so the
  next batch gathers while one runs; Ray asks for at least ``max_batch_size``) and
  ``max_queued_requests`` per caller (each gateway may queue its share of one more round
  of every replica's slots; beyond that a request is refused at once, a 503 to the user,
  rather than a stutter for everyone);
- batching limits in ``user_config`` (ASR, TTS, Animator read them in ``reconfigure``);
- placement in ``ray_actor_options``: ``num_cpus``, ``num_gpus`` (the packing's share of
  a card), ``accelerator_type`` and the pool's custom resource (see
  :mod:`talkface.planner.pools`).

:func:`scale_to_box` shrinks such a config to one small CPU machine.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import yaml

from talkface.planner.plan import Plan
from talkface.planner.pools import (
    DEPLOYMENT_NAMES,
    deployment_cpus,
    gateway_plan,
    machine_pools,
    pool_of,
    render_workers,
    replica_bounds,
)

APP_NAME = "talkface"
IMPORT_PATH = "talkface.serving.app:build_app"
SERVE_HTTP_PORT = 8100
"""Serve's own proxy serves no route here; it runs on the head only (KubeRay probes it to
call a RayService ready) and keeps off 8000, the gateway's port, in case both share a node."""
BATCHED_STAGES = ("asr", "tts", "animator")
"""Stages whose deployment batches with ``@serve.batch`` and reads ``user_config``."""

# Autoscaling pace. A GPU replica takes a model load to come back, so it is kept through
# short lulls; load moves over minutes (a turn every ~30 s per session), not seconds.
UPSCALE_DELAY_S = 10.0
DOWNSCALE_DELAY_S = 300.0
HEALTH_CHECK_PERIOD_S = 5.0
ENGINE_SHUTDOWN_S = 20.0
"""A draining engine replica finishes what it holds (a batch, a reply) within this."""

# scale_to_box: share of the box's CPUs the deployments reserve (the rest stays free for
# the gateway process and Ray's own tasks), and the most requests one replica takes.
BOX_RAY_CPU_SHARE = 0.5
BOX_MAX_ONGOING_REQUESTS = 8


def _engine_deployment(plan: Plan, stage: str, gateways: int) -> dict[str, Any]:
    sp = plan.stages[stage]  # type: ignore[index]
    name = DEPLOYMENT_NAMES[stage]
    pool = pool_of(machine_pools(plan), name)
    low, initial, high = replica_bounds(sp)
    ongoing = max(2 * sp.target_ongoing_requests, 2 * sp.max_batch_size)
    actor: dict[str, Any] = {
        "num_cpus": deployment_cpus(plan, pool, name),
        "num_gpus": pool.replica_gpus,
    }
    if pool.accelerator_type:
        actor["accelerator_type"] = pool.accelerator_type
    actor["resources"] = {pool.resource: 1}
    deployment: dict[str, Any] = {
        "name": name,
        "max_ongoing_requests": ongoing,
        "max_queued_requests": max(2 * sp.max_batch_size, math.ceil(high * ongoing / gateways)),
        "autoscaling_config": {
            "min_replicas": low,
            "initial_replicas": initial,
            "max_replicas": high,
            "target_ongoing_requests": sp.target_ongoing_requests,
            "upscale_delay_s": UPSCALE_DELAY_S,
            "downscale_delay_s": DOWNSCALE_DELAY_S,
        },
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "graceful_shutdown_timeout_s": ENGINE_SHUTDOWN_S,
    }
    if stage in BATCHED_STAGES:
        deployment["user_config"] = {
            "max_batch_size": sp.max_batch_size,
            "batch_wait_timeout_s": round(sp.max_wait_ms / 1000, 4),
        }
    deployment["ray_actor_options"] = actor
    return deployment


def _renderer_deployment(plan: Plan) -> dict[str, Any]:
    name = DEPLOYMENT_NAMES["renderer"]
    pool = pool_of(machine_pools(plan), name)
    workers = render_workers(plan)
    # A scale-down lets the job in hand finish (about its planned wall time) before the
    # worker stops; cut short, the gateway sends the job again from the start.
    job_s = plan.offline.chosen.job_spot_s if plan.offline is not None else 300.0
    return {
        "name": name,
        # One job at a time: a render worker is sized for one.
        "max_ongoing_requests": 1,
        # The durable job store is the real queue: a job refused here waits and is sent
        # again (talkface.serving.renderer), so this only bounds what piles up in Serve.
        "max_queued_requests": max(2, workers),
        "autoscaling_config": {
            "min_replicas": 1,
            "initial_replicas": workers,
            "max_replicas": workers,
            "target_ongoing_requests": 1,
            "upscale_delay_s": UPSCALE_DELAY_S,
            "downscale_delay_s": DOWNSCALE_DELAY_S,
        },
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "graceful_shutdown_timeout_s": float(math.ceil(job_s)),
        "ray_actor_options": {
            "num_cpus": deployment_cpus(plan, pool, name),
            "num_gpus": 0,
            "resources": {pool.resource: 1},
        },
    }


def serve_config(plan: Plan) -> dict[str, Any]:
    """The Ray Serve config as a dict (see :func:`serve_config_yaml`)."""
    gateways = gateway_plan(plan).processes_max
    deployments = [
        _engine_deployment(plan, stage, gateways)
        for stage, sp in plan.stages.items()
        if sp.hosting == "engine"
    ]
    deployments.append(_renderer_deployment(plan))
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "0.0.0.0", "port": SERVE_HTTP_PORT},
        "applications": [
            {
                "name": APP_NAME,
                # No ingress route: clients reach the engines through the gateways.
                "route_prefix": None,
                "import_path": IMPORT_PATH,
                "args": {},
                "deployments": deployments,
            }
        ],
    }


def serve_config_yaml(plan: Plan) -> str:
    """The Ray Serve config as YAML text, with a header saying where it came from."""
    header = (
        f"# Ray Serve config written by `talkface plan` for {plan.sessions} sessions "
        f"(sized for {plan.peak_sessions} at the peak).\n"
        "# Deploy with: talkface deploy <this folder> --ray-address auto; then start the\n"
        "# gateways: talkface serve --engines ray --ray-address auto (see report.md).\n"
    )
    return header + yaml.safe_dump(serve_config(plan), sort_keys=False)


def scale_to_box(config: dict[str, Any], *, cpus: float) -> dict[str, Any]:
    """A copy of a Serve config shrunk to one small CPU machine without GPUs.

    Every deployment gets one replica, no GPU, no accelerator type and no pool resource,
    and an equal share of half of ``cpus`` (so all fit with room left for the gateway);
    batching limits are kept, and ``max_ongoing_requests`` stays at least
    ``max_batch_size`` (Ray's rule) but is capped for one small replica. Serve's HTTP
    proxy is turned off: the app has no route and the gateway owns the box's port.

    Args:
        config: a Serve config as :func:`serve_config` writes it.
        cpus: logical CPUs of the machine (its Ray's ``num_cpus``).

    Raises:
        ValueError: ``cpus`` is not positive.
    """
    if cpus <= 0:
        raise ValueError(f"cpus must be positive, got {cpus!r}")
    box = copy.deepcopy(config)
    box["proxy_location"] = "Disabled"
    for app in box["applications"]:
        deployments = app.get("deployments", [])
        # Ray accounts CPUs in 1/10000ths; two decimals read well and always fit.
        share = math.floor(100 * cpus * BOX_RAY_CPU_SHARE / max(1, len(deployments))) / 100
        for d in deployments:
            batch = (d.get("user_config") or {}).get("max_batch_size", 1)
            ongoing = max(batch, min(d.get("max_ongoing_requests", batch),
                                     BOX_MAX_ONGOING_REQUESTS))
            d["max_ongoing_requests"] = ongoing
            queued = d.get("max_queued_requests", -1)
            if queued != -1:  # -1 (no limit) is kept where the job store is the queue
                d["max_queued_requests"] = max(1, min(queued, 4 * ongoing))
            scaling = d.get("autoscaling_config")
            if scaling is not None:
                scaling.update(min_replicas=1, initial_replicas=1, max_replicas=1)
                if "target_ongoing_requests" in scaling:
                    scaling["target_ongoing_requests"] = min(
                        scaling["target_ongoing_requests"], ongoing)
            actor = d.setdefault("ray_actor_options", {})
            actor["num_gpus"] = 0
            actor["num_cpus"] = max(0.01, share)
            actor.pop("accelerator_type", None)
            actor.pop("resources", None)
    return box
