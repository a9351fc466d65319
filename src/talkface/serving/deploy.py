"""Checking a Serve config against talkface before it reaches a cluster.

Ray's own schema catches malformed fields; this adds what only talkface knows: the
application builds, every deployment the config shapes exists in it, and each batching
stage can hold a whole batch (``max_ongoing_requests >= max_batch_size``).
"""

from __future__ import annotations

from typing import Any

from talkface.errors import ConfigError

_BATCH_KEYS = {"max_batch_size", "batch_wait_timeout_s"}
_BATCHING = {"ASR", "TTS", "Animator"}


def check_serve_config(config: dict[str, Any]) -> Any:
    """``config`` as Ray's ``ServeDeploySchema``, once it is known to deploy.

    Raises:
        ConfigError: the first problem found, named.
    """
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    try:
        schema = ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"the Serve config is not valid at {where}: {first['msg']}") from None
    for app in schema.applications:
        built = _build(app.import_path, app.args or {})
        for deployment in app.deployments:
            name = deployment.name
            if name not in built:
                raise ConfigError(
                    f"application {app.name!r}: there is no deployment {name!r} in "
                    f"{app.import_path} (it has: {', '.join(sorted(built))})")
            user_config = deployment.user_config if isinstance(deployment.user_config, dict) \
                else {}
            unknown = set(user_config) - (_BATCH_KEYS if name in _BATCHING else set())
            if unknown:
                raise ConfigError(f"deployment {name!r}: user_config has unknown keys "
                                  f"{sorted(unknown)}")
            batch = user_config.get("max_batch_size")
            ongoing = deployment.max_ongoing_requests
            if isinstance(batch, int) and isinstance(ongoing, int) and ongoing < batch:
                raise ConfigError(f"deployment {name!r}: max_ongoing_requests ({ongoing}) is "
                                  f"below max_batch_size ({batch}); a batch could never fill")
    return schema


def _build(import_path: str, args: dict[str, Any]) -> set[str]:
    """The deployment names of the application ``import_path`` builds with ``args``."""
    import importlib

    module_name, _, attr = import_path.replace(":", ".").rpartition(".")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"import_path {import_path!r} does not import ({exc})") from None
    app = builder(args) if callable(builder) else builder
    names: set[str] = set()

    def walk(node: Any) -> None:
        bound = getattr(node, "_bound_deployment", None)
        if bound is None:
            return
        names.add(bound.name)
        for value in [*bound.init_args, *bound.init_kwargs.values()]:
            walk(value)

    walk(app)
    return names
