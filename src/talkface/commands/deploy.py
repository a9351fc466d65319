"""``talkface deploy``: check a plan's Ray Serve config, then deploy it on a Ray cluster."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from talkface.commands._common import EXIT_FAILED, err_console, out_console
from talkface.errors import ConfigError

_POLL_S = 2.0


def read_serve_config(plan: Path) -> dict[str, object]:
    """The Serve config in ``plan`` (a plan folder or the YAML file itself).

    Raises:
        ConfigError: no such file, or not a YAML mapping.
    """
    path = plan / "serve_config.yaml" if plan.is_dir() else plan
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; write one with: talkface plan -o {plan}")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is not a Ray Serve config (a mapping with 'applications')")
    return config


def run_deploy(plan: Path, *, ray_address: str, timeout_s: float, check_only: bool) -> None:
    """Validate the config (Ray's schema and talkface's app), deploy it, wait until running."""
    from talkface.serving import _ray
    from talkface.serving.deploy import check_serve_config

    config = read_serve_config(plan)
    schema = check_serve_config(config)
    names = [a["name"] for a in config["applications"]]  # type: ignore[index]
    out_console.print(f"config ok: {', '.join(names)}")
    if check_only:
        return
    _ray.connect(ray_address)
    _ray.deploy_config(schema)
    out_console.print(f"submitted to the Ray cluster at {ray_address}; waiting for replicas")
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        apps = _ray.running_applications()
        states = {name: _word(apps[name].status) if name in apps else "NOT_STARTED"
                  for name in names}
        line = ", ".join(f"{name}: {state}" for name, state in states.items())
        if line != last:
            out_console.print(line)
            last = line
        if all(state == "RUNNING" for state in states.values()):
            for name in names:
                for deployment, status in apps[name].deployments.items():
                    replicas = sum(status.replica_states.values())
                    out_console.print(f"  {deployment}: {_word(status.status)} "
                                      f"({replicas} replicas)")
            out_console.print("deployed; start gateways with: talkface serve --engines ray "
                              "--ray-address auto")
            return
        failed = [n for n, s in states.items() if s in ("DEPLOY_FAILED", "UNHEALTHY")]
        if failed or time.monotonic() > deadline:
            for name in failed:
                err_console.print(f"{name}: {apps[name].message}", soft_wrap=True)
            why = "failed" if failed else f"was not running after {timeout_s:g} s"
            err_console.print(f"[bold red]error:[/] the deployment {why}; see `serve status`")
            raise SystemExit(EXIT_FAILED)
        time.sleep(_POLL_S)


def _word(status: object) -> str:
    """Serve's status enums as their plain value ("RUNNING", "HEALTHY")."""
    return str(getattr(status, "value", status))
