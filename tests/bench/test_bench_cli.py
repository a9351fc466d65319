"""``talkface bench profile`` and ``talkface bench load`` as a user runs them, then ``plan``
on what they measured: real engines, a real server on loopback, real WebSocket users."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from talkface.planner.profile import Profile

pytestmark = [pytest.mark.integration, pytest.mark.serving, pytest.mark.slow]


def talkface(*args: str, timeout_s: float = 400) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TALKFACE_LLM__MAX_REPLY_TOKENS": "24", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "talkface.cli", *args], capture_output=True,
                          text=True, timeout=timeout_s, env=env)


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "profile.json"
    done = talkface("bench", "profile", "--repeats", "1", "--max-batch-size", "2",
                    "--encoder", "jpeg", "-o", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    return path


def test_profile_measures_every_engine_on_this_machine(profile_path: Path) -> None:
    profile = Profile.load(profile_path)
    assert set(profile.engines) >= {"vad", "asr", "llm", "tts", "animator", "encoder"}
    assert profile.engines["encoder"].backend.startswith("jpeg")
    assert profile.machine is not None and profile.machine.gpu_name is None
    assert profile.pipeline.idle_chunk_frames > 0 and profile.pipeline.reply_start_ms
    for engine in profile.engines.values():
        assert all(point.p50_ms > 0 for point in engine.cost.points)


def test_load_talks_to_a_real_server_and_calibrates_the_profile(
    profile_path: Path, tmp_path: Path
) -> None:
    turns_path = tmp_path / "load.json"
    done = talkface("bench", "load", "--sessions", "1", "--minutes", "0.4", "--think-s", "1",
                    "--calibrate", str(profile_path), "-o", str(turns_path))
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(turns_path.read_text())
    summary, turns = document["summary"], document["turns"]
    assert summary["errors"] == 0, turns
    assert summary["turns_with_answer"] >= 1
    assert 300 < summary["ttff_p50_ms"] < 10_000
    assert summary["fps_while_speaking"] == pytest.approx(25, abs=1.5)
    assert summary["idle_server_cpu_cores"] > 0
    answered = [t for t in turns if t["ttff_ms"] is not None]
    # The server's own trace of each turn came back, and delivery is a small positive lag.
    assert all(t["server_latency_ms"].get("first_video_frame") for t in answered)
    assert all(-50 < t["ttff_ms"] - t["server_latency_ms"]["first_video_frame"] < 2000
               for t in answered)
    calibrated = Profile.load(profile_path)
    assert calibrated.pipeline.delivery_ms > 0
    assert calibrated.machine is not None and calibrated.machine.session_overhead_cores >= 0
    assert "calibrated" in done.stdout

    # The planner takes the measured, calibrated profile of this CPU box.
    plan_dir = tmp_path / "plan"
    planned = talkface("plan", "--sessions", "4", "--profile", str(profile_path),
                       "--sim-turns", "200", "-o", str(plan_dir))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert (plan_dir / "report.md").read_text().strip()


def test_load_refuses_a_server_that_is_not_on_this_machine() -> None:
    done = talkface("bench", "load", "--url", "http://example.com:8000", "--api-key", "k")
    assert done.returncode != 0
    assert "loopback" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
