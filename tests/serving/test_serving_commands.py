"""``talkface serve --engines ray`` and ``talkface deploy`` refuse what cannot work, as a
user runs them (real processes; no Ray cluster is started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray.serve", reason="needs the serving extra: pip install 'talkface[serving]'")

pytestmark = pytest.mark.integration

TALKFACE = Path(sys.executable).parent / "talkface"


def _config(deployments: list[dict[str, object]]) -> dict[str, object]:
    return {"applications": [{"name": "talkface", "import_path":
                              "talkface.serving.app:build_app", "route_prefix": None,
                              "deployments": deployments}]}


def test_several_gateway_workers_need_one_ray_cluster() -> None:
    done = subprocess.run([str(TALKFACE), "serve", "--engines", "ray", "--workers", "2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "ray start --head" in done.stderr and "--ray-address auto" in done.stderr


def test_deploy_refuses_a_config_that_does_not_fit_the_app(tmp_path: Path) -> None:
    (tmp_path / "serve_config.yaml").write_text(
        yaml.safe_dump(_config([{"name": "SessionHost"}])))
    done = subprocess.run([str(TALKFACE), "deploy", str(tmp_path), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no deployment 'SessionHost'" in done.stderr
    missing = subprocess.run([str(TALKFACE), "deploy", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "talkface plan -o" in missing.stderr
