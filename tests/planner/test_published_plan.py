"""`talkface plan --preset published --sessions 1000`: complete, explained, consistent."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from talkface.planner import PlanOptions, Profile, make_plan, write_plan
from talkface.planner.plan import Plan

# Each test reads one plan simulated at 1500 sessions (seconds of CPU): a whole-planner
# run, so it is kept out of the fast `-m unit` loop; `make test` runs it.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Short simulations keep the suite fast; the CLI default measures 2000 turns per run.
FAST = PlanOptions(sim_turns=300, curve_points=(0.5, 1.0), max_sessions_rel_tol=0.25)
GPU_STAGES = ("asr", "llm", "tts", "animator")


@pytest.fixture(scope="module")
def plan() -> Plan:
    return make_plan(Profile.from_published(), sessions=1000, options=FAST)


@pytest.fixture(scope="module")
def written(plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_plan(plan, tmp_path_factory.mktemp("plan"))


def test_every_stage_has_capacity_and_a_cost(plan: Plan) -> None:
    assert plan.mode == "cluster"
    assert plan.peak_sessions == 1500
    for stage in GPU_STAGES:
        sp = plan.stages[stage]
        assert sp.device in plan.catalog.gpus
        assert sp.replicas >= 1 and 0 < sp.num_gpus <= 1
        assert sp.replicas_min <= sp.replicas_average <= sp.replicas
        assert sp.cost_usd_per_h > 0
    for stage in ("vad", "encoder"):
        assert plan.stages[stage].device == "cpu" and plan.stages[stage].cpu_cores > 0
    assert plan.total_gpus == len(plan.cards) > 0
    assert plan.cost_peak_usd_per_h > plan.cost_average_usd_per_h > 0
    assert plan.cost_per_session_hour_usd > 0
    assert sum(s.cost_usd_per_h for s in plan.stages.values()) == pytest.approx(
        plan.cost_peak_usd_per_h
    )


def test_the_simulated_plan_meets_the_slo(plan: Plan) -> None:
    sim = plan.simulation
    assert sim is not None and sim.sessions == plan.peak_sessions
    assert plan.meets_slo and sim.meets(plan.options.slo)
    assert plan.max_sessions is not None and plan.max_sessions >= plan.peak_sessions


def test_no_card_holds_more_than_its_memory(plan: Plan) -> None:
    for card in plan.cards:
        assert card.memory_used_mb <= card.usable_memory_mb <= card.memory_mb
        assert card.share_used <= 1 + 1e-9


def test_report_explains_every_stage(plan: Plan, written: dict[str, Path]) -> None:
    report = written["report"].read_text()
    assert "published" in report and "estimates" in report
    for stage in plan.stages:
        section = report.split(f"### {stage}:")[1].split("###")[0]
        assert "**Profile.**" in section
        assert any(w in section for w in ("streams", "cores busy", "replies/s"))
    for stage in GPU_STAGES:
        section = report.split(f"### {stage}:")[1].split("###")[0]
        for step in ("**Demand at the peak.**", "**Replicas.**", "**GPUs.**", "**Autoscaling.**"):
            assert step in section, (stage, step)
        assert f"**{plan.stages[stage].replicas}**" in section
    assert "Offline render jobs on spot capacity" in report
    for name in ("cost", "gpus", "ttff", "utilisation", "load_curve"):
        assert f"]({written[name].name})" in report


def test_charts_are_valid_pngs(written: dict[str, Path]) -> None:
    for name in ("cost", "gpus", "ttff", "utilisation", "load_curve"):
        data = written[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width > 300 and height > 200
        pixels = matplotlib.image.imread(written[name])
        assert pixels.shape[:2] == (height, width)


def test_serve_config_has_every_deployment(plan: Plan, written: dict[str, Path]) -> None:
    config = yaml.safe_load(written["serve_config"].read_text())
    (application,) = config["applications"]
    assert application["import_path"]
    deployments = {d["name"]: d for d in application["deployments"]}
    # Sessions live in the gateways, not in a deployment; render jobs have their worker.
    assert set(deployments) == {"ASR", "LLM", "TTS", "Animator", "Renderer"}
    assert application["route_prefix"] is None
    for name, stage in (("ASR", "asr"), ("LLM", "llm"), ("TTS", "tts"), ("Animator", "animator")):
        d = deployments[name]
        scaling = d["autoscaling_config"]
        assert 1 <= scaling["min_replicas"] <= scaling["initial_replicas"]
        assert scaling["initial_replicas"] <= scaling["max_replicas"] == plan.stages[stage].replicas
        assert scaling["target_ongoing_requests"] >= 1
        if name == "LLM":  # batches by continuous batching, not @serve.batch
            assert "user_config" not in d
        else:
            assert d["user_config"]["max_batch_size"] == plan.stages[stage].max_batch_size
            assert d["user_config"]["batch_wait_timeout_s"] >= 0
        assert d["ray_actor_options"]["num_gpus"] == plan.stages[stage].num_gpus
        assert "num_replicas" not in d  # Ray refuses num_replicas with autoscaling_config
        assert d["ray_actor_options"]["resources"] == {f"pool_{stage}": 1}


def test_rayservice_deploys_the_same_config(written: dict[str, Path]) -> None:
    service = yaml.safe_load(written["rayservice"].read_text())
    assert service["kind"] == "RayService"
    served = yaml.safe_load(service["spec"]["serveConfigV2"])
    config = yaml.safe_load(written["serve_config"].read_text())
    assert served["applications"] == config["applications"]
    groups = {g["groupName"] for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert groups == {"asr", "llm", "tts", "animator", "render", "gateway"}
    report = written["report"].read_text()
    assert "rayservice.yaml" in report and "**Gateways.**" in report


def test_plan_json_matches(plan: Plan, written: dict[str, Path]) -> None:
    data = json.loads(written["plan"].read_text())
    assert data["format"] == "talkface.plan/1"
    assert data["summary"]["total_gpus"] == plan.total_gpus
    assert set(data["stages"]) == set(plan.stages)
    assert data["offline"]["chosen"]["gpus_spot"] >= 1


def test_offline_render_prefers_cheaper_spot(plan: Plan) -> None:
    offline = plan.offline
    assert offline is not None
    chosen = offline.chosen
    assert chosen.cost_spot_usd_per_h <= chosen.cost_on_demand_usd_per_h
    assert chosen.job_spot_s >= chosen.job_gpu_s  # preemptions only add time
    assert offline.monte_carlo_job_s == pytest.approx(chosen.job_spot_s, rel=0.1)


def test_more_sessions_never_need_fewer_gpus(plan: Plan) -> None:
    counts = [
        make_plan(Profile.from_published(), sessions=n, options=PlanOptions(simulate=False))
        for n in (10, 100, 1000, 10_000)
    ]
    totals = [p.total_gpus for p in counts]
    assert totals == sorted(totals)
    costs = [p.cost_peak_usd_per_h for p in counts]
    assert costs == sorted(costs)
    # The same holds with the simulator's corrections.
    small = make_plan(Profile.from_published(), sessions=100, options=FAST)
    assert small.total_gpus <= plan.total_gpus
    assert small.cost_peak_usd_per_h <= plan.cost_peak_usd_per_h


def test_the_unshipped_gpu_animator_is_labelled(plan: Plan, written: dict[str, Path]) -> None:
    label = "not shipped: priced from published figures for a GPU lip-sync model"
    report = written["report"].read_text()
    headline = report.split("## Headline", 1)[1].split("## Inputs", 1)[0]
    animator = plan.stages["animator"]
    assert any(
        line.startswith(f"| animator ({animator.replicas} x {animator.device}")
        and f"**{label}" in line
        for line in headline.splitlines()
    )
    section = next(line for line in report.splitlines() if line.startswith("### animator:"))
    assert label in section
    # The stages talkface ships carry no such label.
    assert not any(
        line.startswith(f"### {stage}:") and "not shipped" in line
        for stage in ("vad", "asr", "llm", "tts", "encoder")
        for line in report.splitlines()
    )
    assert label in json.loads(written["plan"].read_text())["not_shipped"]["animator"]
