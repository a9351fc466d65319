"""The pipeline simulator on a CPU box: contention, hand-offs, determinism, capacity."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from talkface.planner import (
    SLO,
    Deployment,
    PlanOptions,
    Profile,
    SimOptions,
    Workload,
    make_plan,
    max_sessions,
    write_plan,
)
from talkface.planner.profile import CostCurve, ServicePoint
from talkface.planner.simulate import SimulationResult, simulate

# Every test here runs the simulator (about a second of CPU each): kept out of the
# fast `-m unit` loop; `make test` runs them.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUICK = SimOptions(seed=1, target_turns=300)
MEASURED_PROFILE = Path(__file__).parents[2] / "docs" / "capacity" / "profile.json"


def _run(
    profile: Profile,
    sessions: int,
    *,
    cores: float | None = None,
    workload: Workload | None = None,
    options: SimOptions = QUICK,
) -> SimulationResult:
    deployment = Deployment.cpu_box(profile, cpu_cores=cores)
    return simulate(deployment, profile, workload or Workload(), sessions, options)


def test_same_seed_same_result(cpu_profile: Profile) -> None:
    first, again = _run(cpu_profile, 3), _run(cpu_profile, 3)
    assert first.ttff_ms == again.ttff_ms
    assert first.turns == pytest.approx(300, rel=0.2)  # the run is sized to ~300 turns
    other = _run(cpu_profile, 3, options=SimOptions(seed=2, target_turns=300))
    assert other.ttff_ms != first.ttff_ms


def test_engines_contend_for_cores(cpu_profile: Profile) -> None:
    one_core = _run(cpu_profile, 4, cores=1)
    four_cores = _run(cpu_profile, 4, cores=4)
    assert one_core.ttff_p50_ms > four_cores.ttff_p50_ms
    assert one_core.pools["cpu"] > four_cores.pools["cpu"]


def test_more_sessions_wait_longer(cpu_profile: Profile) -> None:
    assert _run(cpu_profile, 6).ttff_p95_ms > _run(cpu_profile, 1).ttff_p95_ms


def test_ttff_is_the_sum_of_its_segments(cpu_profile: Profile) -> None:
    result = _run(cpu_profile, 2)
    mean = sum(v for v in result.ttff_ms if math.isfinite(v)) / len(result.ttff_ms)
    assert sum(result.breakdown_ms.values()) == pytest.approx(mean, rel=1e-6)
    assert all(
        result.breakdown_p95_ms[s] >= result.breakdown_ms[s] * 0.999 for s in result.breakdown_ms
    )


def test_faq_hits_skip_the_llm(cpu_profile: Profile) -> None:
    result = _run(cpu_profile, 2, workload=Workload(faq_cache_hit_rate=1.0))
    assert result.stages["llm"].requests == 0
    assert result.breakdown_ms["llm"] == 0


def test_an_animator_slower_than_real_time_stalls_replies(cpu_profile: Profile) -> None:
    slow = cpu_profile.model_copy(deep=True)
    slow.engines["animator"].cost = CostCurve(
        unit="frame",
        points=[ServicePoint(batch_size=1, work_units=8, p50_ms=400, p95_ms=420, mean_ms=400)],
    )
    stalled = _run(slow, 1)
    assert stalled.sustained_share(SLO()) < 0.05
    assert stalled.fps_p05 < 0.9 * stalled.fps_nominal
    assert not stalled.meets(SLO(ttff_p95_ms=60_000))
    assert _run(cpu_profile, 1).sustained_share(SLO()) > 0.95


def test_max_sessions_is_the_last_load_that_passes(cpu_profile: Profile) -> None:
    slo = SLO(ttff_p95_ms=2500)
    deployment = Deployment.cpu_box(cpu_profile)
    best, runs = max_sessions(deployment, cpu_profile, Workload(), slo, QUICK)
    assert best >= 1
    assert runs[best].meets(slo)
    assert not runs[best + 1].meets(slo)


def test_cpu_box_plan(cpu_profile: Profile, tmp_path: Path) -> None:
    options = PlanOptions(slo=SLO(ttff_p95_ms=2500), sim_turns=300)
    plan = make_plan(cpu_profile, sessions=20, options=options)
    assert plan.mode == "cpu_box" and plan.cpu_box is not None
    box = plan.cpu_box
    assert box.sessions_per_box == plan.max_sessions >= 1
    assert box.boxes == math.ceil(plan.peak_sessions / box.sessions_per_box)
    assert {1, 2, 4} <= {r.sessions for r in plan.curve}  # the load test's sizes
    assert plan.total_gpus == 0 and plan.cost_peak_usd_per_h > 0
    files = write_plan(plan, tmp_path)
    report = files["report"].read_text()
    assert "### Sessions per box" in report and "processor sharing" in report
    config = yaml.safe_load(files["serve_config"].read_text())
    deployments = config["applications"][0]["deployments"]
    assert {d["name"] for d in deployments} == {"ASR", "LLM", "TTS", "Animator", "Renderer"}
    assert all(d["ray_actor_options"]["num_gpus"] == 0 for d in deployments)
    # Every box runs its own gateway beside one replica of each deployment.
    service = yaml.safe_load(files["rayservice"].read_text())
    (group,) = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert group["groupName"] == "box" and group["replicas"] == box.boxes
    assert [c["name"] for c in group["template"]["spec"]["containers"]] == [
        "ray-worker", "gateway"]


def test_measured_profile_serves_one_session_within_the_slo_as_measured() -> None:
    """docs/capacity.md: on this box the load test met the SLO at 1 session."""
    profile = Profile.load(MEASURED_PROFILE)
    deployment, options = Deployment.cpu_box(profile), SimOptions(seed=0, target_turns=200)
    slo = SLO()
    reuse = simulate(deployment, profile, Workload(), 1, options)
    assert reuse.meets(slo), reuse.ttff_p95_ms
    # Re-evaluating a 700-token prompt every turn (no prefix cache) cannot.
    no_reuse = simulate(deployment, profile, Workload(prompt_reuse="fixed_share"), 1, options)
    assert not no_reuse.meets(slo)
    assert no_reuse.ttff_p95_ms > 2 * reuse.ttff_p95_ms
