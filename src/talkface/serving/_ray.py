"""The few calls into Ray and Ray Serve that are not plain public API, in one place.

``talkface deploy`` applies a Serve config the way ``serve run config.yaml`` does
(Serve's controller client, without the dashboard's REST API), and tests reach replica
actors to kill them. Both lean on Ray internals; if an upgrade moves them, the test of
this module fails first (tests/serving/test_ray_adapter.py).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
from ray import serve

from talkface.errors import BackendUnavailable

logger = logging.getLogger(__name__)

SERVE_NAMESPACE = "serve"


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address``, or start a local one; True if started here.

    A local Ray gets as many logical CPUs as the box has cores, at least four: engine
    replicas reserve fractions and mostly wait, so logical CPUs only place them.
    """
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "namespace": SERVE_NAMESPACE,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address:
        try:
            ray.init(address=address, **options)
        except ConnectionError as exc:
            raise BackendUnavailable(
                f"cannot reach the Ray cluster at {address!r} ({exc}); start one with "
                "`ray start --head`, or leave serving.ray_address unset for a local Ray"
            ) from None
        return False
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, **options)
    return True


def start_serve() -> None:
    """Start Serve's controller without an HTTP proxy: the engines have no HTTP route
    (gateways reach them through deployment handles) and the gateway owns its port."""
    serve.start(proxy_location="Disabled")


def running_applications() -> dict[str, Any]:
    """Serve application name → its status, on the connected cluster."""
    return dict(serve.status().applications)


def deploy_config(schema: Any) -> None:
    """Apply a checked Serve config (a ``ServeDeploySchema``, see
    :func:`talkface.serving.deploy.check_serve_config`) on the connected cluster, as
    ``serve run config.yaml`` does; returns once submitted (poll :func:`running_applications`).
    """
    from ray.serve._private import api as serve_private_api
    from ray.serve.config import gRPCOptions

    client = serve_private_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
        controller_options=getattr(schema, "controller_options", None),
    )
    client.deploy_apps(schema, _blocking=False)


def replica_actor_names(app_name: str, deployment: str) -> list[str]:
    """Names of the live replica actors of ``deployment`` (for fault-injection tests).

    Read from the GCS actor table directly: the public state API needs the dashboard,
    which a small box runs without.
    """
    from ray._private import state as ray_state

    prefix = f"SERVE_REPLICA::{app_name}#{deployment}#"
    return sorted(info["Name"] for info in ray_state.actors().values()
                  if info.get("State") == "ALIVE" and info.get("Name", "").startswith(prefix))


def kill_actor(name: str) -> None:
    """Kill the named actor at once (no restart by Ray itself: Serve replaces replicas)."""
    ray.kill(ray.get_actor(name, namespace=SERVE_NAMESPACE), no_restart=True)
