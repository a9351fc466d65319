"""Inputs: defaults load, round-trips hold, and bad files fail with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer.testing

from talkface.errors import ConfigError
from talkface.planner.catalog import GPUCatalog
from talkface.planner.cli import app
from talkface.planner.deployment import Deployment
from talkface.planner.make import make_plan
from talkface.planner.profile import Profile, ServicePoint
from talkface.planner.workload import Workload

pytestmark = pytest.mark.unit


def _one_line_error(call: object, *args: object) -> str:
    with pytest.raises(ConfigError) as caught:
        call(*args)  # type: ignore[operator]
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_shipped_defaults_load() -> None:
    assert Workload.default() == Workload()  # the YAML documents the field defaults
    catalog = GPUCatalog.default()
    assert {"T4", "A10", "L4", "A40", "A100-40GB", "A100-80GB", "H100", "H200"} <= set(catalog.gpus)
    assert catalog.gpus[catalog.reference_gpu].relative_speed == 1.0
    assert all(g.spot_usd_per_h < g.on_demand_usd_per_h for g in catalog.gpus.values())


def test_published_profile_is_labelled_and_round_trips(tmp_path: Path) -> None:
    profile = Profile.from_published()
    assert profile.is_estimate and not profile.cpu_only
    assert profile.engines["llm"].variants["H100"].vram_mb == 9000
    path = tmp_path / "profile.json"
    profile.save(path)
    assert Profile.load(path) == profile


def test_service_point_summarises_and_caps_samples() -> None:
    point = ServicePoint.from_samples(
        batch_size=2, work_units=3.0, samples_ms=[float(i) for i in range(1, 2001)]
    )
    assert len(point.samples_ms) == 512
    assert point.p50_ms == pytest.approx(1000.5)
    assert point.p95_ms == pytest.approx(1900.05)
    with pytest.raises(ValueError, match="mean_ms"):
        ServicePoint(
            batch_size=1, work_units=1, p50_ms=1, p95_ms=2, mean_ms=50, samples_ms=[1.0, 2.0]
        )


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "workload.yaml"
    path.write_text("turns_per_min: 2\nutterance_s: {mean: 3\n")
    message = _one_line_error(Workload.load, path)
    assert str(path) in message and "not valid YAML" in message and "line" in message


def test_a_bad_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "workload.yaml"
    path.write_text("reply_tokens: {mean: -4}\n")
    assert "reply_tokens.mean" in _one_line_error(Workload.load, path)
    path.write_text("turns_per_minute: 2\n")
    assert "turns_per_minute" in _one_line_error(Workload.load, path)


def test_an_impossible_workload_says_why(tmp_path: Path) -> None:
    path = tmp_path / "workload.yaml"
    path.write_text("turns_per_min: 6\n")
    message = _one_line_error(Workload.load, path)
    assert "turns_per_min=6" in message and "lower" in message


def test_malformed_profile_json(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text('{"format": "talkface.profile/1", "engines": {')
    assert "not valid JSON" in _one_line_error(Profile.load, path)
    path.write_text(json.dumps({"format": "talkface.profile/1", "engines": {}}))
    assert "engines is missing asr, llm, tts, animator" in _one_line_error(Profile.load, path)
    assert "no such file" in _one_line_error(Profile.load, tmp_path / "nope.json")


def test_bad_catalog_prices(tmp_path: Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text(
        "reference_gpu: X1\ngpus:\n  X1: {memory_gb: 24, memory_bandwidth_gbps: 600,"
        " relative_speed: 1, on_demand_usd_per_h: 1, spot_usd_per_h: 2}\n"
    )
    message = _one_line_error(GPUCatalog.load, path)
    assert "gpus.X1" in message and "spot_usd_per_h" in message


def test_a_profile_gpu_missing_from_the_catalog_is_named() -> None:
    catalog = GPUCatalog.default()
    catalog = catalog.model_copy(
        update={"gpus": {k: v for k, v in catalog.gpus.items() if k != "A40"}}
    )
    message = _one_line_error(
        lambda: make_plan(Profile.from_published(), sessions=10, catalog=catalog)
    )
    assert "A40" in message and "--gpus" in message


def _cli(*args: str) -> typer.testing.Result:
    return typer.testing.CliRunner().invoke(app, ["plan", *args])


def test_cli_needs_a_profile_or_a_preset() -> None:
    result = _cli("--sessions", "10")
    assert result.exit_code == 2
    assert "--profile" in result.output and "--preset" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_reports_a_malformed_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "gpus.yaml"
    bad.write_text("gpus: [")
    result = _cli("--sessions", "10", "--preset", "published", "--gpus", str(bad))
    assert result.exit_code == 2
    assert "not valid YAML" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_gpu_profile_is_not_a_cpu_box() -> None:
    with pytest.raises(ConfigError, match="CPU profile"):
        Deployment.cpu_box(Profile.from_published())
