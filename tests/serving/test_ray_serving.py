"""talkface on Ray Serve, for real: a local Ray cluster on loopback, every stage its own
deployment, gateways that hold live sessions, replicas killed and autoscaled.

The scenario (``ray_scenario.py``) runs once for the module inside a network namespace
that has nothing but ``lo`` (Ray advertises the host's address otherwise); the tests
check what it saw. Heavy on 2 cores (~4 minutes): marked ``ray`` so it can be selected
or left out (``-m "not ray"``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from loopback_netns import loopback_netns_unavailable, run_in_loopback_netns

pytestmark = [pytest.mark.serving, pytest.mark.integration, pytest.mark.slow, pytest.mark.ray]

SCENARIO = Path(__file__).with_name("ray_scenario.py")
SCENARIO_TIMEOUT_S = 1500.0
STAGES = {"ASR", "LLM", "TTS", "Animator", "Renderer"}


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the scenario saw (it runs once for the module)."""
    pytest.importorskip("ray.serve", reason="needs the serving extra: pip install "
                        "'talkface[serving]'")
    reason = loopback_netns_unavailable()
    if reason is not None:
        pytest.skip(f"needs a loopback-only network namespace: {reason}")
    out = tmp_path_factory.mktemp("ray")
    done = run_in_loopback_netns([sys.executable, str(SCENARIO), "--out", str(out)],
                                 timeout_s=SCENARIO_TIMEOUT_S,
                                 env={"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    assert (out / "result.json").exists(), done.stderr[-6000:]
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    result["_out"] = str(out)
    return result


def step(seen: dict[str, Any], name: str) -> dict[str, Any]:
    """One step's record, failing with its error (and the gateway's log) if it had one."""
    record = seen.get(name)
    assert record is not None, f"the scenario did not reach {name!r}: {sorted(seen)}"
    if isinstance(record, dict) and "error" in record:
        log = Path(seen["_out"], "gateway.log")
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"{name}: {record['error']}\n{record.get('traceback', '')}\n{tail}")
    return record


def test_every_stage_is_its_own_healthy_deployment(seen: dict[str, Any]) -> None:
    app = step(seen, "status")["talkface"]
    assert app["status"] == "RUNNING"
    deployments = app["deployments"]
    assert STAGES <= set(deployments)
    for name in STAGES:
        assert deployments[name]["status"] == "HEALTHY", deployments
        assert deployments[name]["running"] >= 1
    assert deployments["LLM"]["running"] == 2  # the affinity test needs two to choose from


def test_a_spoken_conversation_runs_through_the_deployments(seen: dict[str, Any]) -> None:
    talk = step(seen, "conversation")
    assert "capital of france" in talk["transcripts"][0].lower()
    assert all(reply.strip() for reply in talk["replies"])
    assert talk["first"]["source"] == "speech"
    assert {"asr_final", "llm_first_token", "first_audio", "first_video_frame"} <= set(
        talk["first"]["stages_ms"])
    assert not any(end["interrupted"] for end in talk["turn_ends"])
    assert talk["frames"] > 50  # the idle face, then both answers


def test_a_conversation_keeps_its_llm_replica_and_prefix(seen: dict[str, Any]) -> None:
    """With two LLM replicas, the follow-up lands where the first turn's KV cache is."""
    talk = step(seen, "conversation")
    second = talk["second"]
    assert second["prompt_tokens"] > 60
    assert second["evaluated_prompt_tokens"] - talk["follow_up_tokens"] < 20, second


def test_speech_and_render_jobs_run_through_the_deployments(seen: dict[str, Any]) -> None:
    speech = step(seen, "speech")
    assert speech["status"] == 200 and speech["riff"] == "RIFF" and speech["bytes"] > 20_000
    render = step(seen, "render")
    assert render["job"]["status"] == "done", render
    assert render["video_status"] == 200 and render["video_bytes"] > 50_000


def test_a_killed_animator_replica_costs_no_turn_and_no_long_gap(seen: dict[str, Any]) -> None:
    kill = step(seen, "kill_animator")
    assert kill["killed"] not in kill["replicas_after"]
    assert kill["max_gap_s"] < 2.0, kill["max_gap_s"]
    assert kill["frames_after_kill"] > 50
    assert not kill["turn_end"]["interrupted"] and kill["reply"].strip()
    assert not kill["errors"], kill["errors"]
    assert kill["replica_restored"], "Serve did not bring the animator back to 2 replicas"


def test_tts_autoscales_up_under_load_and_back_down(seen: dict[str, Any]) -> None:
    scale = step(seen, "autoscale")
    assert scale["initial"] == 1
    assert scale["scaled_up"], scale
    assert scale["scaled_down"], scale
    assert any(line.startswith('talkface_stage_replicas{stage="tts"}')
               for line in scale["metrics_replicas"])


def test_a_render_job_survives_its_worker_dying(seen: dict[str, Any]) -> None:
    render = step(seen, "render_kill")
    assert render["killed"], "the worker was not killed mid-job"
    assert render["job"]["status"] == "done", render
    assert render["video_status"] == 200 and render["video_bytes"] > 100_000
    assert render["worker_replaced"] and render["killed"][0] not in render["renderers"]


def test_the_planners_config_deploys_and_serves(seen: dict[str, Any]) -> None:
    deployed = step(seen, "deployed_plan")
    assert deployed["deploy_rc"] == 0, deployed["deploy_out"]
    app = deployed["status"]["talkface"]
    assert app["status"] == "RUNNING" and STAGES <= set(app["deployments"])
    assert deployed["reply"].strip() and not deployed["turn_end"]["interrupted"]
    assert deployed["frames"] > 10
