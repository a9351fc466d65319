"""The plan's scale-out settings as a Ray Serve config file (``serve deploy`` format).

One application; one deployment per engine stage with its autoscaling bounds
(``min_replicas`` at the quietest hour, ``max_replicas`` at the peak,
``target_ongoing_requests`` by Little's law at the peak), its batching limits in
``user_config`` (``@serve.batch`` reads them in ``reconfigure``, through
``set_max_batch_size`` / ``set_batch_wait_timeout_s``) and its GPU share in
``ray_actor_options.num_gpus``. Per-session work (VAD, video encoding) runs in the
``SessionHost`` deployment, sized in CPUs.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from talkface.planner.plan import Plan

DEPLOYMENT_NAMES = {
    "vad": "VAD",
    "asr": "ASR",
    "llm": "LLM",
    "tts": "TTS",
    "animator": "Animator",
    "encoder": "Encoder",
}
SESSION_HOST = "SessionHost"
SESSION_HOST_CPUS = 4
IMPORT_PATH = "talkface.serving.app:app"


def serve_config(plan: Plan) -> dict[str, Any]:
    """The Ray Serve config as a dict (see :func:`serve_config_yaml`)."""
    deployments: list[dict[str, Any]] = []
    session_cores = 0.0
    for stage, sp in plan.stages.items():
        if sp.hosting == "per_session":
            session_cores += sp.cpu_cores
            continue
        gpu = plan.catalog.gpus.get(sp.device)
        actor: dict[str, Any] = {
            "num_cpus": plan.profile.engines[stage].threads if sp.device == "cpu" else 1,
            "num_gpus": sp.num_gpus,
        }
        if gpu is not None and gpu.ray_accelerator_type:
            actor["accelerator_type"] = gpu.ray_accelerator_type
        deployments.append(
            {
                "name": DEPLOYMENT_NAMES[stage],
                "max_ongoing_requests": max(2 * sp.target_ongoing_requests, 2 * sp.max_batch_size),
                "autoscaling_config": {
                    "min_replicas": max(1, sp.replicas_min),
                    "initial_replicas": max(1, sp.replicas_average),
                    "max_replicas": max(1, sp.replicas),
                    "target_ongoing_requests": sp.target_ongoing_requests,
                },
                "user_config": {
                    "max_batch_size": sp.max_batch_size,
                    "batch_wait_timeout_s": 0.0
                    if stage == "llm"
                    else round(sp.max_wait_ms / 1000, 4),
                },
                "ray_actor_options": actor,
            }
        )
    hosts = max(1, math.ceil(session_cores / SESSION_HOST_CPUS))
    scale = plan.sessions / plan.peak_sessions
    deployments.append(
        {
            "name": SESSION_HOST,
            "max_ongoing_requests": max(1, math.ceil(plan.peak_sessions / hosts)) * 2,
            "autoscaling_config": {
                "min_replicas": max(1, math.ceil(hosts * plan.workload.trough_factor * scale)),
                "initial_replicas": max(1, math.ceil(hosts * scale)),
                "max_replicas": hosts,
                "target_ongoing_requests": max(1, math.ceil(plan.peak_sessions / hosts)),
            },
            "ray_actor_options": {"num_cpus": SESSION_HOST_CPUS, "num_gpus": 0},
        }
    )
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 8000},
        "applications": [
            {
                "name": "talkface",
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "deployments": deployments,
            }
        ],
    }


def serve_config_yaml(plan: Plan) -> str:
    """The Ray Serve config as YAML text, with a header saying where it came from."""
    header = (
        f"# Ray Serve config written by `talkface plan` for {plan.sessions} sessions "
        f"(sized for {plan.peak_sessions} at the peak).\n"
        "# Deploy with: serve deploy serve_config.yaml  (see report.md for every number)\n"
    )
    return header + yaml.safe_dump(serve_config(plan), sort_keys=False)
